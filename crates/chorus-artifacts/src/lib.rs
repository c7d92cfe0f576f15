//! The artifact store: voices, pronunciation dictionaries, migration files and voice models, in a local directory
//! or an S3 / GCS bucket, through the [`object_store`] crate.
//!
//! Layout under the store's root (a directory, or `bucket/prefix`):
//!
//! ```text
//! voices/<id>.json                  one voice preset (JSON document)
//! pronunciation-dicts/<id>.json     one pronunciation dictionary
//! models/<model-id>/...             voice models (ONNX file + JSON config), read by workers
//! migrations/<name>.jsonl           migration files (records of voices and dictionaries), applied once
//! migrations/applied/<name>.json    the record that a migration was applied (created conditionally)
//! ```
//!
//! Writes are conditional so that two API servers sharing a store never silently overwrite each other:
//! [`ArtifactStore::create`] succeeds only if the document is absent, [`ArtifactStore::update`] only if its
//! entity tag still matches the one the writer read. S3 and GCS do this natively (`If-None-Match: *`,
//! `If-Match`); `object_store`'s `LocalFileSystem` has create-if-absent (a hard link that fails if the target
//! exists) but no update-if-match, so for a directory the compare-and-swap is done here: an exclusive advisory
//! lock on `<root>/.chorus-artifacts.lock` (`flock`, shared by every process using the directory) is held while
//! the current entity tag is compared and the new version is renamed into place. Every write of a document is a
//! rename of a fresh file, so its entity tag (inode, modification time, size) changes on every write.
//!
//! [`Watcher`] tells a reloader when to look again: file-system notifications for a directory (plus a slow poll as
//! a safety net), a listing poll for buckets.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};

mod watch;

pub use object_store;
pub use watch::Watcher;

/// The default store of `chorus serve`: a directory beside the working directory.
pub const DEFAULT_LOCAL_STORE: &str = "./data/artifacts";
/// Name of the lock file of a local store (at its root; never listed as a document).
pub const LOCK_FILE: &str = ".chorus-artifacts.lock";

/// An artifact store error.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// The location is not a directory, `s3://`, `gs://` or `file://` URL, or its client cannot be built.
    #[error("invalid artifact store location '{location}': {reason}")]
    Location { location: String, reason: String },
    /// A document id that cannot name a file.
    #[error("invalid id '{0}': use 1-128 letters, digits, '-', '_' or '.', not starting with '.'")]
    InvalidId(String),
    /// Create-if-absent found the document there.
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// Update-if-match found another version: someone else changed it.
    #[error("{0} was changed concurrently (its version is not the one read)")]
    Conflict(String),
    #[error("{0} does not exist")]
    NotFound(String),
    #[error("artifact store: {0}")]
    Store(#[from] object_store::Error),
    #[error("artifact store lock: {0}")]
    Io(#[from] std::io::Error),
}

/// The kinds of JSON document the API servers keep in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DocKind {
    Voice,
    Dict,
}

impl DocKind {
    pub const ALL: [DocKind; 2] = [DocKind::Voice, DocKind::Dict];

    /// The folder of this kind under the store's root.
    pub fn dir(self) -> &'static str {
        match self {
            DocKind::Voice => "voices",
            DocKind::Dict => "pronunciation-dicts",
        }
    }

    /// The `kind` label of the metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            DocKind::Voice => "voice",
            DocKind::Dict => "dict",
        }
    }
}

/// One document as listed: its id and its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: String,
    /// The entity tag of this version (opaque; changes on every write).
    pub etag: String,
    /// Where it lies, for logs (`voices/<id>.json` under the store).
    pub path: String,
    /// When this version was written.
    pub modified: std::time::SystemTime,
}

/// A document's bytes and the entity tag of that version.
#[derive(Debug, Clone)]
pub struct Versioned {
    pub bytes: Bytes,
    pub etag: String,
}

/// What [`open`] returns: the object store, the prefix every key lives under, and, for a directory, its path.
#[derive(Debug, Clone)]
pub struct Opened {
    pub store: Arc<dyn ObjectStore>,
    /// The prefix inside the bucket (empty for a directory: the store is rooted there).
    pub prefix: Path,
    /// The root directory of a local store (`None` for buckets).
    pub local_dir: Option<PathBuf>,
}

