//! One context's task: starts its job on the bus, then turns the job's events into frames.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use chorus_bus::{Bus, JobHandle};
use chorus_proto::{ContextInput, ErrorCode, JobEvent, OutputFormat, SynthesisJob};
use tokio::sync::mpsc;

use super::connection::{Activity, Internal, Outgoing};
use super::frames;
use crate::encode::ChunkEncoder;
use crate::error::ApiError;

/// Everything a context task needs; built by the connection when a context opens.
pub(crate) struct ContextTask {
    pub(crate) context_id: Arc<str>,
    /// Tells this context apart from an earlier one with the same id.
    pub(crate) generation: u64,
    pub(crate) job: SynthesisJob,
    pub(crate) format: OutputFormat,
    pub(crate) bus: Arc<dyn Bus>,
    pub(crate) out: mpsc::Sender<Outgoing>,
    pub(crate) internal: mpsc::Sender<Internal>,
    /// Set by the connection on cancel: the writer drops this context's frames still queued.
    pub(crate) muted: Arc<AtomicBool>,
    /// Accounts the context.
    pub(crate) meter: Option<Arc<crate::license::UsageMeter>>,
    /// Flushes answered before the job started (a context that had no text yet): the job counts its own from 1.
    pub(crate) flush_offset: u32,
    /// When the context last did something; shared with the connection's idle check.
    pub(crate) activity: Arc<Activity>,
    /// The context's admission (tenant key and license counts), released when the task ends.
    pub(crate) _admission: Option<Arc<crate::license::InFlight>>,
}

impl std::fmt::Debug for ContextTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContextTask")
            .field("context_id", &self.context_id)
            .field("generation", &self.generation)
            .field("request_id", &self.job.request_id)
            .finish_non_exhaustive()
    }
}

/// How the event loop ended.
enum End {
    /// `done` is due.
    Done,
    /// An `error` is due.
    Failed(ApiError),
    /// The socket's writer is gone: nothing can be sent.
    Gone,
}

impl ContextTask {
    /// Runs the context to its end. Aborting the task drops the job handle, which stops the worker.
    pub(crate) async fn run(self) {
        let handle = match self.bus.start(self.job.clone()).await {
            Ok(handle) => handle,
            Err(e) => {
                tracing::debug!(request_id = %self.job.request_id, %e, "WebSocket context refused by the bus.");
                self.finish(End::Failed(ApiError::from(e))).await;
                return;
            }
        };
        let JobHandle { inputs, events } = handle;
        let started = Internal::Started {
            context_id: Arc::clone(&self.context_id),
            generation: self.generation,
            inputs,
        };
        if self.internal.send(started).await.is_err() {
            return;
        }
        let end = self.forward(events).await;
        self.finish(end).await;
    }

    /// Sends one frame; false when the writer is gone. A context waiting for the writer is busy, not idle.
    async fn send(&self, text: String) -> bool {
        self.activity.set_busy(true);
        let frame = Outgoing::Frame { text, muted: Some(Arc::clone(&self.muted)), traffic: true };
        let sent = self.out.send(frame).await.is_ok();
        self.activity.set_busy(false);
        self.activity.touch();
        sent
    }

