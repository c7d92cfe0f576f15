//! A job on the bus, read as a stream of encoded audio and timestamps: the part the HTTP streaming routes share.
//!
//! [`JobStream::start`] starts the job and waits for its first event, so that an error the worker finds before any
//! audio (or a bus refusal) is still a plain HTTP error. After that, [`JobStream::next`] yields [`Piece`]s until
//! `Done` or an error. The audio is encoded by a [`ChunkEncoder`], on Tokio's blocking pool.
//!
//! Dropping a `JobStream` drops its [`JobHandle`], which cancels the job: that is how a client that hangs up stops
//! the worker.

use chorus_bus::JobHandle;
use chorus_proto::{ErrorCode, JobEvent, OutputFormat, PhonemeTimestamps, SynthesisJob, WordTimestamps};

use crate::encode::ChunkEncoder;
use crate::error::ApiError;
use crate::license::UsageMeter;
use crate::state::AppState;

/// One step of a job's output.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Piece {
    /// Encoded audio in the requested format (may be empty while the resampler or MP3 encoder holds samples back).
    Audio { bytes: Vec<u8>, step_time_ms: f64 },
    /// Word timestamps of the audio sent so far, in seconds from the start of the job's audio.
    Words(WordTimestamps),
    /// Phoneme timestamps of the audio sent so far.
    Phonemes(PhonemeTimestamps),
    /// The job is complete; `tail` holds the last encoded bytes (the encoder's flush; may be empty).
    Done { tail: Vec<u8> },
}

/// A running job and the encoder of its audio.
#[derive(Debug)]
pub(crate) struct JobStream {
    handle: JobHandle,
    encoder: ChunkEncoder,
    request_id: String,
    /// The first event, read by [`JobStream::start`].
    pending: Option<JobEvent>,
    finished: bool,
    /// Accounts the request; dropped unfinished (client gone), it reports `cancelled`.
    meter: Option<UsageMeter>,
}

impl JobStream {
    /// Starts `job` and waits for its first event. A bus refusal, a worker error before any output, or a worker
    /// that vanishes at once are returned as errors (for a plain HTTP error response).
    pub(crate) async fn start(
        state: &AppState,
        job: SynthesisJob,
        format: OutputFormat,
        meter: Option<UsageMeter>,
    ) -> Result<Self, ApiError> {
        let request_id = job.request_id.clone();
        let failed = |e: ApiError| {
            if let Some(m) = &meter {
                m.finish(e.code.as_str());
            }
            e.with_request_id(&request_id)
        };
        let mut handle = match state.bus.start(job).await {
            Ok(handle) => handle,
            Err(e) => {
                tracing::info!(kind = e.kind(), error = %e, "The bus did not start the job.");
                return Err(failed(ApiError::from(e)));
            }
        };
        let first = match handle.events.recv().await {
            Some(JobEvent::Error(e)) => return Err(failed(ApiError::from(e))),
            None => return Err(failed(worker_lost())),
            Some(
                event @ (JobEvent::Audio(_)
                | JobEvent::Words { .. }
                | JobEvent::Phonemes { .. }
                | JobEvent::FlushDone { .. }
                | JobEvent::Done),
            ) => event,
        };
        Ok(Self {
            handle,
            encoder: ChunkEncoder::new(format, &request_id),
            request_id,
            pending: Some(first),
            finished: false,
            meter,
        })
    }

    /// The next piece of output; `None` after `Done` or an error.
    pub(crate) async fn next(&mut self) -> Option<Result<Piece, ApiError>> {
        if self.finished {
            return None;
        }
        loop {
            let event = match self.pending.take() {
                Some(event) => Some(event),
                None => self.handle.events.recv().await,
            };
            let result = match event {
                None => Err(worker_lost()),
                Some(JobEvent::Audio(audio)) => {
                    if let Some(m) = &self.meter {
                        m.audio(audio.samples.len(), audio.sample_rate);
                    }
                    let step_time_ms = audio.step_time_ms;
                    self.encoder.push(audio).await.map(|bytes| Piece::Audio { bytes, step_time_ms })
                }
                Some(JobEvent::Words { words, .. }) => Ok(Piece::Words(words)),
                Some(JobEvent::Phonemes { phonemes, .. }) => Ok(Piece::Phonemes(phonemes)),
                // HTTP requests have no flushes: nothing to tell the client.
                Some(JobEvent::FlushDone { .. }) => continue,
                Some(JobEvent::Done) => self.encoder.finish().await.map(|tail| Piece::Done { tail }),
                Some(JobEvent::Error(e)) => Err(ApiError::from(e)),
            };
            if matches!(result, Ok(Piece::Done { .. }) | Err(_)) {
                self.finished = true;
                if let Some(m) = &self.meter {
                    m.finish(result.as_ref().map_or_else(|e| e.code.as_str(), |_| "completed"));
                }
            }
            return Some(result.map_err(|e| e.with_request_id(&self.request_id)));
        }
    }
}

fn worker_lost() -> ApiError {
    ApiError::new(ErrorCode::WorkerLost, "the worker stopped before finishing the job")
}
