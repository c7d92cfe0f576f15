//! Sample conversions: f32 to 16-bit PCM, little-endian f32, and G.711 mu-law / A-law.

use chorus_proto::Encoding;

use crate::AudioError;

/// `x` if finite, else 0 (NaN and infinities become silence).
#[inline]
pub(crate) fn sanitize(x: f32) -> f32 {
    if x.is_finite() { x } else { 0.0 }
}

/// `x` sanitized and clamped to `[-1, 1]`.
#[inline]
fn clamp_unit(x: f32) -> f32 {
    sanitize(x).clamp(-1.0, 1.0)
}

/// Converts one sample to 16-bit PCM: clamp to `[-1, 1]`, scale by 32767, round to nearest.
/// NaN and infinities give 0.
#[inline]
pub fn f32_to_s16(x: f32) -> i16 {
    // In range by construction: |x * 32767| <= 32767.
    (clamp_unit(x) * 32767.0).round() as i16
}

/// Hands each whole `block` at the front of `pending` to `encode`, in order, then drops those from `pending`,
/// which keeps the rest (fewer than `block` samples, waiting for more). Stops at the first error, leaving
/// `pending` as it was.
pub(crate) fn drain_blocks<T>(
    pending: &mut Vec<T>,
    block: usize,
    mut encode: impl FnMut(&[T]) -> Result<(), AudioError>,
) -> Result<(), AudioError> {
    let whole = pending.len() / block * block;
    for samples in pending[..whole].chunks_exact(block) {
        encode(samples)?;
    }
    pending.drain(..whole);
    Ok(())
}

/// Multiplies every sample by `gain` (a volume) and clamps the result to `[-1, 1]`.
/// NaN and infinite samples become 0; a negative gain counts as 0 and a non-finite gain as 1.
pub fn apply_gain(samples: &mut [f32], gain: f32) {
    let gain = if gain.is_finite() { gain.max(0.0) } else { 1.0 };
    for s in samples {
        *s = clamp_unit(sanitize(*s) * gain);
    }
}

/// Appends `samples` (already at the output rate) to `out` in `encoding`: 4 bytes per sample
/// for `PcmF32le` (clamped to `[-1, 1]`), 2 for `PcmS16le` (see [`f32_to_s16`]), 1 for G.711
/// mu-law and A-law (from the 16-bit value, as in the ITU/Sun reference code).
pub fn encode_samples(samples: &[f32], encoding: Encoding, out: &mut Vec<u8>) {
    out.reserve(samples.len() * encoding.bytes_per_sample());
    match encoding {
        Encoding::PcmF32le => {
            for &s in samples {
                out.extend_from_slice(&clamp_unit(s).to_le_bytes());
            }
        }
        Encoding::PcmS16le => {
            for &s in samples {
                out.extend_from_slice(&f32_to_s16(s).to_le_bytes());
            }
        }
        Encoding::PcmMulaw => out.extend(samples.iter().map(|&s| linear_to_mulaw(f32_to_s16(s)))),
        Encoding::PcmAlaw => out.extend(samples.iter().map(|&s| linear_to_alaw(f32_to_s16(s)))),
    }
}

// G.711, after the classic Sun Microsystems g711.c (public domain).

const SEG_A_END: [i32; 8] = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];
const SEG_U_END: [i32; 8] = [0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF];
const ULAW_BIAS: i32 = 0x84;
const ULAW_CLIP: i32 = 8159;

/// The first segment whose end is >= `val`, or 8.
fn segment(val: i32, ends: &[i32; 8]) -> u8 {
    ends.iter().position(|&end| val <= end).unwrap_or(8) as u8
}

/// G.711 mu-law encoding of a 16-bit linear sample (0 gives 0xFF).
pub fn linear_to_mulaw(pcm: i16) -> u8 {
    let mut val = i32::from(pcm) >> 2;
    let mask: u8 = if val < 0 {
        val = -val;
        0x7F
    } else {
        0xFF
    };
    val = val.min(ULAW_CLIP) + (ULAW_BIAS >> 2);
    let seg = segment(val, &SEG_U_END);
    if seg >= 8 {
        return 0x7F ^ mask;
    }
    let quant = ((val >> (seg + 1)) & 0xF) as u8;
    ((seg << 4) | quant) ^ mask
}

/// Decodes a G.711 mu-law byte to a 16-bit linear sample.
pub fn mulaw_to_linear(code: u8) -> i16 {
    let u = !code;
    let t = ((i32::from(u & 0x0F) << 3) + ULAW_BIAS) << ((u & 0x70) >> 4);
    let v = if u & 0x80 != 0 { ULAW_BIAS - t } else { t - ULAW_BIAS };
    v as i16
}

/// G.711 A-law encoding of a 16-bit linear sample (0 gives 0xD5).
pub fn linear_to_alaw(pcm: i16) -> u8 {
    let mut val = i32::from(pcm) >> 3;
    let mask: u8 = if val >= 0 {
        0xD5
    } else {
        val = -val - 1;
        0x55
    };
    let seg = segment(val, &SEG_A_END);
    if seg >= 8 {
        return 0x7F ^ mask;
    }
    let shift = if seg < 2 { 1 } else { seg };
    let quant = ((val >> shift) & 0xF) as u8;
    ((seg << 4) | quant) ^ mask
}

