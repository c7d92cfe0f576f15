//! [`StreamEncoder`]: model chunks in, output-format bytes out, ready for HTTP streaming.

use chorus_proto::{Container, Encoding, OutputFormat};

use crate::AudioError;
use crate::flac::FlacEncoder;
use crate::mp3::Mp3Encoder;
use crate::opus::{DEFAULT_OPUS_BIT_RATE, OggOpusEncoder, opus_rate};
use crate::pcm::encode_samples;
use crate::resample::Resampler;
use crate::wav::wav_header;

/// Turns a stream of mono `f32` chunks at the model rate into the bytes of an
/// [`OutputFormat`], chunk by chunk, with the resampler and MP3 encoder state carried across
/// chunks (no seams): the concatenation of every `push` and the final `finish` is one valid
/// file or raw stream.
///
/// - `raw`: bare samples in the format's encoding.
/// - `wav`: the first `push` (or `finish`, if nothing was pushed) starts with a 44-byte
///   streaming header whose sizes are `0xFFFFFFFF`; a file writer can fix them afterwards with
///   [`finalize_wav_file`](crate::finalize_wav_file)`(file, encoder.data_len())`.
/// - `mp3`: mono CBR at the output rate (see [`mp3_bit_rate`](crate::mp3_bit_rate)); the
///   format's `encoding` is ignored.
/// - `opus`: Ogg Opus, mono, at [`opus_rate`](crate::opus_rate) of the format's rate (22050 Hz is coded at 24
///   kHz), `bit_rate` or 32 kbit/s; one Ogg page per push.
/// - `flac`: 16-bit mono FLAC at the output rate, 4096-sample frames as they fill.
///
/// Latency: the resampler holds back up to
/// [`Resampler::max_latency_frames`] input frames (at most 60 ms from 22050 Hz, none when no
/// resampling is needed); LAME additionally buffers up to about two MP3 frames (1152 samples
/// each, 576 below 32 kHz). Everything held back comes out on the next `push` or on `finish`.
#[derive(Debug)]
pub struct StreamEncoder {
    format: OutputFormat,
    resampler: Resampler,
    sink: Sink,
    /// Resampled samples of the current call (kept to reuse the allocation).
    resampled: Vec<f32>,
    header_sent: bool,
    samples_out: u64,
    data_len: u64,
    finished: bool,
}

/// Where resampled samples go.
#[derive(Debug)]
enum Sink {
    Pcm(Encoding),
    Mp3(Box<Mp3Encoder>),
    Opus(Box<OggOpusEncoder>),
    Flac(Box<FlacEncoder>),
}

impl StreamEncoder {
    /// An encoder from mono samples at `input_rate` Hz to `format`. Fails on a format that
    /// does not [`validate`](OutputFormat::validate) (sample rate outside
    /// [`SUPPORTED_SAMPLE_RATES`](chorus_proto::SUPPORTED_SAMPLE_RATES), bad MP3 bit rate),
    /// on an unusable `input_rate` (0, or a ratio the resampler refuses), or if LAME refuses
    /// its settings.
    pub fn new(input_rate: u32, format: OutputFormat) -> Result<Self, AudioError> {
        format.validate()?;
        let sink = match format.container {
            Container::Raw | Container::Wav => Sink::Pcm(format.encoding),
            Container::Mp3 => Sink::Mp3(Box::new(Mp3Encoder::new(&format)?)),
            Container::Opus => Sink::Opus(Box::new(OggOpusEncoder::new(
                opus_rate(format.sample_rate),
                format.sample_rate,
                format.bit_rate.unwrap_or(DEFAULT_OPUS_BIT_RATE),
            )?)),
            Container::Flac => Sink::Flac(Box::new(FlacEncoder::new(format.sample_rate)?)),
        };
        let rate = match &sink {
            Sink::Opus(opus) => opus.rate(),
            Sink::Pcm(_) | Sink::Mp3(_) | Sink::Flac(_) => format.sample_rate,
        };
        let resampler = Resampler::new(input_rate, rate)?;
        Ok(Self {
            format,
            resampler,
            sink,
            resampled: Vec::new(),
            header_sent: false,
            samples_out: 0,
            data_len: 0,
            finished: false,
        })
    }