/// Applies `options` (key, value) to an object-store builder whose configuration keys parse as `K`.
fn with_options<B, K>(builder: B, options: &[(&str, &str)], set: fn(B, K, &str) -> B) -> Result<B, String>
where
    K: std::str::FromStr,
    K::Err: std::fmt::Display,
{
    options.iter().try_fold(builder, |builder, (key, value)| {
        let key = key.parse::<K>().map_err(|e| e.to_string())?;
        Ok(set(builder, key, value))
    })
}

/// A bucket's store as built, rooted at `prefix` inside the bucket.
fn in_bucket<S: ObjectStore>(store: object_store::Result<S>, prefix: &str) -> Result<Opened, String> {
    let store = store.map_err(|e| e.to_string())?;
    let prefix = Path::parse(prefix).map_err(|e| e.to_string())?;
    Ok(Opened { store: Arc::new(store), prefix, local_dir: None })
}

/// Opens a store location: a directory path (created if missing), `file:///abs/path`, `s3://bucket[/prefix]` or
/// `gs://bucket[/prefix]`.
///
/// Buckets take their credentials from the standard environment: for S3 `AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION` / `AWS_DEFAULT_REGION`, web identity or instance
/// metadata, with `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT`) and `AWS_ALLOW_HTTP=true` for S3-compatible servers; for
/// GCS `GOOGLE_APPLICATION_CREDENTIALS` / `GOOGLE_SERVICE_ACCOUNT` or the metadata server. The worker side reuses
/// this to read `models/`.
pub fn open(location: &str) -> Result<Opened, ArtifactError> {
    open_with_options(location, &[])
}

/// [`open`] with `object_store` configuration keys set on top of the environment, e.g. `("aws_endpoint",
/// "http://127.0.0.1:9000")`, `("aws_allow_http", "true")` or `("google_service_account", "/key.json")`. An
/// unknown key is an error.
pub fn open_with_options(location: &str, options: &[(&str, &str)]) -> Result<Opened, ArtifactError> {
    let bad = |reason: String| ArtifactError::Location { location: location.to_owned(), reason };
    let location = location.trim();
    if location.is_empty() {
        return Err(bad("empty".into()));
    }
    if let Some(rest) = location.strip_prefix("s3://") {
        let (bucket, prefix) = split_bucket(rest).ok_or_else(|| bad("no bucket name".into()))?;
        let mut builder = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
        // `from_env` reads AWS_ENDPOINT; the AWS SDKs' name for it is AWS_ENDPOINT_URL.
        if std::env::var_os("AWS_ENDPOINT").is_none()
            && let Ok(endpoint) =
                std::env::var("AWS_ENDPOINT_URL_S3").or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
        {
            builder = builder.with_endpoint(endpoint);
        }
        let builder =
            with_options(builder, options, |b, key, value| b.with_config(key, value)).map_err(bad)?;
        return in_bucket(builder.build(), prefix).map_err(bad);
    }
    if let Some(rest) = location.strip_prefix("gs://") {
        let (bucket, prefix) = split_bucket(rest).ok_or_else(|| bad("no bucket name".into()))?;
        let builder = object_store::gcp::GoogleCloudStorageBuilder::from_env().with_bucket_name(bucket);
        let builder =
            with_options(builder, options, |b, key, value| b.with_config(key, value)).map_err(bad)?;
        return in_bucket(builder.build(), prefix).map_err(bad);
    }
    if location.contains("://") && !location.starts_with("file://") {
        return Err(bad("use a directory, file://, s3:// or gs://".into()));
    }
    let dir = PathBuf::from(location.strip_prefix("file://").unwrap_or(location));
    for kind in DocKind::ALL {
        std::fs::create_dir_all(dir.join(kind.dir())).map_err(|e| bad(format!("cannot create it: {e}")))?;
    }
    std::fs::create_dir_all(dir.join("migrations")).map_err(|e| bad(format!("cannot create it: {e}")))?;
    let dir = dir.canonicalize().map_err(|e| bad(e.to_string()))?;
    let store = object_store::local::LocalFileSystem::new_with_prefix(&dir)
        .map_err(|e| bad(e.to_string()))?
        .with_automatic_cleanup(true);
    Ok(Opened { store: Arc::new(store), prefix: Path::default(), local_dir: Some(dir) })
}

