//! The JSON the TTS WebSocket speaks: server frames out, client messages in (spec 2.4.4).

use base64::Engine as _;
use chorus_proto::{PhonemeTimestamps, WordTimestamps};
use serde::Serialize;

use crate::error::ApiError;
use crate::request::{TtsRequest, parse_json};

/// Cartesia sends 206 on every non-error frame of a WebSocket context, `done` included.
const STATUS_PARTIAL: u16 = 206;

/// A server frame, serialized to the text of one WebSocket message.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Frame<'a> {
    Chunk {
        context_id: &'a str,
        data: String,
        done: bool,
        status_code: u16,
        step_time: f64,
        flush_id: u32,
    },
    Timestamps {
        context_id: &'a str,
        done: bool,
        status_code: u16,
        word_timestamps: &'a WordTimestamps,
        flush_id: u32,
    },
    PhonemeTimestamps {
        context_id: &'a str,
        done: bool,
        status_code: u16,
        phoneme_timestamps: &'a PhonemeTimestamps,
        flush_id: u32,
    },
    FlushDone {
        context_id: &'a str,
        done: bool,
        flush_done: bool,
        flush_id: u32,
        status_code: u16,
    },
    Done {
        context_id: &'a str,
        done: bool,
        status_code: u16,
    },
}

