//! The model interface every backend implements. Synchronous: models run on their own threads.

use crate::EngineError;

/// VITS inference controls.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scales {
    /// Prosody noise (Piper's `noise_scale`).
    pub noise_scale: f32,
    /// Duration multiplier: greater is slower (Piper's `length_scale`).
    pub length_scale: f32,
    /// Duration noise (Piper's `noise_w`).
    pub noise_w: f32,
}

/// The result of one forward pass.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelOutput {
    /// Mono samples at [`Model::sample_rate`].
    pub audio: Vec<f32>,
    /// Frames per input id (one frame is [`Model::hop_length`] samples).
    pub durations: Vec<f32>,
}

/// A text-to-speech acoustic model plus vocoder: phoneme ids in, audio and per-id durations out.
pub trait Model: Send {
    fn sample_rate(&self) -> u32;
    /// Samples per duration frame.
    fn hop_length(&self) -> usize;
    /// Synthesizes one utterance.
    fn infer(&mut self, ids: &[i64], scales: Scales) -> Result<ModelOutput, EngineError>;
    /// Synthesizes several utterances that share `scales`, one output per item in order. A backend that can run
    /// them as one batched forward pass (a GPU) overrides this; the default runs them one after another.
    fn infer_batch(&mut self, items: &[&[i64]], scales: Scales) -> Result<Vec<ModelOutput>, EngineError> {
        items.iter().map(|ids| self.infer(ids, scales)).collect()
    }
    /// Runs every input shape the model keeps a session for once, so that no request pays a first-of-its-shape
    /// cost (see [`crate::buckets`]); `ids` and `scales` are an ordinary utterance's. Returns how many shapes ran;
    /// the default (a model without fixed shapes) runs none.
    fn warm_shapes(&mut self, ids: &[i64], scales: Scales) -> Result<usize, EngineError> {
        let _ = (ids, scales);
        Ok(0)
    }
    /// A handle that stops this model's forward pass in progress from another thread, if the backend can
    /// (the scheduler preempts work that is not due for an urgent chunk; see [`crate::scheduler`]).
    fn interrupter(&self) -> Option<std::sync::Arc<dyn Interrupt>> {
        None
    }
}

/// Stops a model's forward pass in progress (it then returns an error) until [`Interrupt::reset`].
pub trait Interrupt: Send + Sync {
    /// Asks the pass in progress, if any, to stop; later passes stop too until [`Interrupt::reset`].
    fn interrupt(&self);
    /// Whether [`Interrupt::interrupt`] was called since the last reset.
    fn interrupted(&self) -> bool;
    /// Lets passes run again.
    fn reset(&self);
}