    /// Feeds model samples (any length, including 0; NaN/inf count as 0) and returns the bytes
    /// ready to send now, which may be empty. For WAV the first call's bytes start with the
    /// 44-byte header. Fails with [`AudioError::Finished`] after [`finish`](Self::finish).
    pub fn push(&mut self, samples: &[f32]) -> Result<Vec<u8>, AudioError> {
        if self.finished {
            return Err(AudioError::Finished);
        }
        self.resampled.clear();
        self.resampler.process(samples, &mut self.resampled)?;
        self.emit(false)
    }

    /// Flushes the resampler tail and the MP3 encoder and returns the last bytes (for WAV, the
    /// header too if nothing was pushed). The stream is over afterwards: a second `finish` or a
    /// `push` fails with [`AudioError::Finished`].
    pub fn finish(&mut self) -> Result<Vec<u8>, AudioError> {
        if self.finished {
            return Err(AudioError::Finished);
        }
        self.finished = true;
        self.resampled.clear();
        self.resampler.finish(&mut self.resampled)?;
        self.emit(true)
    }

    /// Encodes `self.resampled`, after the WAV header if it is still due.
    fn emit(&mut self, last: bool) -> Result<Vec<u8>, AudioError> {
        let mut out = Vec::new();
        if self.format.container == Container::Wav && !self.header_sent {
            out = wav_header(self.format.sample_rate, self.format.encoding, None);
            self.header_sent = true;
        }
        let start = out.len();
        match &mut self.sink {
            Sink::Pcm(encoding) => encode_samples(&self.resampled, *encoding, &mut out),
            Sink::Mp3(mp3) => {
                mp3.encode(&self.resampled, &mut out)?;
                if last {
                    mp3.flush(&mut out)?;
                }
            }
            Sink::Opus(opus) => opus.encode(&self.resampled, last, &mut out)?,
            Sink::Flac(flac) => flac.encode(&self.resampled, last, &mut out)?,
        }
        self.samples_out += self.resampled.len() as u64;
        self.data_len += (out.len() - start) as u64;
        Ok(out)
    }

    /// The output format.
    pub fn format(&self) -> &OutputFormat {
        &self.format
    }

    /// The output sample rate in Hz: the format's, except for Opus, which codes at [`opus_rate`](crate::opus_rate)
    /// of it.
    pub fn output_rate(&self) -> u32 {
        self.resampler.output_rate()
    }

    /// Number of output samples produced so far (after resampling; for MP3, handed to LAME).
    pub fn samples_out(&self) -> u64 {
        self.samples_out
    }

    /// Bytes returned so far, not counting the WAV header: the WAV `data` chunk length that
    /// [`finalize_wav_file`](crate::finalize_wav_file) needs.
    pub fn data_len(&self) -> u64 {
        self.data_len
    }

    /// The resampler in use (for its rates and [`Resampler::max_latency_frames`]).
    pub fn resampler(&self) -> &Resampler {
        &self.resampler
    }

