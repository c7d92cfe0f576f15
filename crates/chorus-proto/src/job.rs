//! What travels between an API server and a worker: a job, the inputs that follow it, the events it produces.

use crate::{PhonemeTimestamps, SynthesisParams, WordTimestamps};

/// Bus protocol version. A worker refuses jobs of another major version.
pub const PROTOCOL_VERSION: u32 = 1;

/// One entry of a pronunciation dictionary (Cartesia `Item`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PronunciationItem {
    /// The text to match (whole words).
    pub text: String,
    /// Replacement text, or IPA phonemes between slashes (`/təmˈɑːtoʊ/`).
    pub alias: String,
    /// Match the exact capitalisation only.
    #[serde(default)]
    pub case_sensitive: bool,
}

/// A synthesis job: one HTTP request, or one WebSocket context.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SynthesisJob {
    /// Carried on every hop and in every log line.
    pub request_id: String,
    /// The engine voice (worker model) that speaks, e.g. `en_US-joe-medium`.
    pub model: String,
    /// Text to speak now (may be empty when `continuation` is set).
    pub transcript: String,
    /// More text may follow as [`ContextInput::Append`]; the job ends after [`ContextInput::End`].
    pub continuation: bool,
    pub params: SynthesisParams,
    /// Expand numbers, dates... before phonemization.
    pub normalize: bool,
    /// Resolved pronunciation dictionary entries, applied before phonemization.
    #[serde(default)]
    pub pronunciations: Vec<PronunciationItem>,
    pub word_timestamps: bool,
    pub phoneme_timestamps: bool,
    /// Word timestamps name the normalized words ("twelve dollars") instead of the tokens as written ("$12").
    #[serde(default)]
    pub normalized_timestamps: bool,
    /// For continuations: how long text may wait for more context before it is spoken anyway.
    pub max_buffer_delay_ms: u32,
    pub protocol_version: u32,
}

impl SynthesisJob {
    /// A one-shot job for `transcript` with default settings.
    pub fn new(
        request_id: impl Into<String>,
        model: impl Into<String>,
        transcript: impl Into<String>,
    ) -> Self {
        Self {
            request_id: request_id.into(),
            model: model.into(),
            transcript: transcript.into(),
            continuation: false,
            params: SynthesisParams::default(),
            normalize: true,
            pronunciations: Vec::new(),
            word_timestamps: false,
            phoneme_timestamps: false,
            normalized_timestamps: false,
            max_buffer_delay_ms: 3000,
            protocol_version: PROTOCOL_VERSION,
        }
    }
}

/// Input to a running job (WebSocket continuations).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ContextInput {
    /// More text, appended verbatim.
    Append { text: String },
    /// Speak everything buffered now, then report [`JobEvent::FlushDone`].
    Flush,
    /// No more input: speak what is buffered, then [`JobEvent::Done`].
    End,
    /// Stop at once; nothing more is sent, not even `Done`.
    Cancel,
}

/// Machine-readable error codes (the Cartesia `error_code` values where one exists).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidRequest,
    ModelNotFound,
    VoiceNotFound,
    TextTooLong,
    EmptyTranscript,
    Unauthorized,
    NotFound,
    ConcurrencyLimited,
    /// A tenant key's requests-per-minute limit was reached (429).
    RateLimited,
    /// The deployment's entitlement lapsed past its grace period: new requests are refused (403).
    LicenseInactive,
    Unserviceable,
    WorkerLost,
    InferenceFailed,
    Internal,
    /// A write lost a race: the document changed since it was read (409).
    Conflict,
    /// Something did not arrive in time: a request body, or text for an idle WebSocket context (408).
    Timeout,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::ModelNotFound => "model_not_found",
            ErrorCode::VoiceNotFound => "voice_not_found",
            ErrorCode::TextTooLong => "text_too_long",
            ErrorCode::EmptyTranscript => "empty_transcript",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::NotFound => "not_found",
            ErrorCode::ConcurrencyLimited => "concurrency_limited",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::LicenseInactive => "license_inactive",
            ErrorCode::Unserviceable => "unserviceable",
            ErrorCode::WorkerLost => "worker_lost",
            ErrorCode::InferenceFailed => "inference_failed",
            ErrorCode::Internal => "internal_error",
            ErrorCode::Conflict => "conflict",
            ErrorCode::Timeout => "timeout",
        }
    }

    /// The HTTP status this error maps to.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::InvalidRequest
            | ErrorCode::ModelNotFound
            | ErrorCode::TextTooLong
            | ErrorCode::EmptyTranscript => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::VoiceNotFound | ErrorCode::NotFound => 404,
            ErrorCode::Conflict => 409,
            ErrorCode::Timeout => 408,
            ErrorCode::ConcurrencyLimited | ErrorCode::RateLimited => 429,
            ErrorCode::LicenseInactive => 403,
            ErrorCode::Unserviceable => 503,
            ErrorCode::WorkerLost | ErrorCode::InferenceFailed | ErrorCode::Internal => 500,
        }
    }
}

/// An error reported by a worker for a job.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JobError {
    pub code: ErrorCode,
    pub message: String,
}

/// A chunk of audio: mono `f32` samples at the model's rate.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AudioEvent {
    /// 0, 1, 2... per job: a gap is an error, never silence.
    pub seq: u64,
    pub sample_rate: u32,
    pub samples: Vec<f32>,
    /// Milliseconds of server time this chunk took (Cartesia `step_time`).
    pub step_time_ms: f64,
    /// The flush period this audio belongs to (counts from 1).
    pub flush_id: u32,
}

/// What a job produces, in order.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum JobEvent {
    Audio(AudioEvent),
    /// Word timestamps for the audio sent so far (seconds from the start of the job's audio).
    Words {
        flush_id: u32,
        words: WordTimestamps,
    },
    /// Phoneme timestamps for the audio sent so far.
    Phonemes {
        flush_id: u32,
        phonemes: PhonemeTimestamps,
    },
    /// Everything before flush `flush_id` has been sent.
    FlushDone {
        flush_id: u32,
    },
    /// The job is complete.
    Done,
    /// The job failed; nothing follows.
    Error(JobError),
}
