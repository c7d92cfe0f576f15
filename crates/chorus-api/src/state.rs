//! Shared state of the API server, and turning a validated Cartesia request into a bus job.

use std::sync::Arc;

use chorus_bus::Bus;
use chorus_proto::secret::{constant_time_eq, hash_key};
use chorus_proto::{ErrorCode, OutputFormat, SynthesisJob, SynthesisParams};

use crate::catalogue::Catalogue;
use crate::documents::{DictCache, Voice, VoiceCache};
use crate::error::{ApiError, echo};
use crate::license::{Caller, LicenseGate, UsageMeter};
use crate::persistence::{Artifacts, Doc as _};
use crate::request::TtsRequest;

/// API keys; never printed.
#[derive(Clone, Default)]
pub struct ApiKeys(Vec<String>);

impl ApiKeys {
    pub fn new(keys: Vec<String>) -> Self {
        Self(keys.into_iter().map(|k| k.trim().to_owned()).filter(|k| !k.is_empty()).collect())
    }

    /// True when no key is configured: the server runs open.
    pub fn is_open(&self) -> bool {
        self.0.is_empty()
    }

    /// Constant-time comparison against every configured key.
    pub fn accepts(&self, candidate: &str) -> bool {
        self.0.iter().fold(false, |found, key| found | constant_time_eq(key, candidate))
    }

    /// True when a configured key has this SHA-256 (lowercase hex): an access token minted with it.
    pub fn accepts_hash(&self, sha256: &str) -> bool {
        self.0.iter().fold(false, |found, key| found | constant_time_eq(hash_key(key), sha256))
    }
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKeys([{} redacted])", self.0.len())
    }
}

/// Settings of the API role.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub api_keys: ApiKeys,
    pub catalogue: Catalogue,
    /// Longest transcript accepted, in characters.
    pub max_transcript_chars: usize,
    /// The version `GET /` and `/status` report.
    pub version: String,
    /// Browser origins allowed to call the API (CORS).
    pub cors: crate::cors::CorsConfig,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            api_keys: ApiKeys::default(),
            catalogue: Catalogue::default(),
            max_transcript_chars: 50_000,
            version: "2026-08-14".into(),
            cors: crate::cors::CorsConfig::default(),
        }
    }
}

/// Everything a handler needs. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub bus: Arc<dyn Bus>,
    pub config: Arc<ApiConfig>,
    pub voices: Arc<VoiceCache>,
    pub dicts: Arc<DictCache>,
    /// Where voices and dictionaries are stored (in memory unless [`AppState::with_artifact_store`]).
    pub artifacts: Arc<Artifacts>,
    /// Entitlement, tenant keys and usage metering (open, with no license proxy, unless set by
    /// [`AppState::with_license`]).
    pub license: Arc<LicenseGate>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").field("config", &self.config).finish_non_exhaustive()
    }
}

/// Where a request came from: some checks differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `POST /tts/bytes`: any container.
    Bytes,
    /// `POST /tts/sse`: raw only.
    Sse,
    /// A WebSocket generation request: raw only, the transcript may be empty.
    WebSocket,
}

/// A request ready to go on the bus.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    pub job: SynthesisJob,
    pub format: OutputFormat,
}

/// Keeps the built-in voices in step with the models the bus announces. The bus pushes every change, so a request
/// only reads the catalogue.
fn follow_announcements(bus: &dyn Bus, voices: &Arc<VoiceCache>) {
    let mut announced = bus.announcements();
    let models = announced.borrow_and_update().clone();
    voices.sync_builtin(&models);
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        tracing::warn!("No async runtime: the voice catalogue does not follow the workers' announcements.");
        return;
    };
    let voices = Arc::downgrade(voices);
    runtime.spawn(async move {
        while announced.changed().await.is_ok() {
            let Some(voices) = voices.upgrade() else { break };
            let models = announced.borrow_and_update().clone();
            voices.sync_builtin(&models);
        }
    });
}

impl AppState {
    /// The state of an API server over `bus`. Call it within a Tokio runtime: the task that follows the bus's model
    /// announcements into the voice catalogue runs on it (without one, the catalogue keeps the models of the start).
    pub fn new(bus: Arc<dyn Bus>, config: ApiConfig) -> Self {
        let voices = Arc::new(VoiceCache::default());
        // The models served at start stay listed through a worker restart; models added later (hot-added from
        // the artifact store) are listed while announced.
        voices.pin_builtin(&bus.models());
        follow_announcements(bus.as_ref(), &voices);
        let dicts = Arc::new(DictCache::default());
        let artifacts = Arc::new(Artifacts::new(
            chorus_artifacts::ArtifactStore::in_memory(),
            Arc::clone(&voices),
            Arc::clone(&dicts),
        ));
        Self {
            bus,
            config: Arc::new(config),
            voices,
            dicts,
            artifacts,
            license: Arc::new(LicenseGate::open()),
        }
    }

