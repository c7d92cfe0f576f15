//! Streaming sample-rate conversion on top of rubato's synchronous FFT resampler.

use std::fmt;

use audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Indexing, Resampler as _};

use crate::AudioError;
use crate::pcm::sanitize;

/// Preferred input block for the FFT resampler, in input frames. The real block is the
/// smallest even multiple of `input_rate / gcd(input_rate, output_rate)` at or above this; it
/// is also the length of the anti-aliasing filter (cut-off 0.95 to 0.97 of the lower Nyquist
/// frequency for 256 to 882 taps).
const TARGET_BLOCK: usize = 256;
/// Largest reduced rate (`rate / gcd`) accepted; beyond it the FFT blocks would get huge.
const MAX_REDUCED_RATE: usize = 4096;

/// A streaming mono resampler: feed chunks of any length (including 0 or 1 sample), get
/// continuous output with no seams, then [`finish`](Self::finish) to flush the tail.
///
/// Uses rubato's synchronous [`Fft`] resampler (exact rational ratio, windowed-sinc
/// anti-aliasing filter of one block length, BlackmanHarris² window). When the input and output
/// rates are equal it is an identity passthrough: samples are copied (NaN/inf become 0) with no
/// processing and no delay.
///
/// The filter delay is trimmed from the start, and `finish` pads with silence so that the total
/// output is exactly `round(n_in * output_rate / input_rate)` frames, aligned with the input.
///
/// **Latency:** the resampler works in whole blocks and needs half a block of look-ahead, so at
/// any time up to [`max_latency_frames`](Self::max_latency_frames) input frames (block − 1 +
/// block / 2) may be held back until more input arrives or `finish` is called. From 22050 Hz:
///
/// | output | block (in → out) | held back at most |
/// |---|---|---|
/// | 8000, 16000 Hz | 882 → 320, 640 | 1322 input frames, 60 ms |
/// | 24000, 48000 Hz | 294 → 320, 640 | 440 input frames, 20 ms |
/// | 44100 Hz | 256 → 512 | 383 input frames, 17 ms |
/// | 22050 Hz | passthrough | 0 |
pub struct Resampler {
    input_rate: u32,
    output_rate: u32,
    stage: Option<FftStage>,
    frames_in: u64,
    frames_out: u64,
}

/// The FFT resampler and its buffers (absent for passthrough).
struct FftStage {
    fft: Fft<f32>,
    /// Input frames per block.
    block_in: usize,
    /// Output frames per block.
    block_out: usize,
    /// Filter delay in output frames.
    delay: usize,
    /// Input not yet processed (always fewer than `block_in` frames between calls).
    pending: Vec<f32>,
    /// Output of one block.
    out_block: Vec<f32>,
    /// Output frames still to drop from the start (the filter delay).
    to_trim: usize,
}

impl fmt::Debug for Resampler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Resampler");
        d.field("input_rate", &self.input_rate)
            .field("output_rate", &self.output_rate)
            .field("frames_in", &self.frames_in)
            .field("frames_out", &self.frames_out);
        if let Some(s) = &self.stage {
            d.field("block_in", &s.block_in)
                .field("block_out", &s.block_out)
                .field("delay", &s.delay)
                .field("pending", &s.pending.len());
        }
        d.finish()
    }
}

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// `round(n * num / den)` without overflow (`den > 0`).
pub(crate) fn scaled_len(n: u64, num: u32, den: u32) -> u64 {
    let den = u128::from(den.max(1));
    let v = (u128::from(n) * u128::from(num) + den / 2) / den;
    u64::try_from(v).unwrap_or(u64::MAX)
}

