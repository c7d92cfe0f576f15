//! Voices and pronunciation dictionaries in the artifact store: writes through the API, hot reload, migrations.
//!
//! The API serves from an in-memory cache ([`VoiceCache`], [`DictCache`]); every write goes to the store first,
//! conditionally (create-if-absent, update-if-the-version-read-is-still-current), then into the cache. Another
//! API server sharing the store sees the change at its next [`Artifacts::sync`]: the reloader
//! ([`spawn_reloader`]) runs one on every file-system notification (a directory) and every reload interval (a
//! bucket, or a directory as a safety net). A sync:
//!
//! 1. applies the migration files under `migrations/` that no server has claimed yet (claiming one is a
//!    create-if-absent of `migrations/applied/<name>.json`, so exactly one server applies it);
//! 2. lists each kind and loads every document whose entity tag differs from the cached one; a malformed document
//!    is logged with its path, counted (`result="invalid"`) and skipped, keeping the version already loaded, if
//!    any; it is not read again until it changes;
//! 3. forgets the documents that are gone (after checking, so that a document written through this server after
//!    the listing is not dropped).
//!
//! Migration files and `chorus artifacts export` use one record per line: a voice or a dictionary document with
//! a `"type"` of `"voice"` or `"pronunciation_dict"` ([`Record`]). Importing is an idempotent upsert.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use chorus_artifacts::{ArtifactError, ArtifactStore, DocKind};
use chorus_proto::ErrorCode;
use chorus_proto::metrics as names;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::documents::{
    DictCache, DocCache, Document, PronunciationDict, Voice, VoiceCache, check_items, rfc3339_now,
};
use crate::error::ApiError;

/// How long a migration file in a directory must be unchanged before it is applied (it may still be copied in).
pub const MIGRATION_SETTLE: Duration = Duration::from_secs(2);

/// Default time between two listings of the store.
pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(5);

/// A document kind the API keeps in the store.
pub trait Doc: Document + PartialEq + Serialize + DeserializeOwned + Send + Sync + 'static {
    const KIND: DocKind;
    /// Checks a document read from the store under `id` (fills the id when the document leaves it out).
    fn check(&mut self, id: &str) -> Result<(), String>;
    /// The cache this kind is served from.
    fn cache(artifacts: &Artifacts) -> &DocCache<Self>;
    fn not_found(id: &str) -> ApiError;
}

fn check_id(doc_id: &mut String, id: &str) -> Result<(), String> {
    if doc_id.is_empty() {
        id.clone_into(doc_id);
    } else if doc_id != id {
        return Err(format!("its id '{doc_id}' is not its file name's '{id}'"));
    }
    Ok(())
}

impl Doc for Voice {
    const KIND: DocKind = DocKind::Voice;
    fn check(&mut self, id: &str) -> Result<(), String> {
        check_id(&mut self.id, id)?;
        self.builtin = false;
        if self.model.trim().is_empty() || self.language.trim().is_empty() || self.name.trim().is_empty() {
            return Err("name, language and model must not be empty".into());
        }
        Ok(())
    }
    fn cache(a: &Artifacts) -> &DocCache<Self> {
        &a.voices
    }
    fn not_found(id: &str) -> ApiError {
        ApiError::new(ErrorCode::VoiceNotFound, format!("voice '{}' does not exist", crate::error::echo(id)))
    }
}

impl Doc for PronunciationDict {
    const KIND: DocKind = DocKind::Dict;
    fn check(&mut self, id: &str) -> Result<(), String> {
        check_id(&mut self.id, id)?;
        if self.name.trim().is_empty() {
            return Err("name must not be empty".into());
        }
        self.items = check_items(std::mem::take(&mut self.items)).map_err(|e| e.message)?;
        Ok(())
    }
    fn cache(a: &Artifacts) -> &DocCache<Self> {
        &a.dicts
    }
    fn not_found(id: &str) -> ApiError {
        ApiError::not_found(format!("pronunciation dictionary '{}' does not exist", crate::error::echo(id)))
    }
}

/// One line of a migration file or an export.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record {
    Voice(Voice),
    PronunciationDict(PronunciationDict),
}

