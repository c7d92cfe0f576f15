//! Cartesia request bodies, parsed leniently (unknown fields ignored) and validated strictly.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use chorus_proto::{Container, Encoding, OutputFormat};

use crate::error::ApiError;

/// A voice as clients send it: a bare id, `{id}`, `{mode: "id", id}`, or `{mode: "embedding", ...}` (refused).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(untagged)]
pub enum VoiceSpecifier {
    Id(String),
    Object {
        #[serde(default)]
        mode: Option<String>,
        #[serde(default)]
        id: Option<String>,
        #[serde(default)]
        embedding: Option<Vec<f32>>,
    },
}

impl VoiceSpecifier {
    /// The voice id, or a 400 explaining what is wrong.
    pub fn id(&self) -> Result<&str, ApiError> {
        match self {
            VoiceSpecifier::Id(id) => Ok(id),
            VoiceSpecifier::Object { mode, id, embedding } => match (mode.as_deref(), id, embedding) {
                (Some("embedding"), _, _) | (None, None, Some(_)) => {
                    Err(ApiError::invalid("voice embeddings are not supported: give a voice id"))
                }
                (_, Some(id), _) => Ok(id),
                (_, None, _) => Err(ApiError::invalid("voice.id is required")),
            },
        }
    }
}

/// `output_format` as sent: validated by [`OutputFormatSpec::resolve`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct OutputFormatSpec {
    pub container: String,
    #[serde(default)]
    pub encoding: Option<String>,
    pub sample_rate: u32,
    #[serde(default)]
    pub bit_rate: Option<u32>,
}

impl OutputFormatSpec {
    /// Checks the format; `raw_only` for SSE and WebSocket, which carry raw samples only.
    pub fn resolve(&self, raw_only: bool) -> Result<OutputFormat, ApiError> {
        let bad = |e: chorus_proto::FormatError| ApiError::invalid(e.to_string());
        let container: Container = self.container.parse().map_err(bad)?;
        if raw_only && container != Container::Raw {
            return Err(ApiError::invalid(format!(
                "output_format.container must be 'raw' here (got '{}'); wav, mp3, opus and flac are for /tts/bytes",
                self.container
            )));
        }
        let encoding = match (container, self.encoding.as_deref()) {
            (Container::Mp3 | Container::Opus | Container::Flac, None | Some("")) => Encoding::PcmS16le,
            (Container::Raw | Container::Wav, None | Some("")) => {
                return Err(ApiError::invalid("output_format.encoding is required for raw and wav"));
            }
            (_, Some(e)) => e.parse().map_err(bad)?,
        };
        let format =
            OutputFormat { container, encoding, sample_rate: self.sample_rate, bit_rate: self.bit_rate };
        format.validate().map_err(bad)?;
        Ok(format)
    }
}

/// `generation_config`: an object of these fields only (anything else is refused, not silently ignored: a client
/// that sends `[1]` or a misspelt field would otherwise get defaults it did not ask for).
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerationConfig {
    #[serde(default)]
    pub speed: Option<f32>,
    #[serde(default)]
    pub volume: Option<f32>,
    /// Accepted and ignored: the Piper voices have no emotion control.
    #[serde(default)]
    pub emotion: Option<serde_json::Value>,
}

/// `generation_config` must be an object (or null): serde would otherwise read a struct from an array.
fn strict_generation_config<'de, D>(deserializer: D) -> Result<Option<GenerationConfig>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    use serde::Deserialize as _;
    use serde::de::Error as _;
    match Option::<serde_json::Value>::deserialize(deserializer)? {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(value @ serde_json::Value::Object(_)) => GenerationConfig::deserialize(value)
            .map(Some)
            .map_err(|e| D::Error::custom(format!("generation_config: {e}"))),
        Some(other) => Err(D::Error::custom(format!(
            "generation_config must be an object such as {{\"speed\": 1.0, \"volume\": 1.0}}, not {}",
            match other {
                serde_json::Value::Array(_) => "an array",
                serde_json::Value::String(_) => "a string",
                serde_json::Value::Number(_) => "a number",
                serde_json::Value::Bool(_) => "a boolean",
                serde_json::Value::Null | serde_json::Value::Object(_) => "that",
            }
        ))),
    }
}

/// The legacy top-level `speed` enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpeedPreset {
    Slow,
    Normal,
    Fast,
}

impl SpeedPreset {
    pub fn factor(self) -> f32 {
        match self {
            SpeedPreset::Slow => 0.8,
            SpeedPreset::Normal => 1.0,
            SpeedPreset::Fast => 1.25,
        }
    }
}

/// The body of `POST /tts/bytes` and `POST /tts/sse`, and of a WebSocket generation request.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct TtsRequest {
    pub model_id: String,
    pub transcript: String,
    pub voice: VoiceSpecifier,
    pub output_format: OutputFormatSpec,
    #[serde(default, deserialize_with = "strict_generation_config")]
    pub generation_config: Option<GenerationConfig>,
    #[serde(default)]
    pub language: Option<String>,
    #[serde(default)]
    pub locale: Option<String>,
    /// `auto` (default), `off`, or a locale that pins the normalizer.
    #[serde(default)]
    pub normalization: Option<String>,
    #[serde(default)]
    pub pronunciation_dict_id: Option<String>,
    #[serde(default)]
    pub speed: Option<SpeedPreset>,
    #[serde(default)]
    pub save: Option<bool>,
    #[serde(default)]
    pub add_timestamps: Option<bool>,
    #[serde(default)]
    pub add_phoneme_timestamps: Option<bool>,
    #[serde(default)]
    pub use_normalized_timestamps: Option<bool>,
    #[serde(default)]
    pub context_id: Option<String>,
    /// WebSocket: more input follows on this context.
    #[serde(default, rename = "continue")]
    pub continue_: Option<bool>,
    /// WebSocket: speak what is buffered now.
    #[serde(default)]
    pub flush: Option<bool>,
    /// WebSocket: how long text may wait for more context, 0-5000 ms.
    #[serde(default)]
    pub max_buffer_delay_ms: Option<u32>,
}