impl Resampler {
    /// A resampler from `input_rate` to `output_rate` (Hz). Fails if a rate is 0 or the ratio
    /// reduces to more than 4096 on either side (e.g. 22050 -> 22051); all pairs among the
    /// usual rates (8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000) are fine.
    pub fn new(input_rate: u32, output_rate: u32) -> Result<Self, AudioError> {
        let err = |reason: String| AudioError::Resample { from: input_rate, to: output_rate, reason };
        if input_rate == 0 || output_rate == 0 {
            return Err(err("sample rates must be positive".into()));
        }
        let stage = if input_rate == output_rate {
            None
        } else {
            let (rin, rout) = (input_rate as usize, output_rate as usize);
            let g = gcd(rin, rout);
            if rin / g > MAX_REDUCED_RATE || rout / g > MAX_REDUCED_RATE {
                return Err(err(format!("ratio {}/{} is too fine for the FFT resampler", rout / g, rin / g)));
            }
            // An even number of reduced units per block puts the filter centre (block_in / 2)
            // on a whole input sample *and* a whole output sample, so trimming the delay
            // aligns the output exactly.
            let units = (TARGET_BLOCK.div_ceil(rin / g)).next_multiple_of(2);
            let fft = Fft::<f32>::new(rin, rout, units * (rin / g), 1, 1, FixedSync::Both)
                .map_err(|e| err(e.to_string()))?;
            let block_in = fft.input_frames_next();
            let block_out = fft.output_frames_next();
            let delay = fft.output_delay();
            Some(FftStage {
                fft,
                block_in,
                block_out,
                delay,
                pending: Vec::with_capacity(block_in),
                out_block: vec![0.0; block_out],
                to_trim: delay,
            })
        };
        Ok(Self { input_rate, output_rate, stage, frames_in: 0, frames_out: 0 })
    }

    /// Input sample rate in Hz.
    pub fn input_rate(&self) -> u32 {
        self.input_rate
    }

    /// Output sample rate in Hz.
    pub fn output_rate(&self) -> u32 {
        self.output_rate
    }

    /// True when the rates are equal and samples are passed through untouched.
    pub fn is_passthrough(&self) -> bool {
        self.stage.is_none()
    }

    /// The most input frames that can be held back between calls (0 for passthrough): output
    /// for an input frame is available at the latest once this many later frames were pushed.
    pub fn max_latency_frames(&self) -> usize {
        self.stage.as_ref().map_or(0, |s| s.block_in - 1 + s.block_in.div_ceil(2))
    }

    /// Input frames consumed since the start (or the last `finish`).
    pub fn frames_in(&self) -> u64 {
        self.frames_in
    }

    /// Output frames produced since the start (or the last `finish`).
    pub fn frames_out(&self) -> u64 {
        self.frames_out
    }

    /// Resamples `input` and appends the output frames that are ready to `out`.
    /// NaN and infinite samples are replaced by 0.
    pub fn process(&mut self, input: &[f32], out: &mut Vec<f32>) -> Result<(), AudioError> {
        self.frames_in += input.len() as u64;
        let (from, to) = (self.input_rate, self.output_rate);
        let start = out.len();
        match &mut self.stage {
            None => out.extend(input.iter().map(|&x| sanitize(x))),
            Some(stage) => {
                stage.pending.extend(input.iter().map(|&x| sanitize(x)));
                let mut offset = 0;
                while stage.pending.len() - offset >= stage.block_in {
                    stage.run(offset, None, out).map_err(|reason| AudioError::Resample {
                        from,
                        to,
                        reason,
                    })?;
                    offset += stage.block_in;
                }
                stage.pending.drain(..offset);
            }
        }
        self.frames_out += (out.len() - start) as u64;
        Ok(())
    }

    /// Flushes the tail: appends the remaining output so that the total since the start is
    /// `round(frames_in * output_rate / input_rate)` frames, then resets the resampler so it
    /// can start a new, unrelated stream.
    pub fn finish(&mut self, out: &mut Vec<f32>) -> Result<(), AudioError> {
        let total = scaled_len(self.frames_in, self.output_rate, self.input_rate);
        let owed = usize::try_from(total.saturating_sub(self.frames_out)).unwrap_or(usize::MAX);
        let (from, to) = (self.input_rate, self.output_rate);
        if let Some(stage) = &mut self.stage {
            let start = out.len();
            while out.len() - start < owed {
                let (before, trim_before) = (out.len(), stage.to_trim);
                let partial = stage.pending.len();
                stage.run(0, Some(partial), out).map_err(|reason| AudioError::Resample {
                    from,
                    to,
                    reason,
                })?;
                stage.pending.clear();
                if out.len() == before && stage.to_trim == trim_before {
                    break; // cannot happen (every block yields output); never loop forever
                }
            }
            out.truncate(start + owed);
            stage.fft.reset();
            stage.pending.clear();
            stage.to_trim = stage.delay;
        }
        self.frames_in = 0;
        self.frames_out = 0;
        Ok(())
    }
}