/// What an import changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ImportReport {
    pub created: usize,
    pub updated: usize,
    pub unchanged: usize,
    /// `line N: why` for each record that could not be applied.
    pub failed: Vec<String>,
}

/// What happened to one record of an import.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upsert {
    Created,
    Updated,
    Unchanged,
}

/// The artifact store of an API server and the caches it fills.
#[derive(Debug)]
pub struct Artifacts {
    pub store: ArtifactStore,
    voices: Arc<VoiceCache>,
    dicts: Arc<DictCache>,
    /// Versions found malformed, by kind and id: not read again until they change.
    invalid: Mutex<HashMap<(DocKind, String), String>>,
    /// Migrations known to be claimed.
    claimed: Mutex<HashSet<String>>,
    /// Who applies migrations (recorded in the applied marker).
    server: String,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The store's error as the client sees it: 409 for a lost race, 404, 400 for a bad id, 503 when the store is
/// unreachable (the message names no credential).
pub fn api_error(e: ArtifactError) -> ApiError {
    match e {
        ArtifactError::AlreadyExists(what) | ArtifactError::Conflict(what) => ApiError::new(
            ErrorCode::Conflict,
            format!("{what} was changed by another request at the same time; read it again and retry"),
        ),
        ArtifactError::NotFound(what) => ApiError::not_found(format!("{what} does not exist")),
        ArtifactError::InvalidId(id) => {
            ApiError::invalid(format!("invalid id '{}'", crate::error::echo(&id)))
        }
        e @ (ArtifactError::Location { .. } | ArtifactError::Store(_) | ArtifactError::Io(_)) => {
            tracing::error!(error = %e, "Artifact store error.");
            ApiError::new(ErrorCode::Unserviceable, "the artifact store is unavailable; retry shortly")
        }
    }
}

fn to_bytes<T: Serialize>(doc: &T) -> Bytes {
    // Serializing these plain structs cannot fail.
    Bytes::from(serde_json::to_vec_pretty(doc).unwrap_or_default())
}

/// `"abc"`, `W/"abc"` or `abc` -> `abc`.
pub fn bare_etag(tag: &str) -> &str {
    let tag = tag.trim();
    tag.strip_prefix("W/").unwrap_or(tag).trim_matches('"')
}

/// An entity tag as an HTTP `ETag` value (quoted).
pub fn http_etag(etag: &str) -> String {
    format!("\"{}\"", bare_etag(etag))
}

impl Artifacts {
    pub fn new(store: ArtifactStore, voices: Arc<VoiceCache>, dicts: Arc<DictCache>) -> Self {
        let server = format!(
            "{}-{}",
            std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_owned()).unwrap_or_default(),
            std::process::id()
        );
        Self { store, voices, dicts, invalid: Mutex::default(), claimed: Mutex::default(), server }
    }

    /// Writes a new document (create-if-absent) and caches it.
    pub async fn create<T: Doc>(&self, doc: T) -> Result<(T, String), ApiError> {
        let etag = self.store.create(T::KIND, doc.id(), to_bytes(&doc)).await.map_err(api_error)?;
        T::cache(self).put_stored(doc.clone(), etag.clone());
        Ok((doc, etag))
    }

