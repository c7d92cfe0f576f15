//! Ogg Opus (RFC 7845) with libopus (the `opus` crate's bindings over the system's libopus, Debian's
//! `libopus0`): mono, 20 ms packets, one Ogg page per call so that every push's audio leaves at once.
//!
//! Opus codes at 8, 12, 16, 24 or 48 kHz; the stream is encoded at [`opus_rate`] of the requested rate (22050 Hz
//! becomes 24 kHz, 44100 Hz 48 kHz) and the `OpusHead` names the requested rate as the input rate. Granule
//! positions count 48 kHz samples, the encoder's look-ahead is the pre-skip, and the last page's granule position
//! trims the padding of the final packet, so decoders give back exactly the samples pushed.

use std::fmt;
use std::sync::Mutex;

use ogg::writing::{PacketWriteEndInfo, PacketWriter};
use opus::{Application, Bitrate, Channels, Encoder};

use crate::AudioError;
use crate::pcm::drain_blocks;

/// Bit rate when the format names none: ample for mono speech.
pub const DEFAULT_OPUS_BIT_RATE: u32 = 32_000;
/// The Ogg stream's serial number (one logical stream per file).
const SERIAL: u32 = 0x4348_4f52; // "CHOR"
/// The largest packet libopus may produce for one frame.
const MAX_PACKET: usize = 4000;

/// The rate Opus encodes a stream requested at `rate` Hz: the lowest Opus rate at or above it.
pub fn opus_rate(rate: u32) -> u32 {
    [8000, 12000, 16000, 24000].into_iter().find(|&r| r >= rate).unwrap_or(48000)
}

/// An Ogg Opus stream being written.
pub(crate) struct OggOpusEncoder {
    /// libopus' encoder is `Send` but not `Sync`; the lock (never contended: every call takes `&mut self`) makes
    /// the stream encoder shareable by reference, as the API's async tasks need.
    encoder: Mutex<Encoder>,
    /// The encoder's rate and samples per 20 ms frame.
    rate: u32,
    frame: usize,
    /// 48 kHz samples per encoder sample.
    scale: u64,
    /// The rate the client asked for (the header's "input sample rate").
    input_rate: u32,
    pre_skip: u64,
    /// Samples waiting for a whole frame.
    pending: Vec<f32>,
    /// Samples (at `rate`) pushed so far and packets encoded so far, in 48 kHz units.
    samples_in: u64,
    encoded: u64,
    writer: PacketWriter<'static, Vec<u8>>,
    headers_written: bool,
    packet: Vec<u8>,
}

impl fmt::Debug for OggOpusEncoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OggOpusEncoder").field("rate", &self.rate).finish_non_exhaustive()
    }
}

fn opus_err(what: &str, e: impl fmt::Display) -> AudioError {
    AudioError::Encoder(format!("opus {what}: {e}"))
}

impl OggOpusEncoder {
    /// Mono at `rate` (an Opus rate, see [`opus_rate`]) and `bit_rate` bits per second; `input_rate` goes in the
    /// header.
    pub(crate) fn new(rate: u32, input_rate: u32, bit_rate: u32) -> Result<Self, AudioError> {
        let mut encoder =
            Encoder::new(rate, Channels::Mono, Application::Audio).map_err(|e| opus_err("init", e))?;
        let bits = i32::try_from(bit_rate).map_err(|e| opus_err("bit rate", e))?;
        encoder.set_bitrate(Bitrate::Bits(bits)).map_err(|e| opus_err("bit rate", e))?;
        let scale = u64::from(48_000 / rate);
        let lookahead = encoder.get_lookahead().map_err(|e| opus_err("look-ahead", e))?;
        let pre_skip = u64::try_from(lookahead).unwrap_or(0) * scale;
        Ok(Self {
            encoder: Mutex::new(encoder),
            rate,
            frame: (rate / 50) as usize,
            scale,
            input_rate,
            pre_skip,
            pending: Vec::new(),
            samples_in: 0,
            encoded: 0,
            writer: PacketWriter::new(Vec::new()),
            headers_written: false,
            packet: vec![0; MAX_PACKET],
        })
    }

