use std::fmt;
use std::str::FromStr;

/// Sample rates every output path supports (the Cartesia set).
pub const SUPPORTED_SAMPLE_RATES: [u32; 6] = [8000, 16000, 22050, 24000, 44100, 48000];
/// MP3 bit rates (bits per second) accepted for the `mp3` container (the Cartesia set).
pub const MP3_BIT_RATES: [u32; 5] = [32000, 64000, 96000, 128000, 192000];

/// Errors from parsing or validating a format or parameter.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FormatError {
    #[error("unsupported container '{0}' (expected raw, wav, mp3, opus or flac)")]
    UnknownContainer(String),
    #[error("unsupported encoding '{0}' (expected pcm_f32le, pcm_s16le, pcm_mulaw or pcm_alaw)")]
    UnknownEncoding(String),
    #[error("unsupported sample rate {0} Hz (expected one of 8000, 16000, 22050, 24000, 44100, 48000)")]
    UnsupportedSampleRate(u32),
    #[error("unsupported mp3 bit rate {0} (expected one of 32000, 64000, 96000, 128000, 192000)")]
    UnsupportedBitRate(u32),
    #[error("{field} must be between {min} and {max}, got {value}")]
    OutOfRange { field: &'static str, value: f64, min: f64, max: f64 },
}

/// The audio container around the samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Container {
    /// Bare samples, no header.
    Raw,
    /// RIFF/WAVE with a 44-byte header (streamed with unknown-size fields).
    Wav,
    /// MPEG-1/2 Layer III.
    Mp3,
    /// Opus in Ogg (RFC 7845). A Chorus extension of the Cartesia set (OpenAI's `opus`).
    Opus,
    /// FLAC, 16-bit. A Chorus extension of the Cartesia set (OpenAI's `flac`).
    Flac,
}

/// The sample encoding inside a `raw` or `wav` container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// 32-bit IEEE float, little-endian.
    PcmF32le,
    /// 16-bit signed integer, little-endian.
    PcmS16le,
    /// 8-bit G.711 mu-law.
    PcmMulaw,
    /// 8-bit G.711 A-law.
    PcmAlaw,
}

impl Encoding {
    /// Bytes per sample on the wire.
    pub fn bytes_per_sample(self) -> usize {
        match self {
            Encoding::PcmF32le => 4,
            Encoding::PcmS16le => 2,
            Encoding::PcmMulaw | Encoding::PcmAlaw => 1,
        }
    }

    /// The Cartesia name of this encoding.
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::PcmF32le => "pcm_f32le",
            Encoding::PcmS16le => "pcm_s16le",
            Encoding::PcmMulaw => "pcm_mulaw",
            Encoding::PcmAlaw => "pcm_alaw",
        }
    }
}

impl Container {
    /// The Cartesia name of this container.
    pub fn as_str(self) -> &'static str {
        match self {
            Container::Raw => "raw",
            Container::Wav => "wav",
            Container::Mp3 => "mp3",
            Container::Opus => "opus",
            Container::Flac => "flac",
        }
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Container {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Encoding {
    type Err = FormatError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pcm_f32le" => Ok(Encoding::PcmF32le),
            "pcm_s16le" => Ok(Encoding::PcmS16le),
            "pcm_mulaw" => Ok(Encoding::PcmMulaw),
            "pcm_alaw" => Ok(Encoding::PcmAlaw),
            other => Err(FormatError::UnknownEncoding(other.to_owned())),
        }
    }
}

impl Container {
    /// The container a file name's extension names (any case): `wav`, `mp3`, `opus`/`ogg`, `flac`, `raw`/`pcm`.
    pub fn from_extension(ext: &str) -> Option<Self> {
        match ext.to_ascii_lowercase().as_str() {
            "wav" => Some(Container::Wav),
            "mp3" => Some(Container::Mp3),
            "opus" | "ogg" => Some(Container::Opus),
            "flac" => Some(Container::Flac),
            "raw" | "pcm" => Some(Container::Raw),
            _ => None,
        }
    }
}

impl FromStr for Container {
    type Err = FormatError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "raw" => Ok(Container::Raw),
            "wav" => Ok(Container::Wav),
            "mp3" => Ok(Container::Mp3),
            "opus" => Ok(Container::Opus),
            "flac" => Ok(Container::Flac),
            other => Err(FormatError::UnknownContainer(other.to_owned())),
        }
    }
}

/// A complete output format: container, sample encoding, sample rate and (for mp3) bit rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OutputFormat {
    pub container: Container,
    /// Sample encoding for `raw` and `wav`. Ignored for `mp3`, `opus` and `flac` (16-bit input).
    pub encoding: Encoding,
    pub sample_rate: u32,
    /// MP3 (or Opus) bit rate in bits per second; `None` means 128 kbit/s for MP3, 32 kbit/s for Opus.
    pub bit_rate: Option<u32>,
}

impl OutputFormat {
    /// A WAV file of 16-bit samples at `sample_rate`.
    pub fn wav_s16(sample_rate: u32) -> Self {
        Self { container: Container::Wav, encoding: Encoding::PcmS16le, sample_rate, bit_rate: None }
    }

    /// Checks the sample rate and bit rate against the supported sets.
    pub fn validate(&self) -> Result<(), FormatError> {
        if !SUPPORTED_SAMPLE_RATES.contains(&self.sample_rate) {
            return Err(FormatError::UnsupportedSampleRate(self.sample_rate));
        }
        if let Some(b) = self.bit_rate
            && !MP3_BIT_RATES.contains(&b)
        {
            return Err(FormatError::UnsupportedBitRate(b));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for e in [Encoding::PcmF32le, Encoding::PcmS16le, Encoding::PcmMulaw, Encoding::PcmAlaw] {
            assert_eq!(e.as_str().parse::<Encoding>(), Ok(e));
            assert_eq!(serde_json::to_string(&e).unwrap(), format!("\"{}\"", e.as_str()));
        }
        for c in [Container::Raw, Container::Wav, Container::Mp3, Container::Opus, Container::Flac] {
            assert_eq!(c.as_str().parse::<Container>(), Ok(c));
        }
        assert!(matches!("pcm_s24le".parse::<Encoding>(), Err(FormatError::UnknownEncoding(_))));
    }

    #[test]
    fn validation_rejects_unsupported_rates() {
        assert!(OutputFormat::wav_s16(22050).validate().is_ok());
        assert_eq!(OutputFormat::wav_s16(11025).validate(), Err(FormatError::UnsupportedSampleRate(11025)));
        let mp3 =
            OutputFormat { container: Container::Mp3, bit_rate: Some(100), ..OutputFormat::wav_s16(22050) };
        assert_eq!(mp3.validate(), Err(FormatError::UnsupportedBitRate(100)));
    }
}
