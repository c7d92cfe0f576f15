use chorus_proto::FormatError;
use chorus_text::TextError;

/// Errors of the synthesis engine.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Text(#[from] TextError),
    #[error("unknown voice '{0}'")]
    UnknownVoice(String),
    #[error("invalid parameter: {0}")]
    InvalidParams(#[from] FormatError),
    #[error("cannot load ONNX Runtime: {0}")]
    Runtime(String),
    #[error("cannot load voice '{voice}': {message}")]
    VoiceLoad { voice: String, message: String },
    #[error("inference failed: {0}")]
    Inference(String),
    #[error("the engine is shutting down")]
    Shutdown,
    #[error("the request was cancelled")]
    Cancelled,
}

impl EngineError {
    /// A stable, low-cardinality name for metrics and error JSON.
    pub fn kind(&self) -> &'static str {
        match self {
            EngineError::Text(e) => e.kind(),
            EngineError::UnknownVoice(_) => "voice_not_found",
            EngineError::InvalidParams(_) => "invalid_parameter",
            EngineError::Runtime(_) => "runtime_unavailable",
            EngineError::VoiceLoad { .. } => "voice_load_failed",
            EngineError::Inference(_) => "inference_failed",
            EngineError::Shutdown => "shutting_down",
            EngineError::Cancelled => "cancelled",
        }
    }

    /// True when the request is at fault (a 4xx), false for a server-side failure.
    pub fn is_client_error(&self) -> bool {
        match self {
            EngineError::Text(e) => e.is_client_error(),
            EngineError::UnknownVoice(_) | EngineError::InvalidParams(_) | EngineError::Cancelled => true,
            EngineError::Runtime(_)
            | EngineError::VoiceLoad { .. }
            | EngineError::Inference(_)
            | EngineError::Shutdown => false,
        }
    }
}
