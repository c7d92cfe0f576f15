//! MP3 encoding with LAME: mono CBR at the output rate, chunk by chunk.

use std::fmt;

use chorus_proto::OutputFormat;
use mp3lame_encoder::{Bitrate, Builder, Encoder, FlushNoGap, Mode, MonoPcm, Quality};

use crate::AudioError;
use crate::pcm::f32_to_s16;

/// Bit rate used when the format does not name one.
const DEFAULT_BIT_RATE: u32 = 128_000;
/// Samples handed to LAME per call (bounds the output buffer of one call).
const ENCODE_BLOCK: usize = 1 << 16;

/// Every constant bit rate LAME can write, in kbit/s (MPEG-2's 56 and 144 are legal too but have no `Bitrate`
/// variant); each MPEG version allows a run of them:
const ALL_RATES: [(u32, Bitrate); 16] = [
    (8, Bitrate::Kbps8),
    (16, Bitrate::Kbps16),
    (24, Bitrate::Kbps24),
    (32, Bitrate::Kbps32),
    (40, Bitrate::Kbps40),
    (48, Bitrate::Kbps48),
    (64, Bitrate::Kbps64),
    (80, Bitrate::Kbps80),
    (96, Bitrate::Kbps96),
    (112, Bitrate::Kbps112),
    (128, Bitrate::Kbps128),
    (160, Bitrate::Kbps160),
    (192, Bitrate::Kbps192),
    (224, Bitrate::Kbps224),
    (256, Bitrate::Kbps256),
    (320, Bitrate::Kbps320),
];
/// MPEG-1 (32, 44.1, 48 kHz): 32 to 320 kbit/s ...
const MPEG1_RATES: &[(u32, Bitrate)] = ALL_RATES.split_at(3).1;
/// ... MPEG-2 (16 to 24 kHz), which stops at 160 kbit/s ...
const MPEG2_RATES: &[(u32, Bitrate)] = ALL_RATES.split_at(12).0;
/// ... and MPEG-2.5 (8 to 12 kHz), where LAME stops at 64 kbit/s: MPEG-2's rates up to 64.
const MPEG25_RATES: &[(u32, Bitrate)] = MPEG2_RATES.split_at(7).0;

/// The allowed rate nearest to `format.bit_rate` (default 128 kbit/s) for the format's
/// sample rate.
fn nearest_bit_rate(format: &OutputFormat) -> (u32, Bitrate) {
    let wanted = format.bit_rate.unwrap_or(DEFAULT_BIT_RATE) / 1000;
    let table: &[(u32, Bitrate)] = match format.sample_rate {
        32_000.. => MPEG1_RATES,
        16_000..32_000 => MPEG2_RATES,
        _ => MPEG25_RATES,
    };
    table.iter().copied().min_by_key(|&(kbps, _)| kbps.abs_diff(wanted)).unwrap_or((128, Bitrate::Kbps128))
}

/// The MP3 bit rate (bits per second) actually used for `format`: its `bit_rate`, default
/// 128000, moved to the nearest rate the MPEG version allows (as LAME itself would):
/// 16 to 24 kHz is MPEG-2, whose maximum is 160 kbit/s (192000 becomes 160000), and 8 kHz is
/// MPEG-2.5, where LAME stops at 64 kbit/s (96000, 128000 and 192000 become 64000).
pub fn mp3_bit_rate(format: &OutputFormat) -> u32 {
    nearest_bit_rate(format).0 * 1000
}

/// A LAME encoder for mono 16-bit input at the output rate.
pub(crate) struct Mp3Encoder {
    lame: Encoder,
    sample_rate: u32,
    bit_rate: u32,
    /// 16-bit samples of the current call.
    pcm: Vec<i16>,
}

impl fmt::Debug for Mp3Encoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mp3Encoder")
            .field("sample_rate", &self.sample_rate)
            .field("bit_rate", &self.bit_rate)
            .finish_non_exhaustive()
    }
}

