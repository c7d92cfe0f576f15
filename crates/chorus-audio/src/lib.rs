//! Audio output: sample encodings, resampling, WAV, MP3, Ogg Opus and FLAC, all streaming-safe.
//!
//! The model produces mono `f32` samples in `[-1, 1]` at its own rate (22050 Hz for the
//! bundled voices), one chunk per sentence. [`StreamEncoder`] turns a stream of such chunks
//! into the bytes of a requested [`OutputFormat`], chunk by chunk, without seams: the
//! resampler state is carried across chunks, so concatenating everything that
//! [`StreamEncoder::push`] and [`StreamEncoder::finish`] return gives the same audio as
//! encoding the whole utterance in one go.
//!
//! The building blocks are public too: [`Resampler`] (streaming, rubato FFT based),
//! [`encode_samples`] (f32 to s16 / f32le / G.711 mu-law / A-law), [`wav_header`] and
//! [`finalize_wav_file`], [`apply_gain`], [`content_type`] and [`mp3_bit_rate`].

mod flac;
mod mp3;
mod opus;
pub mod output;
mod pcm;
mod resample;
mod stream;
#[cfg(test)]
mod test_support;
mod wav;

use chorus_proto::{Container, FormatError, OutputFormat};

pub use mp3::mp3_bit_rate;
pub use opus::{DEFAULT_OPUS_BIT_RATE, opus_rate};
pub use pcm::{
    alaw_to_linear, apply_gain, encode_samples, f32_to_s16, linear_to_alaw, linear_to_mulaw, mulaw_to_linear,
};
pub use resample::Resampler;
pub use stream::StreamEncoder;
pub use wav::{WAV_HEADER_LEN, finalize_wav_file, wav_header, wav_sizes_patch};

/// Errors from building or running an audio output pipeline.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    /// The requested output format is not supported (sample rate, bit rate).
    #[error("unsupported output format: {0}")]
    Format(#[from] FormatError),
    /// No resampler can be built between these two rates (zero, or a ratio too awkward
    /// for the synchronous FFT resampler).
    #[error("cannot resample from {from} Hz to {to} Hz: {reason}")]
    Resample {
        /// Input sample rate.
        from: u32,
        /// Output sample rate.
        to: u32,
        /// Why.
        reason: String,
    },
    /// The MP3 encoder (LAME) refused its settings or failed while encoding.
    #[error("mp3 encoder: {0}")]
    Mp3(String),
    /// The Opus or FLAC encoder failed.
    #[error("{0}")]
    Encoder(String),
    /// `push` or `finish` was called after `finish`.
    #[error("the stream was already finished")]
    Finished,
}

/// The HTTP `Content-Type` for a format: `audio/wav`, `audio/mpeg`, `audio/ogg` (Opus), `audio/flac`, or
/// `application/octet-stream` for raw samples.
pub fn content_type(format: &OutputFormat) -> &'static str {
    match format.container {
        Container::Wav => "audio/wav",
        Container::Mp3 => "audio/mpeg",
        Container::Opus => "audio/ogg",
        Container::Flac => "audio/flac",
        Container::Raw => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chorus_proto::Encoding;

    #[test]
    fn content_types() {
        let mut f = OutputFormat::wav_s16(22050);
        assert_eq!(content_type(&f), "audio/wav");
        f.container = Container::Mp3;
        assert_eq!(content_type(&f), "audio/mpeg");
        f.container = Container::Raw;
        f.encoding = Encoding::PcmF32le;
        assert_eq!(content_type(&f), "application/octet-stream");
    }
}
