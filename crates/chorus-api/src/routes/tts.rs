//! `POST /tts/bytes` and `POST /tts/sse` (spec 2.4.2, 2.4.3).
//!
//! Both validate everything ([`AppState::prepare`]) and wait for the job's first event before answering, so every
//! error found before audio is a plain HTTP error. After that:
//!
//! - `/tts/bytes` streams the encoded audio as a chunked body. An error after the first byte aborts the body (the
//!   client sees a failed transfer, never truncated audio passed off as complete).
//! - `/tts/sse` streams `chunk`, `timestamps` and `phoneme_timestamps` events and ends the response right after
//!   `done` or `error`.
//!
//! A client that hangs up drops the body stream, which drops the job handle: the worker stops.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use chorus_proto::OutputFormat;
use futures_util::stream;

use crate::error::ApiError;
use crate::job_stream::{JobStream, Piece};
use crate::license::Caller;
use crate::middleware::RequestId;
use crate::request::{ApiJson, TtsRequest};
use crate::sse::{self, TtsEvents};
use crate::state::{AppState, Prepared, Route};

/// The header `/tts/bytes` sets when the request has `save: true`.
pub const FILE_ID_HEADER: &str = "cartesia-file-id";

/// `POST /tts/bytes`: the audio, streamed in the requested container.
///
/// `save: true` is answered with a `Cartesia-File-ID` header holding a fresh UUID, so that clients that read it do
/// not fail; Chorus does not store the audio, and there is no endpoint to fetch it by that id.
pub async fn bytes(
    State(state): State<AppState>,
    request_id: RequestId,
    caller: Caller,
    ApiJson(req): ApiJson<TtsRequest>,
) -> Result<Response, ApiError> {
    let Started { stream, format, .. } =
        start(&state, &caller, &req, request_id.as_str(), Route::Bytes, "bytes").await?;
    let mut response = Response::new(audio_body(stream, request_id));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(chorus_audio::content_type(&format)));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if req.save == Some(true)
        && let Ok(id) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string())
    {
        headers.insert(FILE_ID_HEADER, id);
    }
    Ok(response)
}

/// A body of the job's encoded audio. An error ends the body with an error, which aborts the transfer.
pub(crate) fn audio_body(job: JobStream, request_id: RequestId) -> Body {
    Body::from_stream(stream::unfold(Some((job, request_id)), |state| async move {
        let (mut job, request_id) = state?;
        loop {
            match job.next().await? {
                Ok(Piece::Audio { bytes, .. }) if bytes.is_empty() => {}
                Ok(Piece::Audio { bytes, .. }) => {
                    return Some((Ok(Bytes::from(bytes)), Some((job, request_id))));
                }
                Ok(Piece::Words(_) | Piece::Phonemes(_)) => {}
                Ok(Piece::Done { tail }) => {
                    tracing::debug!(request_id = request_id.as_str(), "Synthesis done.");
                    return (!tail.is_empty()).then(|| (Ok(Bytes::from(tail)), None));
                }
                Err(e) => {
                    tracing::warn!(request_id = request_id.as_str(), error = %e, "Synthesis failed mid-stream; aborting the body.");
                    return Some((Err(std::io::Error::other(e.to_string())), None));
                }
            }
        }
    }))
}

/// `POST /tts/sse`: raw audio as base64 `chunk` events, optional timestamps, then `done`.
pub async fn sse(
    State(state): State<AppState>,
    request_id: RequestId,
    caller: Caller,
    ApiJson(req): ApiJson<TtsRequest>,
) -> Result<Response, ApiError> {
    let Started { stream, wants, .. } =
        start(&state, &caller, &req, request_id.as_str(), Route::Sse, "sse").await?;
    let mut response = Response::new(sse_body(stream, req.context_id, wants, request_id));
    sse_headers(&mut response);
    Ok(response)
}

/// Sets the headers of an event stream (and asks proxies not to buffer it).
pub(crate) fn sse_headers(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(sse::CONTENT_TYPE));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
}

/// A job started for an HTTP route: its stream, its output format and the timestamps asked for.
pub(crate) struct Started {
    pub stream: JobStream,
    pub format: OutputFormat,
    wants: Wants,
}

/// Validates a request ([`AppState::prepare`]), logs and meters it (as `endpoint`), and starts its job.
pub(crate) async fn start(
    state: &AppState,
    caller: &Caller,
    req: &TtsRequest,
    request_id: &str,
    route: Route,
    endpoint: &'static str,
) -> Result<Started, ApiError> {
    let Prepared { job, format } = state.prepare(req, request_id, route)?;
    tracing::info!(model = %job.model, chars = job.transcript.chars().count(), endpoint, "Synthesis requested.");
    let wants = Wants { words: job.word_timestamps, phonemes: job.phoneme_timestamps };
    let meter = Some(state.meter(caller, endpoint, req, &job));
    let stream = JobStream::start(state, job, format, meter).await?;
    Ok(Started { stream, format, wants })
}

/// Which timestamp events the client asked for.
#[derive(Debug, Clone, Copy)]
struct Wants {
    words: bool,
    phonemes: bool,
}

/// The Cartesia event stream of a job; it ends right after `done` or `error`.
fn sse_body(job: JobStream, context_id: Option<String>, wants: Wants, request_id: RequestId) -> Body {
    let state = Some((job, context_id, request_id));
    Body::from_stream(stream::unfold(state, move |state| async move {
        let (mut job, context_id, request_id) = state?;
        let events = TtsEvents { context_id: context_id.as_deref() };
        loop {
            let frame = match job.next().await? {
                Ok(Piece::Audio { bytes, .. }) if bytes.is_empty() => continue,
                Ok(Piece::Audio { bytes, step_time_ms }) => events.chunk(&bytes, step_time_ms),
                Ok(Piece::Words(words)) if wants.words => events.words(&words),
                Ok(Piece::Phonemes(phonemes)) if wants.phonemes => events.phonemes(&phonemes),
                Ok(Piece::Words(_) | Piece::Phonemes(_)) => continue,
                Ok(Piece::Done { tail }) => {
                    let mut frames = if tail.is_empty() { String::new() } else { events.chunk(&tail, 0.0) };
                    frames.push_str(&events.done());
                    return Some((Ok::<_, std::io::Error>(frames), None));
                }
                Err(e) => {
                    tracing::warn!(request_id = request_id.as_str(), error = %e, "Synthesis failed mid-stream.");
                    return Some((Ok(events.error(&e)), None));
                }
            };
            return Some((Ok(frame), Some((job, context_id, request_id))));
        }
    }))
}
