//! The OpenAI-compatible endpoints: `POST /v1/audio/speech` and `GET /v1/models`.
//!
//! `/v1/audio/speech` takes OpenAI's body (`model`, `input`, `voice`, `response_format`, `speed`,
//! `stream_format`, `instructions`) and streams the audio:
//!
//! - `model`: any catalogue id or alias (`tts-1`, `tts-1-hd`, `gpt-4o-mini-tts`, `chorus-piper`...).
//! - `voice`: a Chorus voice id (`GET /voices`), or one of OpenAI's voice names ([`OPENAI_VOICES`]), which all map
//!   to the **default voice: the first built-in English voice in id order** (the first built-in voice when no
//!   voice speaks English). A string or `{"id": ...}`.
//! - `response_format`: `mp3` (default), `wav`, `pcm` (raw 16-bit little-endian mono), `opus` (Ogg Opus) or
//!   `flac`, all at 24 kHz as OpenAI documents. `aac` is refused with a 400 (no maintained encoder builds offline).
//! - `speed`: OpenAI's range is 0.25-4.0; Chorus speaks 0.5-2.0, and refuses the rest with a 400 that says so.
//! - `stream_format`: `audio` (default) streams the bytes; `sse` streams `speech.audio.delta` events (base64
//!   audio) and a final `speech.audio.done` (token usage is reported as 0: nothing is tokenized).
//! - `instructions`: accepted and ignored (the voices have no style control).
//!
//! Errors on these routes use OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, with the same
//! HTTP status as the Cartesia routes.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chorus_proto::ErrorCode;
use futures_util::stream;
use serde_json::{Value, json};

use crate::error::{ApiError, OpenAiError};
use crate::job_stream::{JobStream, Piece};
use crate::middleware::RequestId;
use crate::request::{ApiJson, GenerationConfig, OutputFormatSpec, TtsRequest, VoiceSpecifier};
use crate::routes::tts::{Started, audio_body, sse_headers, start};
use crate::sse::data_frame;
use crate::state::{AppState, Route};

/// OpenAI's voice names; each maps to the default voice.
pub const OPENAI_VOICES: [&str; 13] = [
    "alloy", "ash", "ballad", "cedar", "coral", "echo", "fable", "marin", "nova", "onyx", "sage", "shimmer",
    "verse",
];

/// The sample rate of every OpenAI response format.
const OPENAI_SAMPLE_RATE: u32 = 24_000;
/// The MP3 bit rate.
const OPENAI_MP3_BIT_RATE: u32 = 128_000;
/// OpenAI's accepted speed range.
const OPENAI_SPEED: (f64, f64) = (0.25, 4.0);

/// The body of `POST /v1/audio/speech`.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct SpeechRequest {
    pub model: String,
    pub input: String,
    pub voice: VoiceSpecifier,
    #[serde(default)]
    pub response_format: Option<String>,
    #[serde(default)]
    pub speed: Option<f64>,
    #[serde(default)]
    pub stream_format: Option<String>,
    /// Accepted and ignored.
    #[serde(default)]
    pub instructions: Option<String>,
}