/// Decodes a G.711 A-law byte to a 16-bit linear sample.
pub fn alaw_to_linear(code: u8) -> i16 {
    let a = code ^ 0x55;
    let mut t = i32::from(a & 0x0F) << 4;
    let seg = (a & 0x70) >> 4;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => {
            t += 0x108;
            t <<= seg - 1;
        }
    }
    let v = if a & 0x80 != 0 { t } else { -t };
    v as i16
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt;

    /// Asserts `f(input) == want` for each `(input, want)` of `cases`.
    fn check<I: Copy + fmt::Debug, O: Copy + PartialEq + fmt::Debug>(f: fn(I) -> O, cases: &[(I, O)]) {
        for &(input, want) in cases {
            assert_eq!(f(input), want, "input {input:?}");
        }
    }

    #[test]
    fn s16_conversion_clamps_and_rounds() {
        check(
            f32_to_s16,
            &[
                (0.0, 0),
                (1.0, 32767),
                (-1.0, -32767),
                (2.5, 32767),
                (-7.0, -32767),
                (0.5, 16384), // 16383.5 rounds away from zero
                (f32::NAN, 0),
                (f32::INFINITY, 0),
                (f32::NEG_INFINITY, 0),
            ],
        );
    }

    #[test]
    fn encode_samples_lengths_and_bytes() {
        let s = [0.0f32, 1.0, -1.0, f32::NAN, 3.0];
        let mut out = Vec::new();
        encode_samples(&s, Encoding::PcmS16le, &mut out);
        assert_eq!(out, [0, 0, 0xFF, 0x7F, 0x01, 0x80, 0, 0, 0xFF, 0x7F]);
        out.clear();
        encode_samples(&s, Encoding::PcmF32le, &mut out);
        assert_eq!(out.len(), 20);
        let back: Vec<f32> =
            out.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        assert_eq!(back, [0.0, 1.0, -1.0, 0.0, 1.0]);
        out.clear();
        encode_samples(&s, Encoding::PcmMulaw, &mut out);
        assert_eq!(out, [0xFF, 0x80, 0x00, 0xFF, 0x80]);
        out.clear();
        encode_samples(&s, Encoding::PcmAlaw, &mut out);
        assert_eq!(out, [0xD5, 0xAA, 0x2A, 0xD5, 0xAA]);
    }

    #[test]
    fn g711_known_values() {
        // Values from the Sun reference implementation, cross-checked with sox (which differs
        // only for -1: sox gives 0xFF / 0xD5, Sun's arithmetic shift gives 0x7E / 0x55).
        check(
            linear_to_mulaw,
            &[
                (0, 0xFF),
                (-1, 0x7E),
                (-32, 0x7B),
                (5, 0xFE),
                (12345, 0x97),
                (-12345, 0x17),
                (i16::MAX, 0x80),
                (i16::MIN, 0x00),
                (1000, 0xCE),
                (-1000, 0x4E),
            ],
        );
        check(mulaw_to_linear, &[(0xFF, 0), (0x7F, 0), (0x80, 32124), (0x00, -32124), (0xCE, 988)]);
        check(
            linear_to_alaw,
            &[
                (0, 0xD5),
                (-1, 0x55),
                (i16::MAX, 0xAA),
                (i16::MIN, 0x2A),
                (1000, 0xFA),
                (-1000, 0x7A),
                (5, 0xD5),
                (12345, 0xBD),
                (-12345, 0x3D),
            ],
        );
        check(alaw_to_linear, &[(0xD5, 8), (0x55, -8), (0xAA, 32256), (0x2A, -32256), (0xFA, 1008)]);
    }

    #[test]
    fn g711_round_trips() {
        // Every code decodes to a value that encodes back to the same code
        // (mu-law has two zeros, 0x7F "-0" and 0xFF "+0", which both decode to 0).
        for code in 0..=255u8 {
            let mu = linear_to_mulaw(mulaw_to_linear(code));
            if code == 0x7F {
                assert_eq!(mu, 0xFF);
            } else {
                assert_eq!(mu, code, "mu-law code {code:#04x}");
            }
            assert_eq!(linear_to_alaw(alaw_to_linear(code)), code, "A-law code {code:#04x}");
        }
        // Quantization error stays within half a step of the segment (about 3% of the value,
        // plus the small fixed error near zero), and the sign is kept.
        for x in (i16::MIN..=i16::MAX).step_by(7) {
            let xi = i32::from(x);
            let bound = xi.abs() / 16 + 16;
            let mu = i32::from(mulaw_to_linear(linear_to_mulaw(x)));
            assert!((mu - xi).abs() <= bound + 4, "mu-law {x} -> {mu}");
            let a = i32::from(alaw_to_linear(linear_to_alaw(x)));
            assert!((a - xi).abs() <= bound, "A-law {x} -> {a}");
            if xi.abs() > 64 {
                assert_eq!(mu.signum(), xi.signum());
                assert_eq!(a.signum(), xi.signum());
            }
        }
    }

    #[test]
    fn gain_scales_clamps_and_sanitizes() {
        let mut s = [0.5f32, -0.5, 0.9, f32::NAN, f32::INFINITY];
        apply_gain(&mut s, 2.0);
        assert_eq!(s, [1.0, -1.0, 1.0, 0.0, 0.0]);
        let mut s = [0.5f32, -0.25];
        apply_gain(&mut s, 0.5);
        assert_eq!(s, [0.25, -0.125]);
        apply_gain(&mut s, f32::NAN);
        assert_eq!(s, [0.25, -0.125]);
        apply_gain(&mut s, -3.0);
        assert_eq!(s, [0.0, 0.0]);
    }
}