/// Parses a JSON body into `T`, answering malformed JSON with a 400 and a body of the wrong shape with a 422,
/// both in the Cartesia error format.
pub fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| match e.classify() {
        serde_json::error::Category::Syntax
        | serde_json::error::Category::Eof
        | serde_json::error::Category::Io => ApiError::invalid(format!("malformed JSON: {e}")),
        serde_json::error::Category::Data => ApiError::unprocessable(format!("invalid request body: {e}")),
    })
}

/// A JSON body extractor whose rejections are [`ApiError`]s (the Cartesia error JSON, not axum's plain text),
/// carrying the request id; a body over the limit is a 413.
#[derive(Debug, Clone)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let request_id = crate::middleware::RequestId::from_extensions(req.extensions());
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            let status = e.status();
            let error = ApiError::invalid(format!("cannot read the request body: {e}"));
            let error = if crate::serve::is_timeout(&e) {
                ApiError {
                    status: axum::http::StatusCode::REQUEST_TIMEOUT,
                    title: "Request timeout".into(),
                    message: "the request body did not arrive in time".into(),
                    ..error
                }
            } else if status == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError {
                    status,
                    title: "Request body too large".into(),
                    message: format!(
                        "the request body is larger than {} bytes",
                        crate::middleware::MAX_BODY_BYTES
                    ),
                    ..error
                }
            } else {
                error
            };
            error.with_request_id(request_id.as_str())
        })?;
        parse_json(&bytes).map(ApiJson).map_err(|e| e.with_request_id(request_id.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voice_specifiers() {
        let v: VoiceSpecifier = serde_json::from_str(r#""abc""#).unwrap();
        assert_eq!(v.id().unwrap(), "abc");
        let v: VoiceSpecifier = serde_json::from_str(r#"{"id": "abc", "extra": 1}"#).unwrap();
        assert_eq!(v.id().unwrap(), "abc");
        let v: VoiceSpecifier = serde_json::from_str(r#"{"mode": "id", "id": "abc"}"#).unwrap();
        assert_eq!(v.id().unwrap(), "abc");
        let v: VoiceSpecifier = serde_json::from_str(r#"{"mode": "embedding", "embedding": [0.1]}"#).unwrap();
        assert_eq!(v.id().unwrap_err().status.as_u16(), 400);
    }

    #[test]
    fn formats() {
        let f = |j: &str| serde_json::from_str::<OutputFormatSpec>(j).unwrap();
        let raw = f(r#"{"container":"raw","encoding":"pcm_f32le","sample_rate":44100}"#);
        assert_eq!(raw.resolve(true).unwrap().encoding, Encoding::PcmF32le);
        let mp3 = f(r#"{"container":"mp3","sample_rate":44100,"bit_rate":128000}"#);
        assert!(mp3.resolve(false).is_ok());
        assert!(mp3.resolve(true).is_err());
        assert!(
            f(r#"{"container":"raw","encoding":"pcm_s24le","sample_rate":44100}"#).resolve(false).is_err()
        );
        assert!(
            f(r#"{"container":"raw","encoding":"pcm_s16le","sample_rate":11025}"#).resolve(false).is_err()
        );
        assert!(
            f(r#"{"container":"ogg","encoding":"pcm_s16le","sample_rate":8000}"#).resolve(false).is_err()
        );
    }

    #[test]
    fn generation_config_is_strict() {
        let body = |config: &str| {
            format!(
                r#"{{"model_id": "sonic-3", "transcript": "hi", "voice": "v", "generation_config": {config},
                    "output_format": {{"container": "raw", "encoding": "pcm_s16le", "sample_rate": 16000}}}}"#
            )
        };
        let ok = parse_json::<TtsRequest>(body(r#"{"speed": 1.2, "emotion": "calm"}"#).as_bytes()).unwrap();
        assert_eq!(ok.generation_config.unwrap().speed, Some(1.2));
        assert_eq!(parse_json::<TtsRequest>(body("null").as_bytes()).unwrap().generation_config, None);
        for bad in ["[1]", "[]", "\"fast\"", "2", r#"{"sped": 1.2}"#, r#"{"speed": "fast"}"#] {
            let e = parse_json::<TtsRequest>(body(bad).as_bytes()).unwrap_err();
            assert_eq!(e.status.as_u16(), 422, "{bad}: {e}");
            assert!(e.message.contains("generation_config"), "{bad}: {e}");
        }
    }

    #[test]
    fn json_errors_are_400_or_422() {
        assert_eq!(parse_json::<TtsRequest>(b"{not json").unwrap_err().status.as_u16(), 400);
        assert_eq!(parse_json::<TtsRequest>(br#"{"model_id": 5}"#).unwrap_err().status.as_u16(), 422);
    }
}