/// `POST /v1/audio/speech`.
pub async fn speech(
    State(state): State<AppState>,
    request_id: RequestId,
    caller: crate::license::Caller,
    body: Result<ApiJson<SpeechRequest>, ApiError>,
) -> Result<Response, OpenAiError> {
    let ApiJson(req) = body?;
    let rid = request_id.as_str();
    let with_param =
        |param: &'static str| move |e: ApiError| OpenAiError::with_param(e.with_request_id(rid), param);

    let output_format =
        output_format(req.response_format.as_deref()).map_err(with_param("response_format"))?;
    let sse = match req.stream_format.as_deref() {
        None | Some("audio") => false,
        Some("sse") => true,
        Some(other) => {
            let e = ApiError::invalid(format!(
                "stream_format must be 'audio' or 'sse', got '{}'",
                crate::error::echo(other)
            ));
            return Err(with_param("stream_format")(e));
        }
    };
    let speed = req.speed.map(check_speed).transpose().map_err(with_param("speed"))?;
    let voice = resolve_voice(&state, &req.voice).map_err(with_param("voice"))?;
    if req.instructions.as_deref().is_some_and(|i| !i.is_empty()) {
        tracing::debug!("OpenAI 'instructions' ignored: the voices have no style control.");
    }

    let tts = TtsRequest {
        model_id: req.model,
        transcript: req.input,
        voice: VoiceSpecifier::Id(voice),
        output_format,
        generation_config: Some(GenerationConfig { speed, volume: None, emotion: None }),
        language: None,
        locale: None,
        normalization: None,
        pronunciation_dict_id: None,
        speed: None,
        save: None,
        add_timestamps: None,
        add_phoneme_timestamps: None,
        use_normalized_timestamps: None,
        context_id: None,
        continue_: None,
        flush: None,
        max_buffer_delay_ms: None,
    };
    let Started { stream, format, .. } =
        start(&state, &caller, &tts, rid, Route::Bytes, "openai_speech").await?;
    if sse {
        let mut response = Response::new(sse_body(stream, request_id));
        sse_headers(&mut response);
        return Ok(response);
    }
    let mut response = Response::new(audio_body(stream, request_id));
    if let Ok(content_type) = content_type(&format).parse() {
        response.headers_mut().insert(axum::http::header::CONTENT_TYPE, content_type);
    }
    Ok(response)
}

/// OpenAI's content types (`audio/pcm` for raw samples).
fn content_type(format: &chorus_proto::OutputFormat) -> &'static str {
    match format.container {
        chorus_proto::Container::Raw => "audio/pcm",
        chorus_proto::Container::Wav
        | chorus_proto::Container::Mp3
        | chorus_proto::Container::Opus
        | chorus_proto::Container::Flac => chorus_audio::content_type(format),
    }
}

/// `response_format` -> our output format.
fn output_format(response_format: Option<&str>) -> Result<OutputFormatSpec, ApiError> {
    let spec = |container: &str, encoding: Option<&str>, bit_rate: Option<u32>| OutputFormatSpec {
        container: container.to_owned(),
        encoding: encoding.map(str::to_owned),
        sample_rate: OPENAI_SAMPLE_RATE,
        bit_rate,
    };
    match response_format.unwrap_or("mp3") {
        "mp3" => Ok(spec("mp3", None, Some(OPENAI_MP3_BIT_RATE))),
        "wav" => Ok(spec("wav", Some("pcm_s16le"), None)),
        "pcm" => Ok(spec("raw", Some("pcm_s16le"), None)),
        "opus" => Ok(spec("opus", None, None)),
        "flac" => Ok(spec("flac", None, None)),
        "aac" => Err(ApiError::invalid(
            "response_format 'aac' is not supported by this server (no maintained AAC encoder builds offline); \
             use mp3, opus, flac, wav or pcm",
        )),
        other => Err(ApiError::invalid(format!(
            "unknown response_format '{other}' (expected mp3, opus, aac, flac, wav or pcm)"
        ))),
    }
}

/// OpenAI allows 0.25-4.0; Chorus speaks 0.5-2.0.
fn check_speed(speed: f64) -> Result<f32, ApiError> {
    let (lo, hi) = chorus_proto::SPEED_RANGE;
    if !speed.is_finite() || speed < OPENAI_SPEED.0 || speed > OPENAI_SPEED.1 {
        return Err(ApiError::invalid(format!("speed must be between 0.25 and 4.0, got {speed}")));
    }
    if speed < f64::from(lo) || speed > f64::from(hi) {
        return Err(ApiError::invalid(format!("this server supports speed from {lo} to {hi}, got {speed}")));
    }
    Ok(speed as f32)
}