    /// Keeps voices and dictionaries in `store` (a directory or bucket shared with other API servers). Call
    /// [`Artifacts::sync`] to load it, [`crate::persistence::spawn_reloader`] to follow it.
    pub fn with_artifact_store(mut self, store: chorus_artifacts::ArtifactStore) -> Self {
        self.artifacts = Arc::new(Artifacts::new(store, Arc::clone(&self.voices), Arc::clone(&self.dicts)));
        self
    }

    /// Follows a license proxy: its entitlement and tenant keys apply, and usage is reported to it.
    pub fn with_license(mut self, gate: LicenseGate) -> Self {
        self.license = Arc::new(gate);
        self
    }

    /// The usage meter of a prepared synthesis request (API metrics; the license proxy's record when there is one).
    pub fn meter(&self, caller: &Caller, route: &str, req: &TtsRequest, job: &SynthesisJob) -> UsageMeter {
        let voice = req.voice.id().unwrap_or_default();
        self.license.meter(caller, route, &req.model_id, voice, job.transcript.chars().count() as u64)
    }

    /// Validates a Cartesia TTS request and builds its job: model, voice, format, transcript, parameters,
    /// dictionary. Every input error is found here, before any audio.
    pub fn prepare(&self, req: &TtsRequest, request_id: &str, route: Route) -> Result<Prepared, ApiError> {
        self.prepare_inner(req, request_id, route).map_err(|e| e.with_request_id(request_id))
    }

    fn prepare_inner(&self, req: &TtsRequest, request_id: &str, route: Route) -> Result<Prepared, ApiError> {
        let Some(model) = self.config.catalogue.resolve(&req.model_id) else {
            return Err(ApiError::new(
                ErrorCode::ModelNotFound,
                format!("model '{}' does not exist (try sonic-3 or chorus-piper)", echo(&req.model_id)),
            ));
        };
        self.license.check_model(&req.model_id, &model.id)?;
        let voice_id = req.voice.id()?;
        let voice = self.voices.get(voice_id).ok_or_else(|| Voice::not_found(voice_id))?;
        let format = req.output_format.resolve(route != Route::Bytes)?;

        let chars = req.transcript.chars().count();
        if chars > self.config.max_transcript_chars {
            return Err(ApiError::new(
                ErrorCode::TextTooLong,
                format!(
                    "the transcript is {chars} characters; the limit is {}",
                    self.config.max_transcript_chars
                ),
            ));
        }
        let continuing = route == Route::WebSocket && req.continue_.unwrap_or(false);
        if !continuing && !req.transcript.chars().any(char::is_alphanumeric) && route != Route::WebSocket {
            let what = if req.transcript.trim().is_empty() { "empty" } else { "only punctuation or symbols" };
            return Err(ApiError::new(ErrorCode::EmptyTranscript, format!("the transcript is {what}")));
        }

        if req.language.is_some() && req.locale.is_some() {
            return Err(ApiError::invalid("set either language or locale, not both"));
        }
        if let Some(lang) = req.language.as_deref().or(req.locale.as_deref()) {
            let base = lang.split(['-', '_']).next().unwrap_or(lang).to_ascii_lowercase();
            if base != voice.language {
                return Err(ApiError::invalid(format!(
                    "voice '{}' speaks '{}', not '{}'",
                    voice.id,
                    voice.language,
                    echo(lang)
                )));
            }
        }

        let config = req.generation_config.clone().unwrap_or_default();
        let speed = config.speed.or_else(|| req.speed.map(|s| s.factor())).unwrap_or(1.0);
        let params = SynthesisParams {
            speed: speed * voice.params.speed.unwrap_or(1.0),
            volume: config.volume.unwrap_or(1.0),
            noise_scale: voice.params.noise_scale,
            noise_w: voice.params.noise_w,
        };
        params.validate().map_err(|e| ApiError::invalid(format!("generation_config: {e}")))?;

        let pronunciations = match req.pronunciation_dict_id.as_deref() {
            None | Some("") => Vec::new(),
            Some(id) => {
                self.dicts
                    .get(id)
                    .ok_or_else(|| {
                        ApiError::not_found(format!("pronunciation dictionary '{}' does not exist", echo(id)))
                    })?
                    .items
            }
        };
        if let Some(ms) = req.max_buffer_delay_ms
            && ms > 5000
        {
            return Err(ApiError::invalid("max_buffer_delay_ms must be between 0 and 5000"));
        }

        let mut job = SynthesisJob::new(request_id, voice.model.clone(), req.transcript.clone());
        job.continuation = continuing;
        job.params = params;
        job.normalize = !matches!(req.normalization.as_deref(), Some("off"));
        job.pronunciations = pronunciations;
        job.word_timestamps = req.add_timestamps.unwrap_or(false);
        job.phoneme_timestamps = req.add_phoneme_timestamps.unwrap_or(false);
        job.normalized_timestamps = req.use_normalized_timestamps.unwrap_or(false);
        job.max_buffer_delay_ms = req.max_buffer_delay_ms.unwrap_or(3000);
        Ok(Prepared { job, format })
    }
}
