//! How jobs, inputs and events travel over NATS.
//!
//! Jobs, replies, inputs and heartbeats are JSON. Events carry a sequence number per job attempt (a gap is an error,
//! never silence) and, for audio, the samples as raw little-endian `f32` after a small fixed header, so audio does
//! not pay for JSON.

use bytes::{BufMut, Bytes, BytesMut};
use chorus_proto::{AudioEvent, JobEvent, SynthesisJob};

/// Errors decoding a bus message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("truncated message")]
    Truncated,
    #[error("unknown message kind {0}")]
    Kind(u8),
    #[error("invalid JSON: {0}")]
    Json(String),
}

const KIND_AUDIO: u8 = 0;
const KIND_JSON: u8 = 1;
/// kind (1) + event seq (8) + audio seq (8) + rate (4) + step time (8) + flush id (4)
const AUDIO_HEADER: usize = 1 + 8 + 8 + 4 + 8 + 4;

/// A job offered to a worker, with the subjects of this attempt.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct JobRequest {
    pub job: SynthesisJob,
    /// Where the worker publishes the job's events.
    pub events_subject: String,
    /// Where the API publishes the job's inputs.
    pub inputs_subject: String,
    /// Flow control the API offers (absent from API servers before it: the worker then sends freely).
    #[serde(default)]
    pub flow: Option<Flow>,
}

/// Credit-based flow control of one job attempt, offered by the API in its [`JobRequest`] and agreed to by the
/// worker in its [`JobReply`].
///
/// The worker may have at most `window_bytes` of event payload published beyond what the API has handed on to its
/// client (one event may cross the line). The API grants credit with [`Inbound::Credit`], the total bytes it has
/// consumed, as it consumes them and every `keepalive_ms` in any case: a worker that hears nothing from the API
/// for `timeout_ms` (the API server is gone, frozen, or the bus is down) stops the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Flow {
    pub window_bytes: u64,
    pub keepalive_ms: u64,
    pub timeout_ms: u64,
}

/// A message on a job's inputs subject: flow credit (and liveness), or an input of the job.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum Inbound {
    /// The API has consumed `credit` bytes of this attempt's events in all.
    Credit {
        credit: u64,
    },
    Input(chorus_proto::ContextInput),
}

/// A worker's answer to a [`JobRequest`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JobReply {
    pub accepted: bool,
    /// Why not, when refused: `full`, `draining`, `unknown_model`, `version`.
    #[serde(default)]
    pub refusal: Option<String>,
    #[serde(default)]
    pub detail: Option<String>,
    /// The worker follows the request's [`Flow`] (absent from workers before it).
    #[serde(default)]
    pub flow: bool,
}

impl JobReply {
    /// A refusal: `kind` as in [`JobReply::refusal`], `detail` for the logs.
    pub fn refused(kind: &str, detail: impl std::fmt::Display) -> Self {
        Self { accepted: false, refusal: Some(kind.into()), detail: Some(detail.to_string()), flow: false }
    }
}

pub fn to_json<T: serde::Serialize>(value: &T) -> Bytes {
    // Serializing our own plain types cannot fail; an empty payload is rejected by the peer if it ever did.
    Bytes::from(serde_json::to_vec(value).unwrap_or_default())
}

pub fn from_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, WireError> {
    serde_json::from_slice(bytes).map_err(|e| WireError::Json(e.to_string()))
}

/// Encodes one event with its per-attempt sequence number.
pub fn encode_event(seq: u64, event: &JobEvent) -> Bytes {
    match event {
        JobEvent::Audio(a) => {
            let mut buf = BytesMut::with_capacity(AUDIO_HEADER + a.samples.len() * 4);
            buf.put_u8(KIND_AUDIO);
            buf.put_u64_le(seq);
            buf.put_u64_le(a.seq);
            buf.put_u32_le(a.sample_rate);
            buf.put_f64_le(a.step_time_ms);
            buf.put_u32_le(a.flush_id);
            for s in &a.samples {
                buf.put_f32_le(*s);
            }
            buf.freeze()
        }
        JobEvent::Words { .. }
        | JobEvent::Phonemes { .. }
        | JobEvent::FlushDone { .. }
        | JobEvent::Done
        | JobEvent::Error(_) => {
            let json = serde_json::to_vec(event).unwrap_or_default();
            let mut buf = BytesMut::with_capacity(9 + json.len());
            buf.put_u8(KIND_JSON);
            buf.put_u64_le(seq);
            buf.put_slice(&json);
            buf.freeze()
        }
    }
}