/// A voice id of ours, or an OpenAI voice name (-> the first built-in voice).
fn resolve_voice(state: &AppState, voice: &VoiceSpecifier) -> Result<String, ApiError> {
    let id = voice.id()?;
    if state.voices.get(id).is_some() {
        return Ok(id.to_owned());
    }
    if OPENAI_VOICES.iter().any(|v| v.eq_ignore_ascii_case(id)) {
        return default_voice(state).ok_or_else(|| {
            ApiError::new(ErrorCode::Unserviceable, "no voice is loaded: no worker serves any model voice")
        });
    }
    Err(ApiError::new(
        ErrorCode::VoiceNotFound,
        format!(
            "voice '{}' does not exist; use an id from GET /voices or an OpenAI voice name such as 'alloy'",
            crate::error::echo(id)
        ),
    ))
}

/// The voice OpenAI's voice names map to: the first built-in English voice in id order, else the first built-in
/// voice.
fn default_voice(state: &AppState) -> Option<String> {
    let builtin: Vec<_> = state.voices.list().into_iter().filter(|v| v.builtin).collect();
    builtin.iter().find(|v| v.language == "en").or(builtin.first()).map(|v| v.id.clone())
}

/// OpenAI's speech event stream: `speech.audio.delta` events, then `speech.audio.done`.
fn sse_body(job: JobStream, request_id: RequestId) -> Body {
    let delta =
        |audio: &[u8]| data_frame(&json!({"type": "speech.audio.delta", "audio": BASE64.encode(audio)}));
    Body::from_stream(stream::unfold(Some((job, request_id)), move |state| async move {
        let (mut job, request_id) = state?;
        loop {
            let frame = match job.next().await? {
                Ok(Piece::Audio { bytes, .. }) if bytes.is_empty() => continue,
                Ok(Piece::Audio { bytes, .. }) => delta(&bytes),
                Ok(Piece::Words(_) | Piece::Phonemes(_)) => continue,
                Ok(Piece::Done { tail }) => {
                    let mut frames = if tail.is_empty() { String::new() } else { delta(&tail) };
                    let usage = json!({"input_tokens": 0, "output_tokens": 0, "total_tokens": 0});
                    frames.push_str(&data_frame(&json!({"type": "speech.audio.done", "usage": usage})));
                    return Some((Ok::<_, std::io::Error>(frames), None));
                }
                Err(e) => {
                    tracing::warn!(request_id = request_id.as_str(), error = %e, "Synthesis failed mid-stream.");
                    let error = e.with_request_id(request_id.as_str());
                    let body = json!({"type": "error", "error": {
                        "message": error.public_message(), "type": "server_error", "param": null,
                        "code": error.code.as_str(),
                    }});
                    return Some((Ok(data_frame(&body)), None));
                }
            };
            return Some((Ok(frame), Some((job, request_id))));
        }
    }))
}

/// `GET /v1/models`: every catalogue model and alias, as OpenAI model objects.
pub async fn models(State(state): State<AppState>) -> Json<Value> {
    let data: Vec<Value> = state
        .config
        .catalogue
        .models
        .iter()
        .flat_map(|m| std::iter::once(&m.id).chain(&m.aliases))
        .map(|id| json!({"id": id, "object": "model", "created": 0, "owned_by": "chorus"}))
        .collect();
    Json(json!({"object": "list", "data": data}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speeds() {
        assert_eq!(check_speed(1.0).unwrap(), 1.0);
        assert_eq!(check_speed(2.0).unwrap(), 2.0);
        assert!(check_speed(0.25).unwrap_err().message.contains("0.5"));
        assert!(check_speed(4.5).unwrap_err().message.contains("0.25"));
        assert!(check_speed(f64::NAN).is_err());
    }

    #[test]
    fn formats() {
        assert_eq!(output_format(None).unwrap().container, "mp3");
        assert_eq!(output_format(Some("pcm")).unwrap().container, "raw");
        assert!(output_format(Some("aac")).unwrap_err().message.contains("not supported"));
        assert_eq!(output_format(Some("opus")).unwrap().container, "opus");
        assert_eq!(output_format(Some("flac")).unwrap().container, "flac");
        assert!(output_format(Some("ogg")).is_err());
    }
}
