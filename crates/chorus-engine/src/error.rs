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