    /// Reads the current version from the store (not the cache), applies `edit`, and writes it back only if the
    /// version is unchanged; `if_match` (the client's `If-Match`) must name the current version when given.
    pub async fn update<T: Doc>(
        &self,
        id: &str,
        if_match: Option<&str>,
        edit: impl FnOnce(&mut T) -> Result<(), ApiError>,
    ) -> Result<(T, String), ApiError> {
        let current = self.store.get(T::KIND, id).await.map_err(api_error)?.ok_or_else(|| {
            T::cache(self).remove_stored(id);
            T::not_found(id)
        })?;
        if let Some(tag) = if_match
            && tag.trim() != "*"
            && bare_etag(tag) != bare_etag(&current.etag)
        {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                format!("'{id}' has changed since the version in If-Match; read it again"),
            ));
        }
        let mut doc: T = serde_json::from_slice(&current.bytes)
            .map_err(|e| e.to_string())
            .and_then(|mut d: T| d.check(id).map(|()| d))
            .map_err(|why| {
                ApiError::new(
                    ErrorCode::Internal,
                    format!(
                        "the stored document {} is malformed: {why}",
                        ArtifactStore::doc_path(T::KIND, id)
                    ),
                )
            })?;
        edit(&mut doc)?;
        let etag = self.store.update(T::KIND, id, to_bytes(&doc), &current.etag).await.map_err(api_error)?;
        T::cache(self).put_stored(doc.clone(), etag.clone());
        Ok((doc, etag))
    }

    /// Deletes a document (if its version is `if_match`, when given) and forgets it.
    pub async fn delete<T: Doc>(&self, id: &str, if_match: Option<&str>) -> Result<(), ApiError> {
        let expected = match if_match.map(str::trim) {
            None | Some("*") => None,
            Some(tag) => {
                // The client's tag has no quotes; the store's may have: compare bare, pass the store's own.
                let current = self.store.get(T::KIND, id).await.map_err(api_error)?;
                match current {
                    Some(v) if bare_etag(&v.etag) == bare_etag(tag) => Some(v.etag),
                    Some(_) => {
                        return Err(ApiError::new(
                            ErrorCode::Conflict,
                            format!("'{id}' has changed since the version in If-Match; read it again"),
                        ));
                    }
                    None => None,
                }
            }
        };
        let result = self.store.delete(T::KIND, id, expected.as_deref()).await;
        match result {
            Ok(()) => {
                T::cache(self).remove_stored(id);
                Ok(())
            }
            Err(ArtifactError::NotFound(_)) => {
                T::cache(self).remove_stored(id);
                Err(T::not_found(id))
            }
            Err(e) => Err(api_error(e)),
        }
    }

    /// One reload: pending migrations, then every kind. Returns false if the store could not be listed.
    pub async fn sync(&self) -> bool {
        if self.store.is_memory() {
            return true;
        }
        self.apply_migrations().await;
        let voices = self.sync_kind::<Voice>().await;
        let dicts = self.sync_kind::<PronunciationDict>().await;
        metrics::gauge!(names::ARTIFACTS_LOADED, "kind" => "voice").set(self.voices.etags().len() as f64);
        metrics::gauge!(names::ARTIFACTS_LOADED, "kind" => "dict").set(self.dicts.etags().len() as f64);
        let ok = voices && dicts;
        if ok {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
            metrics::gauge!(names::ARTIFACTS_LAST_SYNC).set(now);
        }
        ok
    }

    async fn sync_kind<T: Doc>(&self) -> bool {
        let label = T::KIND.label();
        let listed = match self.store.list(T::KIND).await {
            Ok(listed) => listed,
            Err(e) => {
                tracing::warn!(store = %self.store, kind = label, error = %e, "Cannot list the artifact store.");
                metrics::counter!(names::ARTIFACTS_RELOAD_TOTAL, "kind" => label, "result" => "error")
                    .increment(1);
                return false;
            }
        };
        let cached = T::cache(self).etags();
        let mut ok = true;
        for entry in &listed {
            if cached.get(&entry.id) == Some(&entry.etag) {
                continue;
            }
            let known_bad = lock(&self.invalid).get(&(T::KIND, entry.id.clone())) == Some(&entry.etag);
            if known_bad {
                continue;
            }
            ok &= self.load::<T>(&entry.id).await;
        }
        let listed_ids: HashSet<&str> = listed.iter().map(|e| e.id.as_str()).collect();
        for id in cached.keys().filter(|id| !listed_ids.contains(id.as_str())) {
            // Written through this server after the listing? Then it is there now.
            ok &= self.load::<T>(id).await;
        }
        lock(&self.invalid).retain(|(kind, id), _| *kind != T::KIND || listed_ids.contains(id.as_str()));
        ok
    }

    /// (Re)loads one document into the cache, or forgets it if it is gone. False on a store error.
    async fn load<T: Doc>(&self, id: &str) -> bool {
        let label = T::KIND.label();
        let path = ArtifactStore::doc_path(T::KIND, id);
        let count = |result: &'static str| {
            metrics::counter!(names::ARTIFACTS_RELOAD_TOTAL, "kind" => label, "result" => result)
                .increment(1);
        };
        let got = match self.store.get(T::KIND, id).await {
            Ok(got) => got,
            Err(e) => {
                tracing::warn!(store = %self.store, %path, error = %e, "Cannot read an artifact.");
                count("error");
                return false;
            }
        };
        let Some(got) = got else {
            if T::cache(self).etag(id).is_some() {
                T::cache(self).remove_stored(id);
                tracing::info!(store = %self.store, %path, "Artifact removed.");
                count("removed");
            }
            return true;
        };
        if T::cache(self).etag(id).as_deref() == Some(got.etag.as_str()) {
            return true;
        }
        let parsed = serde_json::from_slice::<T>(&got.bytes)
            .map_err(|e| e.to_string())
            .and_then(|mut doc| doc.check(id).map(|()| doc));
        match parsed {
            Ok(doc) => {
                // Counted before it is logged: whoever reads the log finds the metric already counted.
                if T::cache(self).put_stored(doc, got.etag) {
                    count("loaded");
                    tracing::info!(store = %self.store, %path, "Artifact loaded.");
                } else {
                    count("invalid");
                    tracing::warn!(store = %self.store, %path, "Skipped: a built-in voice has this id.");
                }
            }
            Err(why) => {
                let kept = T::cache(self).etag(id).is_some();
                count("invalid");
                lock(&self.invalid).insert((T::KIND, id.to_owned()), got.etag);
                tracing::warn!(
                    store = %self.store, %path, error = %why, kept_previous = kept,
                    "Malformed artifact skipped."
                );
            }
        }
        true
    }

    /// Applies every migration file nobody has claimed yet.
    async fn apply_migrations(&self) {
        let files = match self.store.list_migrations().await {
            Ok(files) => files,
            Err(e) => {
                tracing::warn!(store = %self.store, error = %e, "Cannot list the migrations.");
                return;
            }
        };
        for file in files {
            if lock(&self.claimed).contains(&file.id) {
                continue;
            }
            // A file being copied into a directory is not complete yet: wait until it has been still for a while
            // (uploads to a bucket are atomic).
            let settling = file.modified.elapsed().map_or(true, |age| age < MIGRATION_SETTLE);
            if self.store.is_local() && settling {
                tracing::debug!(path = %file.path, "Migration file too fresh; next reload.");
                continue;
            }
            match self.apply_migration(&file.id).await {
                Ok(()) => {
                    lock(&self.claimed).insert(file.id);
                }
                Err(e) => {
                    tracing::warn!(store = %self.store, path = %file.path, error = %e, "Migration not applied.");
                    metrics::counter!(names::ARTIFACTS_RELOAD_TOTAL, "kind" => "migration", "result" => "error")
                        .increment(1);
                }
            }
        }
    }

    async fn apply_migration(&self, name: &str) -> Result<(), ArtifactError> {
        if self.store.migration_claimed(name).await? {
            return Ok(());
        }
        let Some(file) = self.store.get_migration(name).await? else { return Ok(()) };
        let claim = serde_json::json!({ "state": "applying", "by": self.server, "at": rfc3339_now() });
        if self.store.claim_migration(name, to_bytes(&claim)).await?.is_none() {
            tracing::info!(migration = name, "Migration claimed by another server.");
            return Ok(());
        }
        let report = self.import(&file.bytes).await;
        tracing::info!(
            migration = name,
            created = report.created,
            updated = report.updated,
            unchanged = report.unchanged,
            failed = report.failed.len(),
            "Migration applied."
        );
        for why in &report.failed {
            tracing::warn!(migration = name, record = %why, "Migration record skipped.");
        }
        metrics::counter!(names::ARTIFACTS_RELOAD_TOTAL, "kind" => "migration", "result" => "applied")
            .increment(1);
        let done = serde_json::json!({
            "state": "applied", "by": self.server, "at": rfc3339_now(), "report": report,
        });
        self.store.record_migration(name, to_bytes(&done)).await
    }

    /// Upserts every record of a JSON-lines file; blank lines are skipped.
    pub async fn import(&self, jsonl: &[u8]) -> ImportReport {
        let mut report = ImportReport::default();
        for (n, line) in jsonl.split(|&b| b == b'\n').enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let result = match serde_json::from_slice::<Record>(line) {
                Ok(Record::Voice(v)) => self.upsert(v).await,
                Ok(Record::PronunciationDict(d)) => self.upsert(d).await,
                Err(e) => Err(e.to_string()),
            };
            match result {
                Ok(Upsert::Created) => report.created += 1,
                Ok(Upsert::Updated) => report.updated += 1,
                Ok(Upsert::Unchanged) => report.unchanged += 1,
                Err(why) => report.failed.push(format!("line {}: {why}", n + 1)),
            }
        }
        report
    }

    /// Creates the document, or replaces it if it differs; retries a lost race a few times.
    pub async fn upsert<T: Doc>(&self, mut doc: T) -> Result<Upsert, String> {
        let id = doc.id().to_owned();
        if !chorus_artifacts::valid_id(&id) {
            return Err(format!("invalid id '{}'", crate::error::echo(&id)));
        }
        doc.check(&id)?;
        if T::KIND == DocKind::Voice && self.voices.is_builtin(&id) {
            return Err(format!("'{id}' is a built-in voice"));
        }
        for _ in 0..5 {
            let current = self.store.get(T::KIND, &id).await.map_err(|e| e.to_string())?;
            let result = match current {
                None => self.store.create(T::KIND, &id, to_bytes(&doc)).await.map(|e| (Upsert::Created, e)),
                Some(cur) => {
                    let same = serde_json::from_slice::<T>(&cur.bytes)
                        .ok()
                        .and_then(|mut c| c.check(&id).ok().map(|()| c))
                        .is_some_and(|c| c == doc);
                    if same {
                        T::cache(self).put_stored(doc.clone(), cur.etag);
                        return Ok(Upsert::Unchanged);
                    }
                    self.store
                        .update(T::KIND, &id, to_bytes(&doc), &cur.etag)
                        .await
                        .map(|e| (Upsert::Updated, e))
                }
            };
            match result {
                Ok((what, etag)) => {
                    T::cache(self).put_stored(doc.clone(), etag);
                    return Ok(what);
                }
                Err(
                    ArtifactError::AlreadyExists(_) | ArtifactError::Conflict(_) | ArtifactError::NotFound(_),
                ) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        Err(format!("'{id}' kept changing while it was imported"))
    }

    /// The stored documents, as records: every one, or only the ids given per kind.
    pub async fn export(
        &self,
        voices: Option<&[String]>,
        dicts: Option<&[String]>,
    ) -> Result<Vec<Record>, ArtifactError> {
        let mut records = Vec::new();
        for v in self.export_kind::<Voice>(voices).await? {
            records.push(Record::Voice(v));
        }
        for d in self.export_kind::<PronunciationDict>(dicts).await? {
            records.push(Record::PronunciationDict(d));
        }
        Ok(records)
    }

    async fn export_kind<T: Doc>(&self, only: Option<&[String]>) -> Result<Vec<T>, ArtifactError> {
        let ids: Vec<String> = match only {
            Some(ids) => ids.to_vec(),
            None => self.store.list(T::KIND).await?.into_iter().map(|e| e.id).collect(),
        };
        let mut docs = Vec::new();
        for id in ids {
            let path = ArtifactStore::doc_path(T::KIND, &id);
            let got =
                self.store.get(T::KIND, &id).await?.ok_or_else(|| ArtifactError::NotFound(path.clone()))?;
            match serde_json::from_slice::<T>(&got.bytes).map_err(|e| e.to_string()).and_then(|mut d| {
                d.check(&id)?;
                Ok(d)
            }) {
                Ok(doc) => docs.push(doc),
                Err(why) => tracing::warn!(%path, error = %why, "Malformed artifact not exported."),
            }
        }
        Ok(docs)
    }
}

/// Loads the store once, then (when `hot_reload`) again on every change notification or `interval`, until
/// `stop` changes.
pub fn spawn_reloader(
    artifacts: Arc<Artifacts>,
    interval: Duration,
    hot_reload: bool,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if artifacts.store.is_memory() || !hot_reload {
            return;
        }
        let mut watcher = artifacts.store.watcher(interval);
        tracing::info!(
            store = %artifacts.store, interval_ms = interval.as_millis() as u64,
            notifications = watcher.notifies(), "Hot reload of the artifact store is on."
        );
        loop {
            tokio::select! {
                () = watcher.changed() => {}
                _ = stop.changed() => return,
            }
            artifacts.sync().await;
        }
    })
}