/// Decodes an event and its sequence number.
pub fn decode_event(bytes: &[u8]) -> Result<(u64, JobEvent), WireError> {
    let (&kind, rest) = bytes.split_first().ok_or(WireError::Truncated)?;
    let seq = u64::from_le_bytes(
        rest.get(..8).ok_or(WireError::Truncated)?.try_into().map_err(|_| WireError::Truncated)?,
    );
    let body = &rest[8..];
    match kind {
        KIND_AUDIO => {
            if body.len() < AUDIO_HEADER - 9 || !(body.len() - (AUDIO_HEADER - 9)).is_multiple_of(4) {
                return Err(WireError::Truncated);
            }
            let u64_at = |i: usize| u64::from_le_bytes(body[i..i + 8].try_into().unwrap_or([0; 8]));
            let u32_at = |i: usize| u32::from_le_bytes(body[i..i + 4].try_into().unwrap_or([0; 4]));
            let audio_seq = u64_at(0);
            let sample_rate = u32_at(8);
            let step_time_ms = f64::from_bits(u64_at(12));
            let flush_id = u32_at(20);
            let samples =
                body[24..].chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
            Ok((
                seq,
                JobEvent::Audio(AudioEvent { seq: audio_seq, sample_rate, samples, step_time_ms, flush_id }),
            ))
        }
        KIND_JSON => Ok((seq, from_json(body)?)),
        other => Err(WireError::Kind(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chorus_proto::{ErrorCode, JobError, WordTimestamps};

    #[test]
    fn events_round_trip() {
        let events = [
            JobEvent::Audio(AudioEvent {
                seq: 7,
                sample_rate: 22050,
                samples: vec![0.5, -0.25, 1.0],
                step_time_ms: 12.5,
                flush_id: 2,
            }),
            JobEvent::Words {
                flush_id: 1,
                words: WordTimestamps { words: vec!["hi".into()], start: vec![0.0], end: vec![0.3] },
            },
            JobEvent::FlushDone { flush_id: 3 },
            JobEvent::Done,
            JobEvent::Error(JobError { code: ErrorCode::WorkerLost, message: "gone".into() }),
        ];
        for (i, e) in events.iter().enumerate() {
            let bytes = encode_event(i as u64 + 40, e);
            assert_eq!(decode_event(&bytes).unwrap(), (i as u64 + 40, e.clone()));
        }
    }

    #[test]
    fn inbound_messages_tell_credit_from_input() {
        use chorus_proto::ContextInput;
        let credit = to_json(&Inbound::Credit { credit: 42 });
        assert_eq!(from_json::<Inbound>(&credit).unwrap(), Inbound::Credit { credit: 42 });
        for input in [
            ContextInput::Append { text: "hi".into() },
            ContextInput::Flush,
            ContextInput::End,
            ContextInput::Cancel,
        ] {
            // Old API servers send a bare ContextInput: the same bytes.
            let bytes = to_json(&input);
            assert_eq!(bytes, to_json(&Inbound::Input(input.clone())));
            assert_eq!(from_json::<Inbound>(&bytes).unwrap(), Inbound::Input(input));
        }
        // An old worker's reply has no `flow`; an old API's request neither.
        let reply: JobReply = from_json(br#"{"accepted": true}"#).unwrap();
        assert!(!reply.flow);
    }

    #[test]
    fn garbage_is_an_error() {
        assert_eq!(decode_event(&[]), Err(WireError::Truncated));
        assert_eq!(decode_event(&[0, 1, 2]), Err(WireError::Truncated));
        assert!(matches!(decode_event(&[9, 0, 0, 0, 0, 0, 0, 0, 0]), Err(WireError::Kind(9))));
        let mut audio = encode_event(1, &JobEvent::Done).to_vec();
        audio[0] = 0;
        assert_eq!(decode_event(&audio), Err(WireError::Truncated));
    }
}