/// `bucket/some/prefix` -> (`bucket`, `some/prefix`).
fn split_bucket(rest: &str) -> Option<(&str, &str)> {
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    (!bucket.is_empty()).then_some((bucket, prefix.trim_matches('/')))
}

/// True for ids that can name a file everywhere: 1-128 of `[A-Za-z0-9._-]`, not starting with `.`.
pub fn valid_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && !id.starts_with('.')
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The artifact store of an API server: JSON documents by kind and id, migration files, conditional writes.
#[derive(Debug, Clone)]
pub struct ArtifactStore {
    opened: Opened,
    location: String,
    memory: bool,
}

impl std::fmt::Display for ArtifactStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.location)
    }
}

impl ArtifactStore {
    /// Opens `location` (see [`open`]).
    pub fn open(location: &str) -> Result<Self, ArtifactError> {
        Self::open_with_options(location, &[])
    }

    /// Opens `location` with extra `object_store` configuration (see [`open_with_options`]).
    pub fn open_with_options(location: &str, options: &[(&str, &str)]) -> Result<Self, ArtifactError> {
        let opened = open_with_options(location, options)?;
        Ok(Self { opened, location: location.trim().to_owned(), memory: false })
    }

    /// A store in memory (nothing persists; for `chorus serve` without a store and for tests).
    pub fn in_memory() -> Self {
        let store = Arc::new(object_store::memory::InMemory::new());
        Self {
            opened: Opened { store, prefix: Path::default(), local_dir: None },
            location: "memory".into(),
            memory: true,
        }
    }

    /// True for the in-memory store (nothing to reload from).
    pub fn is_memory(&self) -> bool {
        self.memory
    }

    /// The underlying object store and prefix (for the worker side: `models/`).
    pub fn opened(&self) -> &Opened {
        &self.opened
    }

    /// True for a local directory (watched with file-system notifications).
    pub fn is_local(&self) -> bool {
        self.opened.local_dir.is_some()
    }

    fn key(&self, rel: &str) -> Path {
        let mut key = self.opened.prefix.clone();
        for part in rel.split('/') {
            key = key.clone().join(part);
        }
        key
    }

    fn doc_key(&self, kind: DocKind, id: &str) -> Result<Path, ArtifactError> {
        if !valid_id(id) {
            return Err(ArtifactError::InvalidId(id.to_owned()));
        }
        Ok(self.key(&format!("{}/{id}.json", kind.dir())))
    }

    /// The path relative to the store's root, for logs.
    fn rel(&self, key: &Path) -> String {
        let prefix = self.opened.prefix.as_ref();
        let full = key.as_ref();
        full.strip_prefix(prefix).map_or(full, |r| r.trim_start_matches('/')).to_owned()
    }

    /// Every `<dir>/<name><suffix>` directly under `dir`: (name, etag, relative path).
    async fn list_dir(&self, dir: &str, suffix: &str) -> Result<Vec<Entry>, ArtifactError> {
        let folder = self.key(dir);
        let metas: Vec<object_store::ObjectMeta> =
            self.opened.store.list(Some(&folder)).try_collect().await?;
        let mut entries: Vec<Entry> = metas
            .into_iter()
            .filter_map(|meta| {
                let rel = self.rel(&meta.location);
                let name = rel.strip_prefix(dir)?.strip_prefix('/')?;
                let id = name.strip_suffix(suffix)?;
                (!id.contains('/') && valid_id(id)).then(|| Entry {
                    id: id.to_owned(),
                    etag: meta.e_tag.clone().unwrap_or_else(|| fallback_etag(&meta)),
                    path: rel.clone(),
                    modified: meta.last_modified.into(),
                })
            })
            .collect();
        entries.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(entries)
    }

