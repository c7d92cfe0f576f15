//! FLAC with `flacenc` (a maintained pure-Rust encoder): mono, 16-bit, fixed 4096-sample blocks, streamed.
//!
//! The stream header goes out first with the fields a stream cannot know yet left as FLAC's "unknown" (total
//! samples 0, MD5 all zero, frame sizes 0), then each frame as soon as its block is full; the last, shorter block on
//! `finish`. Decoders read such a stream to its end (`flac -d`, `ffmpeg`, `sox`).

use std::fmt;

use flacenc::bitsink::ByteSink;
use flacenc::component::{BitRepr, Stream, StreamInfo};
use flacenc::error::{Verified, Verify};
use flacenc::source::{Fill, FrameBuf};

use crate::AudioError;
use crate::pcm::{drain_blocks, f32_to_s16};

/// Samples per FLAC block (the reference encoder's default at this rate range).
const BLOCK: usize = 4096;

/// A FLAC stream being written.
pub(crate) struct FlacEncoder {
    frames: FrameWriter,
    pending: Vec<i32>,
    header_written: bool,
}

/// The encoder's settings and the frames written so far.
struct FrameWriter {
    config: Verified<flacenc::config::Encoder>,
    info: StreamInfo,
    framebuf: FrameBuf,
    frame_number: usize,
}

impl fmt::Debug for FlacEncoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlacEncoder").field("frames", &self.frames.frame_number).finish_non_exhaustive()
    }
}

fn flac_err(what: &str, e: impl fmt::Debug) -> AudioError {
    AudioError::Encoder(format!("flac {what}: {e:?}"))
}

impl FlacEncoder {
    /// Mono 16-bit at `rate` Hz.
    pub(crate) fn new(rate: u32) -> Result<Self, AudioError> {
        let mut config = flacenc::config::Encoder::default();
        config.block_size = BLOCK;
        let config = config.into_verified().map_err(|(_, e)| flac_err("settings", e))?;
        let mut info = StreamInfo::new(rate as usize, 1, 16).map_err(|e| flac_err("stream info", e))?;
        info.set_block_sizes(BLOCK, BLOCK).map_err(|e| flac_err("block size", e))?;
        // Frame sizes are not known before the end: 0 is FLAC's "unknown".
        info.set_frame_sizes(0, 0).map_err(|e| flac_err("frame size", e))?;
        let framebuf = FrameBuf::with_size(1, BLOCK).map_err(|e| flac_err("frame buffer", e))?;
        let frames = FrameWriter { config, info, framebuf, frame_number: 0 };
        Ok(Self { frames, pending: Vec::new(), header_written: false })
    }

    /// Encodes `samples` (at the stream's rate) and appends the finished bytes to `out`; with `last`, the final
    /// shorter block too.
    pub(crate) fn encode(
        &mut self,
        samples: &[f32],
        last: bool,
        out: &mut Vec<u8>,
    ) -> Result<(), AudioError> {
        if !self.header_written {
            let stream = Stream::with_stream_info(self.frames.info.clone());
            let mut sink = ByteSink::new();
            stream.write(&mut sink).map_err(|e| flac_err("header", e))?;
            out.extend_from_slice(sink.as_slice());
            self.header_written = true;
        }
        self.pending.extend(samples.iter().map(|&s| i32::from(f32_to_s16(s))));
        let frames = &mut self.frames;
        drain_blocks(&mut self.pending, BLOCK, |block| frames.write(block, out))?;
        if last && !self.pending.is_empty() {
            self.frames.write(&self.pending, out)?;
            self.pending.clear();
        }
        Ok(())
    }
}

impl FrameWriter {
    /// Encodes `samples` (at most a block) as the next frame and appends its bytes to `out`.
    fn write(&mut self, samples: &[i32], out: &mut Vec<u8>) -> Result<(), AudioError> {
        self.framebuf.fill_interleaved(samples).map_err(|e| flac_err("samples", e))?;
        let frame =
            flacenc::encode_fixed_size_frame(&self.config, &self.framebuf, self.frame_number, &self.info)
                .map_err(|e| flac_err("encode", e))?;
        self.frame_number += 1;
        let mut sink = ByteSink::new();
        frame.write(&mut sink).map_err(|e| flac_err("frame", e))?;
        out.extend_from_slice(sink.as_slice());
        Ok(())
    }
}