fn lame_err(what: &str, e: impl fmt::Display) -> AudioError {
    AudioError::Mp3(format!("{what}: {e}"))
}

impl Mp3Encoder {
    /// Mono CBR at `format.sample_rate` (no resampling inside LAME), quality 3 (the LAME
    /// command line default), no Xing/LAME tag frame (a stream cannot go back to fill it in).
    /// Like the `lame` command, LAME's presets scale the level by 0.95 up to 160 kbit/s.
    pub(crate) fn new(format: &OutputFormat) -> Result<Self, AudioError> {
        let (kbps, brate) = nearest_bit_rate(format);
        let mut b = Builder::new().ok_or_else(|| AudioError::Mp3("out of memory".into()))?;
        b.set_num_channels(1).map_err(|e| lame_err("channels", e))?;
        b.set_mode(Mode::Mono).map_err(|e| lame_err("mode", e))?;
        b.set_sample_rate(format.sample_rate).map_err(|e| lame_err("sample rate", e))?;
        b.set_output_sample_rate(std::num::NonZeroU32::new(format.sample_rate))
            .map_err(|e| lame_err("output sample rate", e))?;
        b.set_brate(brate).map_err(|e| lame_err("bit rate", e))?;
        b.set_quality(Quality::VeryNice).map_err(|e| lame_err("quality", e))?;
        b.set_to_write_vbr_tag(false).map_err(|e| lame_err("tag", e))?;
        let lame = b.build().map_err(|e| lame_err("settings", e))?;
        Ok(Self { lame, sample_rate: format.sample_rate, bit_rate: kbps * 1000, pcm: Vec::new() })
    }

    /// Encodes `samples` (at the output rate) and appends the finished frames to `out`.
    pub(crate) fn encode(&mut self, samples: &[f32], out: &mut Vec<u8>) -> Result<(), AudioError> {
        for block in samples.chunks(ENCODE_BLOCK) {
            self.pcm.clear();
            self.pcm.extend(block.iter().map(|&s| f32_to_s16(s)));
            out.reserve(mp3lame_encoder::max_required_buffer_size(block.len()));
            self.lame.encode_to_vec(MonoPcm(&self.pcm[..]), out).map_err(|e| lame_err("encode", e))?;
        }
        Ok(())
    }

    /// Flushes the last frames (padded with silence) to `out`.
    pub(crate) fn flush(&mut self, out: &mut Vec<u8>) -> Result<(), AudioError> {
        out.reserve(7200);
        self.lame.flush_to_vec::<FlushNoGap>(out).map_err(|e| lame_err("flush", e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chorus_proto::{Container, Encoding, MP3_BIT_RATES, SUPPORTED_SAMPLE_RATES};

    fn mp3(sample_rate: u32, bit_rate: Option<u32>) -> OutputFormat {
        OutputFormat { container: Container::Mp3, encoding: Encoding::PcmS16le, sample_rate, bit_rate }
    }

    #[test]
    fn bit_rates_follow_the_mpeg_version() {
        assert_eq!(mp3_bit_rate(&mp3(44100, None)), 128_000);
        assert_eq!(mp3_bit_rate(&mp3(48000, Some(192_000))), 192_000);
        assert_eq!(mp3_bit_rate(&mp3(22050, Some(192_000))), 160_000);
        assert_eq!(mp3_bit_rate(&mp3(8000, Some(32_000))), 32_000);
        assert_eq!(mp3_bit_rate(&mp3(8000, None)), 64_000);
        assert_eq!(mp3_bit_rate(&mp3(8000, Some(192_000))), 64_000);
        assert_eq!(mp3_bit_rate(&mp3(16000, Some(96_000))), 96_000);
    }

    #[test]
    fn every_rate_and_bit_rate_builds() {
        for &rate in &SUPPORTED_SAMPLE_RATES {
            for &br in &MP3_BIT_RATES {
                let enc = Mp3Encoder::new(&mp3(rate, Some(br)));
                assert!(enc.is_ok(), "{rate} Hz {br} bit/s: {enc:?}");
            }
        }
    }
}