    /// True once [`finish`](Self::finish) was called.
    pub fn is_finished(&self) -> bool {
        self.finished
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resample::scaled_len;
    use crate::test_support::{IN_RATE, resample_all, sine};
    use crate::wav::{WAV_HEADER_LEN, finalize_wav_file};
    use chorus_proto::{FormatError, SUPPORTED_SAMPLE_RATES};
    use std::io::Cursor;

    fn format(container: Container, encoding: Encoding, rate: u32) -> OutputFormat {
        OutputFormat { container, encoding, sample_rate: rate, bit_rate: None }
    }

    /// Streams `input` in uneven chunks (sentence-sized and tiny ones) and returns all bytes.
    fn stream(enc: &mut StreamEncoder, input: &[f32]) -> Vec<u8> {
        let sizes = [4000usize, 0, 1, 17, 30_000, 2, 513, 9000];
        let mut bytes = Vec::new();
        let (mut at, mut i) = (0, 0);
        while at < input.len() {
            let n = sizes[i % sizes.len()].min(input.len() - at);
            bytes.extend(enc.push(&input[at..at + n]).expect("push"));
            at += n;
            i += 1;
        }
        bytes.extend(enc.finish().expect("finish"));
        bytes
    }

    fn patched(mut bytes: Vec<u8>) -> Vec<u8> {
        let data_len = (bytes.len() - WAV_HEADER_LEN) as u64;
        let mut file = Cursor::new(std::mem::take(&mut bytes));
        finalize_wav_file(&mut file, data_len).expect("finalize");
        file.into_inner()
    }

    #[test]
    fn wav_s16_reads_back_with_hound() {
        let input = sine(440.0, IN_RATE, 50_000, 0.7);
        for &rate in &SUPPORTED_SAMPLE_RATES {
            let mut enc = StreamEncoder::new(IN_RATE, OutputFormat::wav_s16(rate)).expect("new");
            let bytes = stream(&mut enc, &input);
            assert_eq!(&bytes[4..8], &[0xFF; 4]);
            assert_eq!(&bytes[40..44], &[0xFF; 4]);
            assert_eq!(enc.data_len() as usize, bytes.len() - WAV_HEADER_LEN);
            let file = patched(bytes);
            let reader = hound::WavReader::new(Cursor::new(file)).expect("hound reads it");
            let spec = reader.spec();
            assert_eq!((spec.channels, spec.sample_rate, spec.bits_per_sample), (1, rate, 16));
            assert_eq!(spec.sample_format, hound::SampleFormat::Int);
            let got: Vec<i16> = reader.into_samples().map(|s| s.expect("sample")).collect();
            let want: Vec<i16> = resample_all(rate, &input).into_iter().map(crate::f32_to_s16).collect();
            assert_eq!(got, want, "{rate} Hz");
            let expected = scaled_len(input.len() as u64, rate, IN_RATE);
            assert!(enc.samples_out().abs_diff(expected) <= 2);
            assert_eq!(got.len() as u64, enc.samples_out());
        }
    }

    #[test]
    fn wav_f32_reads_back_with_hound() {
        let input = sine(1000.0, IN_RATE, 30_000, 0.5);
        let fmt = format(Container::Wav, Encoding::PcmF32le, 48000);
        let mut enc = StreamEncoder::new(IN_RATE, fmt).expect("new");
        let file = patched(stream(&mut enc, &input));
        let reader = hound::WavReader::new(Cursor::new(file)).expect("hound reads it");
        assert_eq!(reader.spec().sample_format, hound::SampleFormat::Float);
        assert_eq!(reader.spec().bits_per_sample, 32);
        let got: Vec<f32> = reader.into_samples().map(|s| s.expect("sample")).collect();
        let want = resample_all(48000, &input);
        assert_eq!(got.len(), want.len());
        let max_diff = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(max_diff < 1e-4, "max diff {max_diff}");
    }

    #[test]
    fn g711_wav_and_raw() {
        let input = sine(440.0, IN_RATE, 10_000, 0.5);
        for (encoding, tag) in [(Encoding::PcmMulaw, 7u16), (Encoding::PcmAlaw, 6)] {
            let mut enc = StreamEncoder::new(IN_RATE, format(Container::Wav, encoding, 8000)).expect("new");
            let bytes = patched(stream(&mut enc, &input));
            assert_eq!(u16::from_le_bytes([bytes[20], bytes[21]]), tag);
            assert_eq!(u16::from_le_bytes([bytes[34], bytes[35]]), 8);
            let data = u32::from_le_bytes([bytes[40], bytes[41], bytes[42], bytes[43]]);
            assert_eq!(u64::from(data), enc.samples_out());
            assert_eq!(enc.samples_out(), scaled_len(10_000, 8000, IN_RATE));
            // Decoding the G.711 bytes gives back the sine (within G.711 precision).
            let want = resample_all(8000, &input);
            let decode = match encoding {
                Encoding::PcmMulaw => crate::mulaw_to_linear,
                Encoding::PcmAlaw | Encoding::PcmF32le | Encoding::PcmS16le => crate::alaw_to_linear,
            };
            let data = &bytes[WAV_HEADER_LEN..WAV_HEADER_LEN + data as usize];
            for (&b, &w) in data.iter().zip(&want) {
                let v = f32::from(decode(b)) / 32767.0;
                assert!((v - w).abs() < 0.02, "{v} vs {w}");
            }

            let mut raw = StreamEncoder::new(IN_RATE, format(Container::Raw, encoding, 8000)).expect("new");
            let raw_bytes = stream(&mut raw, &input);
            assert_eq!(raw_bytes, data, "raw = wav minus header");
        }
    }

    #[test]
    fn raw_lengths_for_every_rate_and_encoding() {
        let input = sine(300.0, IN_RATE, 12_345, 0.5);
        for &rate in &SUPPORTED_SAMPLE_RATES {
            for encoding in [Encoding::PcmF32le, Encoding::PcmS16le, Encoding::PcmMulaw, Encoding::PcmAlaw] {
                let mut enc =
                    StreamEncoder::new(IN_RATE, format(Container::Raw, encoding, rate)).expect("new");
                assert_eq!(enc.output_rate(), rate);
                let bytes = stream(&mut enc, &input);
                let expected = scaled_len(12_345, rate, IN_RATE);
                assert!(enc.samples_out().abs_diff(expected) <= 2, "{rate} {encoding}");
                assert_eq!(bytes.len() as u64, enc.samples_out() * encoding.bytes_per_sample() as u64);
            }
        }
    }

    #[test]
    fn empty_stream_and_misuse() {
        let mut enc = StreamEncoder::new(IN_RATE, OutputFormat::wav_s16(16000)).expect("new");
        let bytes = enc.finish().expect("finish");
        assert_eq!(bytes, crate::wav_header(16000, Encoding::PcmS16le, None));
        assert!(matches!(enc.finish(), Err(AudioError::Finished)));
        assert!(matches!(enc.push(&[0.0]), Err(AudioError::Finished)));

        let mut enc = StreamEncoder::new(IN_RATE, OutputFormat::wav_s16(22050)).expect("new");
        assert_eq!(enc.push(&[]).expect("push").len(), WAV_HEADER_LEN);
        assert_eq!(enc.push(&[]).expect("push").len(), 0);
        assert_eq!(enc.push(&[0.5]).expect("push"), 16384i16.to_le_bytes());
    }

    #[test]
    fn garbage_input_does_not_panic() {
        let mut input = vec![f32::NAN; 1000];
        input.extend(vec![f32::INFINITY; 1000]);
        input.extend(vec![1e30f32; 1000]);
        input.extend(vec![-1e30f32; 1000]);
        for container in [Container::Raw, Container::Wav, Container::Mp3] {
            let mut enc =
                StreamEncoder::new(IN_RATE, format(container, Encoding::PcmF32le, 44100)).expect("new");
            let bytes = stream(&mut enc, &input);
            assert!(!bytes.is_empty());
            if container == Container::Raw {
                assert!(bytes.chunks_exact(4).all(|b| {
                    let v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                    (-1.0..=1.0).contains(&v)
                }));
            }
        }
    }

    #[test]
    fn unsupported_formats_are_errors() {
        let err = StreamEncoder::new(IN_RATE, OutputFormat::wav_s16(11025)).expect_err("11025");
        assert!(matches!(err, AudioError::Format(FormatError::UnsupportedSampleRate(11025))));
        let bad_mp3 =
            OutputFormat { bit_rate: Some(100_000), ..format(Container::Mp3, Encoding::PcmS16le, 44100) };
        assert!(matches!(
            StreamEncoder::new(IN_RATE, bad_mp3),
            Err(AudioError::Format(FormatError::UnsupportedBitRate(100_000)))
        ));
        assert!(matches!(
            StreamEncoder::new(0, OutputFormat::wav_s16(8000)),
            Err(AudioError::Resample { .. })
        ));
    }
}
