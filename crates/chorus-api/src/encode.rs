//! A job's audio chunks, encoded for the client: the part the HTTP streaming routes ([`crate::job_stream`]) and
//! the WebSocket contexts share.
//!
//! Chunks are numbered per job: a gap is an error, never silence. The [`StreamEncoder`] is built on the first
//! chunk, whose sample rate it needs (the resampler's state then carries across chunks); a later chunk at another
//! rate is an error. Encoding (resampling, G.711, MP3) runs on Tokio's blocking pool, never on a runtime worker.
//!
//! The errors carry no request id: the caller adds it. Their causes, which may hold internal details, are logged
//! (with the request id), and the client gets a generic message.

use chorus_audio::StreamEncoder;
use chorus_proto::{AudioEvent, ErrorCode, OutputFormat};

use crate::error::ApiError;

/// Encodes one job's audio chunks in the requested format.
#[derive(Debug)]
pub(crate) struct ChunkEncoder {
    format: OutputFormat,
    /// Built on the first chunk (of the job, or of the flush period after [`ChunkEncoder::finish_period`]).
    encoder: Option<StreamEncoder>,
    /// The `seq` the next chunk must have.
    next_seq: u64,
    /// For the log lines.
    request_id: String,
}

impl ChunkEncoder {
    pub(crate) fn new(format: OutputFormat, request_id: impl Into<String>) -> Self {
        Self { format, encoder: None, next_seq: 0, request_id: request_id.into() }
    }

    /// Encodes one chunk (the result may be empty while the resampler or MP3 encoder holds samples back).
    pub(crate) async fn push(&mut self, audio: AudioEvent) -> Result<Vec<u8>, ApiError> {
        if audio.seq != self.next_seq {
            tracing::error!(
                request_id = self.request_id,
                got = audio.seq,
                expected = self.next_seq,
                "Audio chunk out of sequence."
            );
            return Err(ApiError::new(
                ErrorCode::WorkerLost,
                format!("audio chunk {} arrived where {} was expected", audio.seq, self.next_seq),
            ));
        }
        self.next_seq += 1;
        let format = self.format;
        let encoder = self.encoder.take();
        let (encoder, result) = self
            .run_blocking(move || {
                let mut encoder = match encoder {
                    Some(encoder) if encoder.resampler().input_rate() == audio.sample_rate => encoder,
                    Some(encoder) => {
                        let message = format!(
                            "the sample rate changed mid-stream ({} Hz, then {} Hz)",
                            encoder.resampler().input_rate(),
                            audio.sample_rate
                        );
                        return (Some(encoder), Err(message));
                    }
                    None => match StreamEncoder::new(audio.sample_rate, format) {
                        Ok(encoder) => encoder,
                        Err(e) => return (None, Err(e.to_string())),
                    },
                };
                let result = encoder.push(&audio.samples).map_err(|e| e.to_string());
                (Some(encoder), result)
            })
            .await?;
        self.encoder = encoder;
        result.map_err(|e| self.encoding_failed(&e))
    }

    /// Ends the job's audio: the bytes the encoder still holds. If no audio came, an encoder is built anyway (at
    /// the output rate: without audio the input rate does not matter), so that a WAV still gets its header.
    pub(crate) async fn finish(&mut self) -> Result<Vec<u8>, ApiError> {
        let format = self.format;
        let encoder = self.encoder.take();
        let result = self
            .run_blocking(move || {
                let mut encoder = match encoder {
                    Some(encoder) => encoder,
                    None => StreamEncoder::new(format.sample_rate, format).map_err(|e| e.to_string())?,
                };
                encoder.finish().map_err(|e| e.to_string())
            })
            .await?;
        result.map_err(|e| self.encoding_failed(&e))
    }

    /// Ends a flush period (or the job, on the WebSocket): the bytes the period's encoder still holds, none if it
    /// saw no audio. The next chunk starts a fresh encoder; the sequence carries on.
    pub(crate) async fn finish_period(&mut self) -> Result<Vec<u8>, ApiError> {
        let Some(mut encoder) = self.encoder.take() else { return Ok(Vec::new()) };
        let result = self.run_blocking(move || encoder.finish().map_err(|e| e.to_string())).await?;
        result.map_err(|e| self.encoding_failed(&e))
    }

    /// Runs CPU work (resampling, encoding) on the blocking pool.
    async fn run_blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        tokio::task::spawn_blocking(f).await.map_err(|e| {
            tracing::error!(request_id = self.request_id, error = %e, "The audio encoder task failed.");
            generic_error()
        })
    }

    /// Logs the cause (which may hold internal details) and returns a generic error for the client.
    fn encoding_failed(&self, cause: &str) -> ApiError {
        tracing::error!(request_id = self.request_id, error = cause, "Audio encoding failed.");
        generic_error()
    }
}

fn generic_error() -> ApiError {
    ApiError::new(ErrorCode::Internal, "audio encoding failed")
}

#[cfg(test)]
mod tests {
    use chorus_proto::{Container, Encoding};

    use super::*;

    const RAW: OutputFormat = OutputFormat {
        container: Container::Raw,
        encoding: Encoding::PcmS16le,
        sample_rate: 16_000,
        bit_rate: None,
    };

    fn chunk(seq: u64, sample_rate: u32) -> AudioEvent {
        AudioEvent { seq, sample_rate, samples: vec![0.25; 1600], step_time_ms: 1.0, flush_id: 1 }
    }

    #[tokio::test]
    async fn a_gap_in_the_sequence_is_an_error() {
        let mut encoder = ChunkEncoder::new(RAW, "req");
        encoder.push(chunk(0, 16_000)).await.unwrap();
        let e = encoder.push(chunk(2, 16_000)).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::WorkerLost);
        assert_eq!(e.message, "audio chunk 2 arrived where 1 was expected");
    }

    #[tokio::test]
    async fn a_rate_change_within_a_period_is_an_error_but_not_across_periods() {
        let mut encoder = ChunkEncoder::new(RAW, "req");
        assert_eq!(encoder.push(chunk(0, 16_000)).await.unwrap().len(), 1600 * 2);
        let e = encoder.push(chunk(1, 22_050)).await.unwrap_err();
        assert_eq!((e.code, e.message.as_str()), (ErrorCode::Internal, "audio encoding failed"));

        let mut encoder = ChunkEncoder::new(RAW, "req");
        encoder.push(chunk(0, 16_000)).await.unwrap();
        encoder.finish_period().await.unwrap();
        // A fresh encoder for the next period; the sequence carries on.
        encoder.push(chunk(1, 22_050)).await.unwrap();
        assert!(encoder.push(chunk(0, 22_050)).await.is_err());
    }

    #[tokio::test]
    async fn finish_without_audio_still_writes_a_wav_header_and_finish_period_writes_nothing() {
        let wav = OutputFormat::wav_s16(16_000);
        assert_eq!(ChunkEncoder::new(wav, "req").finish().await.unwrap().len(), 44);
        assert!(ChunkEncoder::new(wav, "req").finish_period().await.unwrap().is_empty());
    }
}