    /// The documents of `kind`, by id, with their versions.
    pub async fn list(&self, kind: DocKind) -> Result<Vec<Entry>, ArtifactError> {
        self.list_dir(kind.dir(), ".json").await
    }

    /// The path of a document relative to the store's root (`voices/<id>.json`).
    pub fn doc_path(kind: DocKind, id: &str) -> String {
        format!("{}/{id}.json", kind.dir())
    }

    async fn get_key(&self, key: &Path) -> Result<Option<Versioned>, ArtifactError> {
        match self.opened.store.get(key).await {
            Ok(result) => {
                let etag = result.meta.e_tag.clone().unwrap_or_else(|| fallback_etag(&result.meta));
                let bytes = result.bytes().await?;
                Ok(Some(Versioned { bytes, etag }))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// A document and its version; `None` if absent.
    pub async fn get(&self, kind: DocKind, id: &str) -> Result<Option<Versioned>, ArtifactError> {
        let key = self.doc_key(kind, id)?;
        self.get_key(&key).await
    }

    async fn create_key(&self, key: &Path, bytes: Bytes) -> Result<String, ArtifactError> {
        let opts = PutOptions::from(PutMode::Create);
        match self.opened.store.put_opts(key, PutPayload::from(bytes), opts).await {
            Ok(put) => Ok(self.etag_after_put(key, put.e_tag).await?),
            Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => {
                Err(ArtifactError::AlreadyExists(self.rel(key)))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Writes a new document; [`ArtifactError::AlreadyExists`] if one with this id is there. Returns its etag.
    pub async fn create(&self, kind: DocKind, id: &str, bytes: Bytes) -> Result<String, ArtifactError> {
        let key = self.doc_key(kind, id)?;
        self.create_key(&key, bytes).await
    }

    /// Replaces a document if its current version is `expected`; [`ArtifactError::Conflict`] if it changed,
    /// [`ArtifactError::NotFound`] if it is gone. Returns the new etag.
    pub async fn update(
        &self,
        kind: DocKind,
        id: &str,
        bytes: Bytes,
        expected: &str,
    ) -> Result<String, ArtifactError> {
        let key = self.doc_key(kind, id)?;
        if self.opened.local_dir.is_some() {
            let _lock = self.lock().await?;
            let current =
                self.head_etag(&key).await?.ok_or_else(|| ArtifactError::NotFound(self.rel(&key)))?;
            if current != expected {
                return Err(ArtifactError::Conflict(self.rel(&key)));
            }
            let put =
                self.opened.store.put_opts(&key, PutPayload::from(bytes), PutMode::Overwrite.into()).await?;
            return self.etag_after_put(&key, put.e_tag).await;
        }
        let mode = PutMode::Update(UpdateVersion { e_tag: Some(expected.to_owned()), version: None });
        match self.opened.store.put_opts(&key, PutPayload::from(bytes), mode.into()).await {
            Ok(put) => self.etag_after_put(&key, put.e_tag).await,
            Err(object_store::Error::Precondition { .. } | object_store::Error::AlreadyExists { .. }) => {
                // S3 answers 412 both for "changed" and for "gone": tell them apart.
                match self.head_etag(&key).await? {
                    Some(_) => Err(ArtifactError::Conflict(self.rel(&key))),
                    None => Err(ArtifactError::NotFound(self.rel(&key))),
                }
            }
            Err(object_store::Error::NotFound { .. }) => Err(ArtifactError::NotFound(self.rel(&key))),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes a document; when `expected` is given, only if its version is still that one.
    ///
    /// For a directory the check and the delete are atomic (under the lock); for buckets, where `object_store`
    /// has no conditional delete, the version is checked just before the delete (a write landing in between is
    /// lost: deletes are rare and explicit).
    pub async fn delete(&self, kind: DocKind, id: &str, expected: Option<&str>) -> Result<(), ArtifactError> {
        let key = self.doc_key(kind, id)?;
        let _lock = match self.opened.local_dir {
            Some(_) => Some(self.lock().await?),
            None => None,
        };
        let current = self.head_etag(&key).await?.ok_or_else(|| ArtifactError::NotFound(self.rel(&key)))?;
        if expected.is_some_and(|e| e != current) {
            return Err(ArtifactError::Conflict(self.rel(&key)));
        }
        match self.opened.store.delete(&key).await {
            Ok(()) => Ok(()),
            Err(object_store::Error::NotFound { .. }) => Err(ArtifactError::NotFound(self.rel(&key))),
            Err(e) => Err(e.into()),
        }
    }

    /// Migration files `migrations/<name>.jsonl`, by name (without `.jsonl`).
    pub async fn list_migrations(&self) -> Result<Vec<Entry>, ArtifactError> {
        self.list_dir("migrations", ".jsonl").await
    }

    /// The bytes of `migrations/<name>.jsonl`.
    pub async fn get_migration(&self, name: &str) -> Result<Option<Versioned>, ArtifactError> {
        if !valid_id(name) {
            return Err(ArtifactError::InvalidId(name.to_owned()));
        }
        self.get_key(&self.key(&format!("migrations/{name}.jsonl"))).await
    }

    /// Writes `migrations/<name>.jsonl` (replacing it).
    pub async fn put_migration(&self, name: &str, bytes: Bytes) -> Result<(), ArtifactError> {
        if !valid_id(name) {
            return Err(ArtifactError::InvalidId(name.to_owned()));
        }
        let key = self.key(&format!("migrations/{name}.jsonl"));
        self.opened.store.put(&key, PutPayload::from(bytes)).await?;
        Ok(())
    }

    /// True if `migrations/applied/<name>.json` exists.
    pub async fn migration_claimed(&self, name: &str) -> Result<bool, ArtifactError> {
        let key = self.key(&format!("migrations/applied/{name}.json"));
        match self.opened.store.head(&key).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Claims a migration by creating `migrations/applied/<name>.json` if absent: true if this caller won (and
    /// must apply it), false if another server already claimed it. Returns the marker's etag when won.
    pub async fn claim_migration(&self, name: &str, record: Bytes) -> Result<Option<String>, ArtifactError> {
        if !valid_id(name) {
            return Err(ArtifactError::InvalidId(name.to_owned()));
        }
        match self.create_key(&self.key(&format!("migrations/applied/{name}.json")), record).await {
            Ok(etag) => Ok(Some(etag)),
            Err(ArtifactError::AlreadyExists(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Replaces the applied-migration record (with the outcome, once applied).
    pub async fn record_migration(&self, name: &str, record: Bytes) -> Result<(), ArtifactError> {
        let key = self.key(&format!("migrations/applied/{name}.json"));
        self.opened.store.put(&key, PutPayload::from(record)).await?;
        Ok(())
    }

    /// A watcher that wakes on changes: file-system notifications plus a poll every `interval` for a directory,
    /// a poll every `interval` for a bucket.
    pub fn watcher(&self, interval: Duration) -> Watcher {
        Watcher::new(self.opened.local_dir.as_deref(), interval)
    }

    async fn head_etag(&self, key: &Path) -> Result<Option<String>, ArtifactError> {
        match self.opened.store.head(key).await {
            Ok(meta) => Ok(Some(meta.e_tag.clone().unwrap_or_else(|| fallback_etag(&meta)))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn etag_after_put(&self, key: &Path, etag: Option<String>) -> Result<String, ArtifactError> {
        match etag {
            Some(etag) => Ok(etag),
            None => self.head_etag(key).await?.ok_or_else(|| ArtifactError::NotFound(self.rel(key))),
        }
    }

    /// The exclusive lock of a local store (held until the guard drops).
    async fn lock(&self) -> Result<std::fs::File, ArtifactError> {
        let Some(dir) = self.opened.local_dir.clone() else {
            return Err(ArtifactError::Io(std::io::Error::other("not a local store")));
        };
        let file = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(dir.join(LOCK_FILE))?;
            file.lock()?;
            Ok(file)
        })
        .await
        .map_err(|e| ArtifactError::Io(std::io::Error::other(e)))??;
        Ok(file)
    }
}

/// An etag for a store that gives none: modification time and size.
fn fallback_etag(meta: &object_store::ObjectMeta) -> String {
    format!("{}-{}", meta.last_modified.timestamp_nanos_opt().unwrap_or_default(), meta.size)
}