fn to_text(frame: &impl Serialize) -> String {
    // These frames hold strings, numbers and arrays only: serializing them cannot fail.
    serde_json::to_string(frame).unwrap_or_else(|e| {
        tracing::error!(%e, "Cannot serialize a WebSocket frame.");
        String::from(r#"{"type":"error","done":true,"status_code":500,"title":"Internal error","message":"frame serialization failed"}"#)
    })
}

/// `chunk`: `audio` in the context's raw encoding, base64.
pub(crate) fn chunk(context_id: &str, audio: &[u8], step_time_ms: f64, flush_id: u32) -> String {
    to_text(&Frame::Chunk {
        context_id,
        data: base64::engine::general_purpose::STANDARD.encode(audio),
        done: false,
        status_code: STATUS_PARTIAL,
        step_time: if step_time_ms.is_finite() { step_time_ms } else { 0.0 },
        flush_id,
    })
}

/// `timestamps` (word timestamps).
pub(crate) fn word_timestamps(context_id: &str, words: &WordTimestamps, flush_id: u32) -> String {
    to_text(&Frame::Timestamps {
        context_id,
        done: false,
        status_code: STATUS_PARTIAL,
        word_timestamps: words,
        flush_id,
    })
}

/// `phoneme_timestamps`.
pub(crate) fn phoneme_timestamps(context_id: &str, phonemes: &PhonemeTimestamps, flush_id: u32) -> String {
    to_text(&Frame::PhonemeTimestamps {
        context_id,
        done: false,
        status_code: STATUS_PARTIAL,
        phoneme_timestamps: phonemes,
        flush_id,
    })
}

/// `flush_done`: everything sent before flush `flush_id` is out.
pub(crate) fn flush_done(context_id: &str, flush_id: u32) -> String {
    to_text(&Frame::FlushDone {
        context_id,
        done: false,
        flush_done: true,
        flush_id,
        status_code: STATUS_PARTIAL,
    })
}

/// `done`: the context is over; sent once.
pub(crate) fn done(context_id: &str) -> String {
    to_text(&Frame::Done { context_id, done: true, status_code: STATUS_PARTIAL })
}

/// `error`: terminal for the context it names (or for nothing, when no `context_id` could be read).
pub(crate) fn error(error: &ApiError, context_id: Option<&str>) -> String {
    to_text(&error.event_json(context_id))
}

/// What a client text frame asks for.
#[derive(Debug)]
pub(crate) enum ClientMessage {
    /// `{"context_id", "cancel": true}`.
    Cancel { context_id: Option<String> },
    /// A generation request. Only the first one of a context is parsed as a full [`TtsRequest`]; the rest need
    /// only the fields below, and every other field of theirs is ignored.
    Generate(Generate),
}

/// A generation request, parsed just enough to route it.
#[derive(Debug)]
pub(crate) struct Generate {
    pub(crate) context_id: Option<String>,
    pub(crate) transcript: String,
    /// `continue`: more input follows (default false).
    pub(crate) continue_: bool,
    pub(crate) flush: bool,
    /// The whole message, for [`Generate::request`].
    value: serde_json::Value,
}

/// The routing fields, read leniently: the SDK always sends them, a hand-written client may not.
#[derive(Debug, serde::Deserialize)]
struct Routing {
    #[serde(default)]
    transcript: Option<String>,
    #[serde(default, rename = "continue")]
    continue_: Option<bool>,
    #[serde(default)]
    flush: Option<bool>,
}

impl Generate {
    /// The message as a full request (first message of a context).
    pub(crate) fn request(&self) -> Result<TtsRequest, ApiError> {
        serde::Deserialize::deserialize(&self.value)
            .map_err(|e| ApiError::unprocessable(format!("invalid generation request: {e}")))
    }
}

/// A parse failure, with the `context_id` when one could be read.
#[derive(Debug)]
pub(crate) struct BadMessage {
    pub(crate) context_id: Option<String>,
    pub(crate) error: ApiError,
}

/// Parses one client text frame.
pub(crate) fn parse(text: &str) -> Result<ClientMessage, BadMessage> {
    let value: serde_json::Value =
        parse_json(text.as_bytes()).map_err(|error| BadMessage { context_id: None, error })?;
    let Some(object) = value.as_object() else {
        return Err(BadMessage {
            context_id: None,
            error: ApiError::unprocessable(
                "a message must be a JSON object (a generation request or a cancel)",
            ),
        });
    };
    let context_id = match object.get("context_id") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(id)) => Some(id.clone()),
        Some(other) => {
            return Err(BadMessage {
                context_id: None,
                error: ApiError::unprocessable(format!("context_id must be a string, not {other}")),
            });
        }
    };
    if object.get("cancel").and_then(serde_json::Value::as_bool) == Some(true) {
        return Ok(ClientMessage::Cancel { context_id });
    }
    let routing: Routing = serde::Deserialize::deserialize(&value).map_err(|e| BadMessage {
        context_id: context_id.clone(),
        error: ApiError::unprocessable(format!("invalid generation request: {e}")),
    })?;
    Ok(ClientMessage::Generate(Generate {
        context_id,
        transcript: routing.transcript.unwrap_or_default(),
        continue_: routing.continue_.unwrap_or(false),
        flush: routing.flush.unwrap_or(false),
        value,
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn frames_have_the_cartesia_shape() {
        let v: serde_json::Value = serde_json::from_str(&chunk("c", &[0, 1, 2], 1.5, 1)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type": "chunk", "context_id": "c", "data": "AAEC", "done": false,
                "status_code": 206, "step_time": 1.5, "flush_id": 1})
        );
        let v: serde_json::Value = serde_json::from_str(&flush_done("c", 2)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type": "flush_done", "context_id": "c", "done": false, "flush_done": true,
                "flush_id": 2, "status_code": 206})
        );
        let v: serde_json::Value = serde_json::from_str(&done("c")).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type": "done", "context_id": "c", "done": true, "status_code": 206})
        );
        let words = WordTimestamps { words: vec!["hi".into()], start: vec![0.0], end: vec![0.25] };
        let v: serde_json::Value = serde_json::from_str(&word_timestamps("c", &words, 3)).unwrap();
        assert_eq!(v["type"], "timestamps");
        assert_eq!(v["word_timestamps"], serde_json::json!({"words": ["hi"], "start": [0.0], "end": [0.25]}));
        assert_eq!(v["flush_id"], 3);
        let phonemes = PhonemeTimestamps { phonemes: vec!["h".into()], start: vec![0.0], end: vec![0.1] };
        let v: serde_json::Value = serde_json::from_str(&phoneme_timestamps("c", &phonemes, 1)).unwrap();
        assert_eq!(v["type"], "phoneme_timestamps");
        assert_eq!(v["phoneme_timestamps"]["phonemes"], serde_json::json!(["h"]));
        let v: serde_json::Value = serde_json::from_str(&chunk("c", &[], f64::NAN, 1)).unwrap();
        assert_eq!(v["step_time"], 0.0);
    }

    #[test]
    fn messages_parse_leniently() {
        assert!(matches!(
            parse(r#"{"context_id": "a", "cancel": true}"#),
            Ok(ClientMessage::Cancel { context_id: Some(id) }) if id == "a"
        ));
        let Ok(ClientMessage::Generate(g)) =
            parse(r#"{"context_id": "a", "transcript": "hi", "continue": true}"#)
        else {
            panic!("not a generation request");
        };
        assert_eq!((g.transcript.as_str(), g.continue_, g.flush), ("hi", true, false));
        assert!(g.request().is_err(), "no model, voice or format");
        let Ok(ClientMessage::Generate(g)) = parse(r#"{"transcript": ""}"#) else { panic!("not a request") };
        assert_eq!((g.context_id, g.continue_), (None, false));

        let bad = parse("not json").unwrap_err();
        assert_eq!((bad.context_id, bad.error.status.as_u16()), (None, 400));
        let bad = parse("[1, 2]").unwrap_err();
        assert_eq!(bad.error.status.as_u16(), 422);
        let bad = parse(r#"{"context_id": 7}"#).unwrap_err();
        assert_eq!(bad.error.status.as_u16(), 422);
        let bad = parse(r#"{"context_id": "x", "transcript": 5}"#).unwrap_err();
        assert_eq!((bad.context_id.as_deref(), bad.error.status.as_u16()), (Some("x"), 422));
    }
}