    /// Forwards the job's events until it ends.
    async fn forward(&self, mut events: mpsc::Receiver<JobEvent>) -> End {
        let id: &str = &self.context_id;
        // One encoder per flush period (see `drain`): built on the period's first chunk, whose rate it needs.
        let mut encoder = ChunkEncoder::new(self.format, &self.job.request_id);
        // The flush period of the audio in flight (counts from 1), and the step time of chunks that encoded to
        // nothing yet (resampler latency), carried to the next chunk sent.
        let offset = self.flush_offset;
        let mut flush_id = 1 + offset;
        let mut step_ms = 0.0;
        while let Some(event) = events.recv().await {
            self.activity.touch();
            let text = match event {
                JobEvent::Audio(audio) => {
                    if let Some(m) = &self.meter {
                        m.audio(audio.samples.len(), audio.sample_rate);
                    }
                    flush_id = audio.flush_id + offset;
                    step_ms += audio.step_time_ms;
                    match encoder.push(audio).await {
                        Ok(bytes) if bytes.is_empty() => continue,
                        Ok(bytes) => frames::chunk(id, &bytes, std::mem::take(&mut step_ms), flush_id),
                        Err(e) => return End::Failed(e),
                    }
                }
                JobEvent::Words { flush_id, words } => {
                    if !self.job.word_timestamps || words.is_empty() {
                        continue;
                    }
                    frames::word_timestamps(id, &words, flush_id + offset)
                }
                JobEvent::Phonemes { flush_id, phonemes } => {
                    if !self.job.phoneme_timestamps || phonemes.phonemes.is_empty() {
                        continue;
                    }
                    frames::phoneme_timestamps(id, &phonemes, flush_id + offset)
                }
                JobEvent::FlushDone { flush_id: done_id } => {
                    let done_id = done_id + offset;
                    // `flush_done` promises that the flushed audio is out: send what the resampler holds back.
                    // The next period starts a fresh encoder; a flush boundary is already a seam between two
                    // model runs, so this adds none.
                    match self.drain(&mut encoder, done_id, &mut step_ms).await {
                        Ok(true) => {}
                        Ok(false) => return End::Gone,
                        Err(e) => return End::Failed(e),
                    }
                    flush_id = done_id.saturating_add(1);
                    frames::flush_done(id, done_id)
                }
                JobEvent::Done => {
                    return match self.drain(&mut encoder, flush_id, &mut step_ms).await {
                        Ok(true) => End::Done,
                        Ok(false) => End::Gone,
                        Err(e) => End::Failed(e),
                    };
                }
                JobEvent::Error(e) => return End::Failed(ApiError::from(e)),
            };
            if !self.send(text).await {
                return End::Gone;
            }
        }
        End::Failed(ApiError::new(ErrorCode::WorkerLost, "the worker stopped before finishing this context"))
    }

    /// Finishes the period's encoder and sends its last bytes. Ok(false) when the writer is gone.
    async fn drain(
        &self,
        encoder: &mut ChunkEncoder,
        flush_id: u32,
        step_ms: &mut f64,
    ) -> Result<bool, ApiError> {
        let bytes = encoder.finish_period().await?;
        if bytes.is_empty() {
            return Ok(true);
        }
        Ok(self.send(frames::chunk(&self.context_id, &bytes, std::mem::take(step_ms), flush_id)).await)
    }

    /// Reports the end to the connection, then sends the terminal frame. In that order: a client may reuse the
    /// context id as soon as it reads `done`, and the connection must have forgotten the old context by then.
    async fn finish(self, end: End) {
        let ok = matches!(end, End::Done);
        if let Some(m) = &self.meter {
            m.finish(match &end {
                End::Done => "completed",
                End::Failed(e) => e.code.as_str(),
                End::Gone => crate::license::CLIENT_CLOSED,
            });
        }
        let text = match end {
            End::Done => frames::done(&self.context_id),
            End::Failed(e) => {
                let e = e.with_request_id(&self.job.request_id);
                tracing::debug!(request_id = %self.job.request_id, error = %e, "WebSocket context failed.");
                frames::error(&e, Some(&self.context_id))
            }
            End::Gone => String::new(),
        };
        let finished =
            Internal::Finished { context_id: Arc::clone(&self.context_id), generation: self.generation, ok };
        if self.internal.send(finished).await.is_err() || text.is_empty() {
            return;
        }
        // Muted like the rest: a context the connection cancelled or failed says nothing more.
        let frame = Outgoing::Frame { text, muted: Some(Arc::clone(&self.muted)), traffic: ok };
        let _ = self.out.send(frame).await;
    }
}

/// The inputs a later message on a context turns into, in order.
pub(crate) fn inputs_for(transcript: String, flush: bool, continue_: bool) -> Vec<ContextInput> {
    let mut inputs = Vec::with_capacity(3);
    if !transcript.is_empty() {
        inputs.push(ContextInput::Append { text: transcript });
    }
    if flush {
        inputs.push(ContextInput::Flush);
    }
    if !continue_ {
        inputs.push(ContextInput::End);
    }
    inputs
}
