//! Chorus wire types, shared by every crate: output formats, synthesis parameters and timestamps.
//!
//! serde only: no async runtime, no HTTP, no model runtime. Field names follow the Cartesia API where one exists,
//! so that the API server can pass these types through without renaming.

mod format;
mod job;
pub mod license;
pub mod metrics;
pub mod secret;
mod timestamps;
pub mod token;

pub use format::{Container, Encoding, FormatError, MP3_BIT_RATES, OutputFormat, SUPPORTED_SAMPLE_RATES};
pub use job::{
    AudioEvent, ContextInput, ErrorCode, ErrorRow, JobError, JobEvent, PROTOCOL_VERSION, PronunciationItem,
    SynthesisJob, internal_error_message,
};
pub use timestamps::{PhonemeTimestamps, WordTimestamps};

/// Synthesis controls that a request may set. Values outside the documented ranges are rejected by
/// [`SynthesisParams::validate`], never silently clamped.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SynthesisParams {
    /// Speaking rate: 1.0 is the voice's natural rate, 1.5 is 50% faster (Cartesia `generation_config.speed`).
    pub speed: f32,
    /// Linear gain applied to the audio (Cartesia `generation_config.volume`).
    pub volume: f32,
    /// VITS noise scale (prosody variation); `None` takes the voice's default.
    pub noise_scale: Option<f32>,
    /// VITS duration noise; `None` takes the voice's default.
    pub noise_w: Option<f32>,
}

impl Default for SynthesisParams {
    fn default() -> Self {
        Self { speed: 1.0, volume: 1.0, noise_scale: None, noise_w: None }
    }
}

/// Accepted range of [`SynthesisParams::speed`] (Cartesia documents 0.6-1.5).
pub const SPEED_RANGE: (f32, f32) = (0.5, 2.0);
/// Accepted range of [`SynthesisParams::volume`] (Cartesia documents 0.5-2.0).
pub const VOLUME_RANGE: (f32, f32) = (0.0, 4.0);

impl SynthesisParams {
    /// Checks every field against its documented range.
    pub fn validate(&self) -> Result<(), FormatError> {
        const NOISE_RANGE: (f32, f32) = (0.0, 2.0);
        let checked = [
            ("speed", Some(self.speed), SPEED_RANGE),
            ("volume", Some(self.volume), VOLUME_RANGE),
            ("noise_scale", self.noise_scale, NOISE_RANGE),
            ("noise_w", self.noise_w, NOISE_RANGE),
        ];
        for (field, value, (min, max)) in checked {
            if let Some(v) = value
                && !(v.is_finite() && v >= min && v <= max)
            {
                let (value, min, max) = (f64::from(v), f64::from(min), f64::from(max));
                return Err(FormatError::OutOfRange { field, value, min, max });
            }
        }
        Ok(())
    }
}
