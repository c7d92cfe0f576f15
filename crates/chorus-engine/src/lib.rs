//! The synthesis engine: the [`Model`] trait, the Piper/VITS backend on ONNX Runtime, model threads, and
//! streaming synthesis with word and phoneme timestamps.
//!
//! ```text
//! SynthesisRequest -> Frontend (chunks of phoneme ids) -> ModelPool (model threads) -> AudioChunk + timestamps
//! ```

mod bucketed;
pub mod buckets;
mod engine;
mod error;
mod model;
mod piper;
mod pool;
mod runtime;
pub mod scheduler;

pub use bucketed::BucketedPiper;
pub use buckets::ShapeBuckets;
pub use engine::{AudioChunk, Engine, EngineConfig, Playback, SpeedCurve, Synthesis, SynthesisRequest};
pub use error::EngineError;
pub use model::{Interrupt, Model, ModelOutput, Scales};
pub use piper::{PIPER_HOP_LENGTH, PiperModel, PiperVoice, SplitGraph};
pub use pool::{CostModel, ModelPool, Throughput};
pub use runtime::{ConvSearch, Device, discover_library, environment};