    /// The identification and comment headers (each on its own page, as RFC 7845 requires).
    fn headers(&mut self) -> Result<(), AudioError> {
        let mut head = Vec::with_capacity(19);
        head.extend_from_slice(b"OpusHead");
        head.push(1); // version
        head.push(1); // channels
        head.extend_from_slice(&u16::try_from(self.pre_skip).unwrap_or(u16::MAX).to_le_bytes());
        head.extend_from_slice(&self.input_rate.to_le_bytes());
        head.extend_from_slice(&0i16.to_le_bytes()); // output gain
        head.push(0); // channel mapping family: mono/stereo
        let vendor = concat!("chorus ", env!("CARGO_PKG_VERSION"));
        let mut tags = Vec::new();
        tags.extend_from_slice(b"OpusTags");
        tags.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
        tags.extend_from_slice(vendor.as_bytes());
        tags.extend_from_slice(&0u32.to_le_bytes()); // no user comments
        let io = |e: std::io::Error| opus_err("ogg", e);
        self.writer.write_packet(head, SERIAL, PacketWriteEndInfo::EndPage, 0).map_err(io)?;
        self.writer.write_packet(tags, SERIAL, PacketWriteEndInfo::EndPage, 0).map_err(io)?;
        self.headers_written = true;
        Ok(())
    }

    /// Encodes `samples` (at the encoder's rate) and appends the finished pages to `out`. With `last`, the final
    /// partial frame is padded with silence and the stream ends (the end-of-stream page trims the padding).
    pub(crate) fn encode(
        &mut self,
        samples: &[f32],
        last: bool,
        out: &mut Vec<u8>,
    ) -> Result<(), AudioError> {
        if !self.headers_written {
            self.headers()?;
        }
        self.samples_in += samples.len() as u64;
        self.pending.extend_from_slice(samples);
        let mut frames: Vec<Vec<u8>> = Vec::new();
        drain_blocks(&mut self.pending, self.frame, |input| {
            frames.push(Self::encode_frame(&mut self.encoder, &mut self.packet, input)?);
            Ok(())
        })?;
        // The last page must hold a packet to carry the end-of-stream flag: the rest of the samples, padded with
        // silence, or a silent frame that the final granule position trims entirely.
        if last && (!self.pending.is_empty() || frames.is_empty()) {
            self.pending.resize(self.frame, 0.0);
            frames.push(Self::encode_frame(&mut self.encoder, &mut self.packet, &self.pending)?);
            self.pending.clear();
        }
        let n = frames.len();
        for (i, packet) in frames.into_iter().enumerate() {
            self.encoded += self.frame as u64 * self.scale;
            let end = if i + 1 < n {
                PacketWriteEndInfo::NormalPacket
            } else if last {
                PacketWriteEndInfo::EndStream
            } else {
                PacketWriteEndInfo::EndPage
            };
            // The final granule position counts the real samples only: decoders drop the padding.
            let granule = if last && i + 1 == n {
                self.pre_skip + self.samples_in * self.scale
            } else {
                self.pre_skip + self.encoded
            };
            self.writer.write_packet(packet, SERIAL, end, granule).map_err(|e| opus_err("ogg", e))?;
        }
        out.append(self.writer.inner_mut());
        Ok(())
    }

    /// Encodes one frame of `input` into a packet (`packet` is the scratch buffer).
    fn encode_frame(
        encoder: &mut Mutex<Encoder>,
        packet: &mut [u8],
        input: &[f32],
    ) -> Result<Vec<u8>, AudioError> {
        let encoder = encoder.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = encoder.encode_float(input, packet).map_err(|e| opus_err("encode", e))?;
        Ok(packet[..n].to_vec())
    }

    /// The encoder's rate in Hz.
    pub(crate) fn rate(&self) -> u32 {
        self.rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        for (rate, coded) in
            [(8000, 8000), (16000, 16000), (22050, 24000), (24000, 24000), (44100, 48000), (48000, 48000)]
        {
            assert_eq!(opus_rate(rate), coded, "{rate} Hz");
        }
    }
}