impl FftStage {
    /// Resamples one block of `pending` starting at `offset` (`partial`: only that many real
    /// frames, the rest silence) and appends its output, minus any delay still to trim.
    fn run(&mut self, offset: usize, partial: Option<usize>, out: &mut Vec<f32>) -> Result<(), String> {
        let input =
            InterleavedSlice::new(&self.pending[..], 1, self.pending.len()).map_err(|e| e.to_string())?;
        let mut output = InterleavedSlice::new_mut(&mut self.out_block[..], 1, self.block_out)
            .map_err(|e| e.to_string())?;
        let indexing = Indexing {
            input_offset: offset,
            output_offset: 0,
            partial_len: partial,
            active_channels_mask: None,
        };
        let (_, produced) =
            self.fft.process_into_buffer(&input, &mut output, Some(&indexing)).map_err(|e| e.to_string())?;
        let produced = produced.min(self.out_block.len());
        let skip = self.to_trim.min(produced);
        self.to_trim -= skip;
        out.extend_from_slice(&self.out_block[skip..produced]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{IN_RATE, resample_all, sine, tone_fraction};
    use chorus_proto::SUPPORTED_SAMPLE_RATES;

    /// Deterministic pseudo-random chunk sizes (xorshift), including 0 and 1.
    fn chunk_sizes(total: usize, seed: u64) -> Vec<usize> {
        let mut x = seed;
        let mut sizes = Vec::new();
        let mut left = total;
        while left > 0 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let n = match x % 5 {
                0 => 0,
                1 => 1,
                2 => (x >> 8) as usize % 64,
                3 => (x >> 8) as usize % 3000,
                _ => (x >> 8) as usize % 20000,
            }
            .min(left);
            sizes.push(n);
            left -= n;
        }
        sizes
    }

    fn resample_chunked(rate: u32, input: &[f32], seed: u64) -> Vec<f32> {
        let mut r = Resampler::new(IN_RATE, rate).expect("resampler");
        let mut out = Vec::new();
        let mut at = 0;
        for n in chunk_sizes(input.len(), seed) {
            r.process(&input[at..at + n], &mut out).expect("process");
            at += n;
        }
        r.finish(&mut out).expect("finish");
        out
    }

    #[test]
    fn output_length_is_exact_for_every_rate() {
        for &rate in &SUPPORTED_SAMPLE_RATES {
            for n in [0usize, 1, 2, 100, 255, 256, 441, 1000, 22050, 54321] {
                let input = sine(440.0, IN_RATE, n, 0.5);
                let expected = scaled_len(n as u64, rate, IN_RATE) as usize;
                let one_go = resample_all(rate, &input);
                assert!(
                    one_go.len().abs_diff(expected) <= 2,
                    "{rate} Hz, {n} in: {} out, want {expected}",
                    one_go.len()
                );
                let chunked = resample_chunked(rate, &input, n as u64 + 7);
                assert_eq!(chunked.len(), one_go.len(), "{rate} Hz, {n} in");
            }
        }
    }

    #[test]
    fn chunked_equals_one_go_without_clicks() {
        let input = sine(440.0, IN_RATE, 3 * IN_RATE as usize, 0.8);
        for &rate in &SUPPORTED_SAMPLE_RATES {
            let one_go = resample_all(rate, &input);
            for seed in [1u64, 99, 12345] {
                let chunked = resample_chunked(rate, &input, seed);
                assert_eq!(chunked.len(), one_go.len());
                let max_diff = one_go.iter().zip(&chunked).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
                assert!(max_diff < 1e-4, "{rate} Hz seed {seed}: max diff {max_diff}");
                // No clicks: a 440 Hz sine of amplitude 0.8 moves at most
                // 2 * 0.8 * sin(pi * 440 / rate) per sample; allow 2% on top. The first and
                // last 10 ms are left out: the sine starts and stops abruptly there.
                let limit = 1.02 * 1.6 * (std::f32::consts::PI * 440.0 / rate as f32).sin();
                let edge = rate as usize / 100;
                let max_jump = chunked[edge..chunked.len() - edge]
                    .windows(2)
                    .map(|w| (w[1] - w[0]).abs())
                    .fold(0.0f32, f32::max);
                assert!(max_jump < limit, "{rate} Hz seed {seed}: jump {max_jump} > {limit}");
            }
        }
    }

    #[test]
    fn output_is_aligned_and_keeps_pitch() {
        // A 1 kHz sine resampled must match the same sine generated at the output rate:
        // same frequency, no time shift, no gain change (edges excluded).
        let n = IN_RATE as usize;
        let input = sine(1000.0, IN_RATE, n, 0.5);
        for &rate in &SUPPORTED_SAMPLE_RATES {
            let out = resample_chunked(rate, &input, 3);
            let ideal = sine(1000.0, rate, out.len(), 0.5);
            let edge = rate as usize / 20;
            let max_err = out[edge..out.len() - edge]
                .iter()
                .zip(&ideal[edge..])
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(max_err < 2e-3, "{rate} Hz: max error {max_err} vs ideal sine");
            let frac = tone_fraction(&out[edge..out.len() - edge], rate, 1000.0);
            assert!(frac > 0.99, "{rate} Hz: 1 kHz holds only {frac} of the power");
        }
    }

    #[test]
    fn downsampling_removes_content_above_new_nyquist() {
        // 6 kHz cannot exist at 8 kHz: it must be filtered out, not aliased to 2 kHz.
        let input = sine(6000.0, IN_RATE, IN_RATE as usize, 0.5);
        let out = resample_all(8000, &input);
        let out = &out[400..out.len() - 400]; // the abrupt start and end are broadband
        let rms = (out.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / out.len() as f64).sqrt();
        assert!(rms < 1e-3, "aliasing: rms {rms}");
    }

    #[test]
    fn passthrough_and_sanitizing() {
        let mut r = Resampler::new(IN_RATE, IN_RATE).expect("resampler");
        assert!(r.is_passthrough());
        assert_eq!(r.max_latency_frames(), 0);
        let mut out = Vec::new();
        r.process(&[0.25, f32::NAN, -0.5, f32::INFINITY], &mut out).expect("process");
        assert_eq!(out, [0.25, 0.0, -0.5, 0.0]);
        r.finish(&mut out).expect("finish");
        assert_eq!(out.len(), 4);

        let mut r = Resampler::new(IN_RATE, 48000).expect("resampler");
        let mut input = sine(440.0, IN_RATE, 5000, 0.5);
        input[100] = f32::NAN;
        input[2000] = f32::NEG_INFINITY;
        let mut out = Vec::new();
        r.process(&input, &mut out).expect("process");
        r.finish(&mut out).expect("finish");
        assert!(out.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn latency_is_bounded_and_reuse_after_finish() {
        for &rate in &SUPPORTED_SAMPLE_RATES {
            let mut r = Resampler::new(IN_RATE, rate).expect("resampler");
            let latency = r.max_latency_frames();
            assert!(latency <= 1322, "{rate} Hz: latency {latency}");
            let input = sine(300.0, IN_RATE, 10_000, 0.5);
            let mut out = Vec::new();
            for chunk in input.chunks(997) {
                r.process(chunk, &mut out).expect("process");
                let ready = scaled_len(r.frames_in().saturating_sub(latency as u64), rate, IN_RATE);
                assert!(out.len() as u64 >= ready, "{rate} Hz: held back too much");
            }
            r.finish(&mut out).expect("finish");
            // After finish the resampler starts afresh: the same input gives the same output.
            let mut again = Vec::new();
            r.process(&input, &mut again).expect("process");
            r.finish(&mut again).expect("finish");
            assert_eq!(out, again, "{rate} Hz");
        }
    }

    #[test]
    fn bad_rates_are_errors() {
        assert!(Resampler::new(0, 8000).is_err());
        assert!(Resampler::new(22050, 0).is_err());
        assert!(Resampler::new(22050, 22051).is_err());
        assert!(Resampler::new(24000, 22050).is_ok());
        assert!(Resampler::new(16000, 44100).is_ok());
    }
}
