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

/// Everything a transport needs to send an [`ErrorCode`]: one row of the error table ([`ErrorCode::row`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorRow {
    /// The wire name (`error_code` in the Cartesia error JSON, `code` in OpenAI's).
    pub name: &'static str,
    /// The HTTP status.
    pub status: u16,
    /// The human title (`title` in the Cartesia error JSON).
    pub title: &'static str,
    /// Seconds a client should wait before retrying (the `Retry-After` header), where waiting helps.
    pub retry_after: Option<u32>,
    /// The request field an OpenAI client is told is at fault (`param`), when the code names one.
    pub openai_param: Option<&'static str>,
}

impl ErrorRow {
    const fn new(name: &'static str, status: u16, title: &'static str) -> Self {
        Self { name, status, title, retry_after: None, openai_param: None }
    }

    const fn retry_after(self, seconds: u32) -> Self {
        Self { retry_after: Some(seconds), ..self }
    }

    const fn openai_param(self, param: &'static str) -> Self {
        Self { openai_param: Some(param), ..self }
    }
}

impl ErrorCode {
    /// The error table: one row a code, in one exhaustive match (the API, its OpenAI routes and the license
    /// proxy all send errors from it).
    pub const fn row(self) -> ErrorRow {
        match self {
            ErrorCode::InvalidRequest => ErrorRow::new("invalid_request", 400, "Invalid request"),
            ErrorCode::ModelNotFound => {
                ErrorRow::new("model_not_found", 400, "Model not found").openai_param("model")
            }
            ErrorCode::VoiceNotFound => {
                ErrorRow::new("voice_not_found", 404, "Voice not found").openai_param("voice")
            }
            ErrorCode::TextTooLong => {
                ErrorRow::new("text_too_long", 400, "Transcript too long").openai_param("input")
            }
            ErrorCode::EmptyTranscript => {
                ErrorRow::new("empty_transcript", 400, "Empty transcript").openai_param("input")
            }
            ErrorCode::Unauthorized => ErrorRow::new("unauthorized", 401, "Unauthorized"),
            ErrorCode::NotFound => ErrorRow::new("not_found", 404, "Not found"),
            ErrorCode::ConcurrencyLimited => {
                ErrorRow::new("concurrency_limited", 429, "Too many concurrent requests").retry_after(1)
            }
            ErrorCode::RateLimited => {
                ErrorRow::new("rate_limited", 429, "Rate limit exceeded").retry_after(1)
            }
            ErrorCode::LicenseInactive => ErrorRow::new("license_inactive", 403, "License inactive"),
            ErrorCode::Unserviceable => {
                ErrorRow::new("unserviceable", 503, "No worker available").retry_after(1)
            }
            ErrorCode::WorkerLost => ErrorRow::new("worker_lost", 500, "Worker lost"),
            ErrorCode::InferenceFailed => ErrorRow::new("inference_failed", 500, "Synthesis failed"),
            ErrorCode::Internal => ErrorRow::new("internal_error", 500, "Internal error"),
            ErrorCode::Conflict => ErrorRow::new("conflict", 409, "Conflict"),
            ErrorCode::Timeout => ErrorRow::new("timeout", 408, "Timeout"),
        }
    }

    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        self.row().name
    }

    /// The HTTP status this error maps to.
    pub const fn http_status(self) -> u16 {
        self.row().status
    }

    /// The human title.
    pub const fn title(self) -> &'static str {
        self.row().title
    }
}

/// The message of every 500 (a failure inside the server): the internal text stays in the server's log, under the
/// request id the client is given to quote.
pub fn internal_error_message(request_id: &str) -> String {
    if request_id.is_empty() {
        "the server could not complete the request; its log has the details".to_owned()
    } else {
        format!(
            "the server could not complete the request; its log has the details under request id '{request_id}'"
        )
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
