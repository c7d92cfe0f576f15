//! Server-sent events: the framing and the Cartesia TTS event bodies (spec 2.4.3).
//!
//! Every event is an `event: <type>` line and one `data: <json>` line whose JSON has a `type` field, followed by
//! a blank line: the Cartesia SDK calls `json.loads` on every event's data and routes on `type`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chorus_proto::{PhonemeTimestamps, WordTimestamps};
use serde_json::{Value, json};

/// The `Content-Type` of an event stream.
pub const CONTENT_TYPE: &str = "text/event-stream";

/// `status_code` of the events that carry output (the cloud's value).
const PARTIAL: u16 = 206;

/// One SSE frame: `event: <name>` and `data: <json>`. The JSON is compact, so it is one line.
pub fn frame(event: &str, data: &Value) -> String {
    format!("event: {event}\ndata: {data}\n\n")
}

/// A frame with a `data:` line only (the OpenAI style).
pub fn data_frame(data: &Value) -> String {
    format!("data: {data}\n\n")
}

/// Cartesia TTS events, each with the optional `context_id` echoed.
#[derive(Debug, Clone, Copy)]
pub struct TtsEvents<'a> {
    /// The request's `context_id`, echoed in every event when set.
    pub context_id: Option<&'a str>,
}

impl TtsEvents<'_> {
    fn with_context(&self, mut value: Value) -> Value {
        if let (Some(ctx), Some(obj)) = (self.context_id, value.as_object_mut()) {
            obj.insert("context_id".into(), ctx.into());
        }
        value
    }

    /// An event that carries output (`done: false`), named by its `type`.
    fn partial(&self, kind: &str, mut data: Value) -> String {
        if let Some(obj) = data.as_object_mut() {
            obj.insert("type".into(), kind.into());
            obj.insert("done".into(), false.into());
            obj.insert("status_code".into(), PARTIAL.into());
        }
        frame(kind, &self.with_context(data))
    }

    /// A `chunk` event: `audio` is already encoded in the requested raw format.
    pub fn chunk(&self, audio: &[u8], step_time_ms: f64) -> String {
        self.partial("chunk", json!({"data": BASE64.encode(audio), "step_time": step_time_ms}))
    }

    /// A `timestamps` event with word timestamps.
    pub fn words(&self, words: &WordTimestamps) -> String {
        self.partial("timestamps", json!({"word_timestamps": words}))
    }

    /// A `phoneme_timestamps` event.
    pub fn phonemes(&self, phonemes: &PhonemeTimestamps) -> String {
        self.partial("phoneme_timestamps", json!({"phoneme_timestamps": phonemes}))
    }

    /// The final `done` event.
    pub fn done(&self) -> String {
        frame("done", &self.with_context(json!({"type": "done", "done": true, "status_code": 200})))
    }

    /// An `error` event (terminal).
    pub fn error(&self, error: &crate::ApiError) -> String {
        frame("error", &error.event_json(self.context_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_one_json_line_each() {
        let events = TtsEvents { context_id: Some("ctx") };
        let chunk = events.chunk(&[0, 1, 2], 12.5);
        assert!(chunk.starts_with("event: chunk\ndata: {"));
        assert!(chunk.ends_with("}\n\n"));
        assert_eq!(chunk.matches('\n').count(), 3);
        let data: Value = serde_json::from_str(chunk.trim_end().split_once("data: ").unwrap().1).unwrap();
        assert_eq!(data["type"], "chunk");
        assert_eq!(data["data"], "AAEC");
        assert_eq!(data["context_id"], "ctx");
        assert_eq!(data["step_time"], 12.5);
        let done = TtsEvents { context_id: None }.done();
        assert_eq!(done, "event: done\ndata: {\"done\":true,\"status_code\":200,\"type\":\"done\"}\n\n");
    }
}
