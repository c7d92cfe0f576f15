//! Voice models hot-added from, and removed with, an artifact store (a directory or a bucket, through
//! `object_store`).
//!
//! The store holds one directory per model: `models/<model-id>/` with a Piper config `<name>.onnx.json` and its
//! graph beside it, `<name>.dur.onnx` (durations exposed by `scripts/expose_durations.py`, preferred: word and
//! phoneme timestamps) or `<name>.onnx`. `<name>` is free; the directory name is the model id (letters, digits,
//! `.`, `_`, `-`; names starting with `.` are skipped: staging directories). The watcher lists `models/` every
//! interval and compares the files' sizes and etags with what it loaded:
//!
//! - a new directory, complete and unchanged for one whole interval (so a copy in progress is not read half-way),
//!   is loaded into fresh sessions on the model's own threads, warmed up, and only then announced by the worker;
//! - a changed one (another etag) is loaded again and swapped in; jobs already running finish on the old sessions;
//! - a removed one stops being announced at once, its new jobs are refused, jobs in flight finish (bounded by the
//!   drain timeout), then its sessions are unloaded;
//! - an incomplete or broken one is logged with its path and skipped; it is tried again when its files change.
//!   A model already served keeps serving while its directory is being replaced.
//!
//! Models the worker loaded at start from its own models directory are never touched (a store directory of the
//! same id is ignored, with a warning).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chorus_proto::metrics as names;
use futures_util::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use tokio::sync::mpsc;

use chorus_engine::PiperVoice;

use crate::EngineWorker;

/// The store prefix of the model directories.
pub const MODELS_PREFIX: &str = "models";

/// How the watcher runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelStoreConfig {
    /// Time between two listings of `models/`.
    pub interval: Duration,
    /// Keep listing (hot reload). When false, the models present at start are loaded once and nothing more.
    pub hot_reload: bool,
    /// The store's root on this machine when the store is a local directory: its files are used in place.
    /// `None` (a bucket): the files are downloaded into `cache_dir` first.
    pub local_root: Option<PathBuf>,
    /// Where downloaded models are kept (`<cache_dir>/<model-id>/...`).
    pub cache_dir: PathBuf,
    /// How long a removed model's jobs in flight may take to finish before its sessions are unloaded anyway.
    pub drain_timeout: Duration,
    /// Serve only the store's models whose id matches one of these patterns (`*` matches any run of characters);
    /// empty: every model. A pool of workers for some models then does not load the others.
    pub only: Vec<String>,
}

/// Whether `id` matches `pattern`, where `*` matches any run of characters (none included).
pub fn id_matches(pattern: &str, id: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = id.strip_prefix(first) else { return false };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else { return rest.is_empty() };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// One file of a model directory, as the store lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The file name (inside `models/<model-id>/`).
    pub name: String,
    pub size: u64,
    pub etag: Option<String>,
}

/// What one listing found: the files of every `models/<model-id>/` directory, by model id.
pub type Scan = BTreeMap<String, Vec<Listed>>;

/// The files a complete model directory is loaded from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFiles {
    /// `<name>.onnx.json`
    pub config: String,
    /// `<name>.dur.onnx` or `<name>.onnx`
    pub graph: String,
    /// `<name>.enc.onnx` and `<name>.dec.onnx` when both are there: the graph split for shape buckets
    /// (`scripts/split_piper.py`); without them the model runs unbucketed.
    pub split: Option<(String, String)>,
    /// Names, sizes and etags of them all: a change means new content.
    pub signature: String,
}

impl ModelFiles {
    /// Every file the model is loaded from.
    pub fn names(&self) -> Vec<&String> {
        let mut names = vec![&self.config, &self.graph];
        if let Some((enc, dec)) = &self.split {
            names.extend([enc, dec]);
        }
        names
    }
}

/// The files to load from a model directory's listing, or why it is not complete yet.
pub fn model_files(files: &[Listed]) -> Result<ModelFiles, String> {
    let configs: Vec<&Listed> = files.iter().filter(|f| f.name.ends_with(".onnx.json")).collect();
    let config = match configs.as_slice() {
        [] => return Err("no <name>.onnx.json config".into()),
        [one] => *one,
        [..] => return Err("more than one .onnx.json config".into()),
    };
    let stem = config.name.trim_end_matches(".onnx.json");
    let find = |name: String| files.iter().find(|f| f.name == name);
    let graph = find(format!("{stem}.dur.onnx"))
        .or_else(|| find(format!("{stem}.onnx")))
        .ok_or_else(|| format!("no {stem}.dur.onnx or {stem}.onnx beside {}", config.name))?;
    if let Some(empty) = [config, graph].into_iter().find(|f| f.size == 0) {
        return Err(format!("{} is empty", empty.name));
    }
    let sign = |f: &Listed| format!("{}:{}:{}", f.name, f.size, f.etag.as_deref().unwrap_or(""));
    let part = |kind: &str| find(format!("{stem}.{kind}.onnx")).filter(|f| f.size > 0);
    let split = part("enc").zip(part("dec"));
    let mut signature = format!("{}|{}", sign(config), sign(graph));
    if let Some((enc, dec)) = split {
        signature = format!("{signature}|{}|{}", sign(enc), sign(dec));
    }
    Ok(ModelFiles {
        config: config.name.clone(),
        graph: graph.name.clone(),
        split: split.map(|(e, d)| (e.name.clone(), d.name.clone())),
        signature,
    })
}

/// A model id the watcher accepts: a directory name safe as a file name and in logs.
pub fn valid_model_id(id: &str) -> bool {
    !id.is_empty()
        && !id.starts_with('.')
        && id.len() <= 128
        && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// What the watcher does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Load (or reload) a model from these files.
    Load { id: String, files: ModelFiles },
    /// Drain and unload a model whose directory is gone.
    Remove { id: String },
}

/// The watcher's memory between listings; [`Tracker::plan`] turns a listing into actions.
#[derive(Debug, Default)]
pub struct Tracker {
    /// Served from elsewhere (the worker's own models directory): never loaded nor removed here.
    fixed: BTreeSet<String>,
    /// Loaded from the store, with the signature loaded.
    active: BTreeMap<String, String>,
    /// Signatures that failed to load: not tried again until the files change.
    failed: BTreeMap<String, String>,
    /// Models with a load or a removal in progress.
    busy: BTreeSet<String>,
    /// Each complete directory's signature in the previous listing.
    previous: BTreeMap<String, String>,
    /// What was last logged about each directory, so that a problem is logged once, not every interval.
    reported: BTreeMap<String, String>,
    /// Only ids matching one of these are served (all when empty).
    only: Vec<String>,
}

impl Tracker {
    /// A tracker that leaves the `fixed` models alone.
    pub fn new(fixed: impl IntoIterator<Item = String>) -> Self {
        Self { fixed: fixed.into_iter().collect(), ..Self::default() }
    }

    /// Serves only the ids matching one of `patterns` (see [`id_matches`]); empty: all.
    pub fn only(mut self, patterns: Vec<String>) -> Self {
        self.only = patterns;
        self
    }

    /// The actions one listing calls for. With `settle`, a new or changed directory is loaded only when the
    /// previous listing saw it the same (its copy is over); without, at once. Models with an action in progress
    /// are skipped; the returned ones are marked in progress until [`Tracker::done`].
    pub fn plan(&mut self, scan: &Scan, settle: bool) -> Vec<Action> {
        let mut actions = Vec::new();
        let mut seen = BTreeMap::new();
        for (id, files) in scan {
            if id.starts_with('.') {
                // Hidden: a staging directory being filled before it is renamed into place.
                continue;
            }
            if self.fixed.contains(id) {
                self.report(id, "a model of this id is installed on the worker; the store's copy is ignored");
                continue;
            }
            if !self.only.is_empty() && !self.only.iter().any(|p| id_matches(p, id)) {
                // Another pool's model: not an error, so not logged.
                continue;
            }
            if !valid_model_id(id) {
                self.report(id, "not a valid model id (letters, digits, '.', '_', '-')");
                continue;
            }
            let files = match model_files(files) {
                Ok(f) => f,
                Err(why) => {
                    self.report(id, &format!("incomplete: {why}"));
                    continue;
                }
            };
            seen.insert(id.clone(), files.signature.clone());
            if self.busy.contains(id)
                || self.active.get(id) == Some(&files.signature)
                || self.failed.get(id) == Some(&files.signature)
            {
                continue;
            }
            if settle && self.previous.get(id) != Some(&files.signature) {
                continue;
            }
            self.reported.remove(id);
            self.busy.insert(id.clone());
            actions.push(Action::Load { id: id.clone(), files });
        }
        for id in self.active.keys() {
            if !scan.contains_key(id) && !self.busy.contains(id) {
                actions.push(Action::Remove { id: id.clone() });
            }
        }
        for action in &actions {
            if let Action::Remove { id } = action {
                self.busy.insert(id.clone());
            }
        }
        self.failed.retain(|id, _| scan.contains_key(id));
        self.reported.retain(|id, _| scan.contains_key(id));
        self.previous = seen;
        actions
    }

    /// Records how an action ended: `Ok(true)` loaded, `Ok(false)` removed, `Err` failed to load.
    pub fn done(&mut self, id: &str, signature: &str, outcome: Result<bool, ()>) {
        self.busy.remove(id);
        match outcome {
            Ok(true) => {
                self.failed.remove(id);
                self.active.insert(id.to_owned(), signature.to_owned());
            }
            Ok(false) => {
                self.active.remove(id);
            }
            Err(()) => {
                self.failed.insert(id.to_owned(), signature.to_owned());
            }
        }
    }

    /// Ids loaded from the store.
    pub fn active(&self) -> impl Iterator<Item = &String> {
        self.active.keys()
    }

    fn report(&mut self, id: &str, message: &str) {
        if self.reported.get(id).is_some_and(|m| m == message) {
            return;
        }
        tracing::warn!(path = %format!("{MODELS_PREFIX}/{id}/"), "Model directory skipped: {message}.");
        self.reported.insert(id.to_owned(), message.to_owned());
    }
}

/// Lists `models/` in the store, grouped by model directory. Files deeper than `models/<id>/<file>` and files
/// directly under `models/` are ignored.
pub async fn scan(store: &dyn ObjectStore) -> Result<Scan, object_store::Error> {
    let prefix = Path::from(MODELS_PREFIX);
    let mut listing = store.list(Some(&prefix));
    let mut scan = Scan::new();
    while let Some(meta) = listing.next().await {
        let meta = match meta {
            Ok(m) => m,
            Err(object_store::Error::NotFound { .. }) => continue,
            Err(e) => return Err(e),
        };
        let parts: Vec<String> = meta.location.parts().map(|p| p.as_ref().to_owned()).collect();
        let [_, id, name] = parts.as_slice() else { continue };
        scan.entry(id.clone()).or_default().push(Listed {
            name: name.clone(),
            size: meta.size,
            etag: meta.e_tag.clone(),
        });
    }
    Ok(scan)
}

/// A finished action, reported back to the watcher's loop.
struct Finished {
    id: String,
    signature: String,
    outcome: Result<bool, ()>,
}

/// Watches the store's `models/` and loads, swaps and unloads the worker's models to match.
pub struct ModelWatcher {
    store: Arc<dyn ObjectStore>,
    worker: Arc<EngineWorker>,
    config: ModelStoreConfig,
    tracker: Tracker,
}

impl std::fmt::Debug for ModelWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelWatcher")
            .field("store", &self.store.to_string())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ModelWatcher {
    /// A watcher for `worker`; the models it serves now are left alone.
    pub fn new(store: Arc<dyn ObjectStore>, worker: Arc<EngineWorker>, config: ModelStoreConfig) -> Self {
        let tracker = Tracker::new(worker.model_ids()).only(config.only.clone());
        Self { store, worker, config, tracker }
    }

    /// Runs until `stop` resolves: lists the store every interval (once only without hot reload) and applies
    /// the changes. Loads and drains run in the background, so a slow one holds up nothing else.
    pub async fn run(mut self, stop: impl std::future::Future<Output = ()> + Send) {
        tracing::info!(
            store = %self.store,
            interval_ms = self.config.interval.as_millis() as u64,
            hot_reload = self.config.hot_reload,
            "Watching the artifact store for voice models."
        );
        let (done_tx, mut done_rx) = mpsc::channel::<Finished>(64);
        let mut tick = tokio::time::interval(self.config.interval.max(Duration::from_millis(50)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut listed_once = false;
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => break,
                Some(f) = done_rx.recv() => self.tracker.done(&f.id, &f.signature, f.outcome),
                _ = tick.tick(), if self.config.hot_reload || !listed_once => {
                    let scan = match scan(self.store.as_ref()).await {
                        Ok(s) => s,
                        Err(e) => {
                            tracing::warn!(store = %self.store, error = %e, "Cannot list the models in the store.");
                            continue;
                        }
                    };
                    listed_once = true;
                    for action in self.tracker.plan(&scan, self.config.hot_reload) {
                        let task = Task {
                            store: Arc::clone(&self.store),
                            worker: Arc::clone(&self.worker),
                            config: self.config.clone(),
                        };
                        let done = done_tx.clone();
                        tokio::spawn(async move {
                            let finished = task.apply(action).await;
                            let _ = done.send(finished).await;
                        });
                    }
                }
            }
        }
    }
}

/// What an action needs, moved into its task.
struct Task {
    store: Arc<dyn ObjectStore>,
    worker: Arc<EngineWorker>,
    config: ModelStoreConfig,
}

impl Task {
    async fn apply(self, action: Action) -> Finished {
        match action {
            Action::Load { id, files } => {
                let outcome = match self.load(&id, &files).await {
                    Ok(()) => {
                        metrics::counter!(names::ARTIFACTS_RELOAD_TOTAL, "kind" => "model", "result" => "loaded")
                            .increment(1);
                        Ok(true)
                    }
                    Err(e) => {
                        tracing::warn!(
                            path = %format!("{MODELS_PREFIX}/{id}/"),
                            error = %e,
                            "Cannot load a model from the store; it is tried again when its files change."
                        );
                        metrics::counter!(names::ARTIFACTS_RELOAD_TOTAL, "kind" => "model", "result" => "error")
                            .increment(1);
                        Err(())
                    }
                };
                Finished { id, signature: files.signature, outcome }
            }
            Action::Remove { id } => {
                self.remove(&id).await;
                metrics::counter!(names::ARTIFACTS_RELOAD_TOTAL, "kind" => "model", "result" => "removed")
                    .increment(1);
                Finished { id, signature: String::new(), outcome: Ok(false) }
            }
        }
    }

    async fn load(&self, id: &str, files: &ModelFiles) -> Result<(), String> {
        let started = std::time::Instant::now();
        let dir = self.local_dir(id, files).await?;
        let config_path = dir.join(&files.config);
        let worker = Arc::clone(&self.worker);
        let model = id.to_owned();
        // Reading the config, building the sessions and warming them up all block: off the async runtime. The
        // sessions run on the model's own threads (`chorus-model-<id>-<i>`).
        let info = tokio::task::spawn_blocking(move || {
            let mut voice = PiperVoice::load(&config_path).map_err(|e| e.to_string())?;
            voice.id = model;
            worker.add_model(voice).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| format!("the loader stopped: {e}"))??;
        tracing::info!(
            model = %info.id,
            sample_rate = info.sample_rate,
            load_ms = started.elapsed().as_millis() as u64,
            "Model loaded from the store, warm and announced."
        );
        Ok(())
    }

    /// The directory the model's files are read from: in place for a local store, else a fresh download.
    async fn local_dir(&self, id: &str, files: &ModelFiles) -> Result<PathBuf, String> {
        match &self.config.local_root {
            Some(root) => Ok(root.join(MODELS_PREFIX).join(id)),
            None => download(self.store.as_ref(), &self.config.cache_dir, id, files).await,
        }
    }

    async fn remove(&self, id: &str) {
        let retired = self.worker.retire_model(id);
        let in_flight = self.worker.model_jobs(id);
        tracing::info!(model = %id, in_flight, "Model removed from the store: no longer announced; draining.");
        let deadline = tokio::time::Instant::now() + self.config.drain_timeout;
        while retired && self.worker.model_jobs(id) > 0 {
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(
                    model = %id,
                    in_flight = self.worker.model_jobs(id),
                    "Drain timeout: unloading the model under jobs still in flight."
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.worker.unload_model(id);
        if self.config.local_root.is_none() {
            let _ = std::fs::remove_dir_all(self.config.cache_dir.join(id));
        }
        tracing::info!(model = %id, "Model drained and unloaded.");
    }
}

/// Downloads a model's files into `<cache_dir>/<id>/<version>/` and returns that directory; older versions of the
/// model in the cache are deleted.
pub async fn download(
    store: &dyn ObjectStore,
    cache_dir: &FsPath,
    id: &str,
    files: &ModelFiles,
) -> Result<PathBuf, String> {
    let dir = cache_dir.join(id).join(cache_key(&files.signature));
    for name in files.names() {
        let location = Path::from(format!("{MODELS_PREFIX}/{id}/{name}"));
        let chunks = store
            .get(&location)
            .await
            .map(object_store::GetResult::into_stream)
            .map_err(|e| format!("{location}: {e}"))?
            .collect::<Vec<_>>()
            .await;
        let target = dir.join(name);
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || write_chunks(&dir, &target, chunks))
            .await
            .map_err(|e| format!("the download stopped: {e}"))?
            .map_err(|e| format!("{location}: {e}"))?;
    }
    if let Ok(entries) = std::fs::read_dir(cache_dir.join(id)) {
        for entry in entries.flatten() {
            if entry.path() != dir {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    Ok(dir)
}

/// A short, file-name-safe key of a signature (FNV-1a).
fn cache_key(signature: &str) -> String {
    let hash = signature
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    format!("{hash:016x}")
}

/// Writes downloaded chunks to `target` through a temporary file (a reader never sees half a file).
fn write_chunks(
    dir: &FsPath,
    target: &FsPath,
    chunks: Vec<Result<bytes::Bytes, object_store::Error>>,
) -> Result<(), String> {
    use std::io::Write;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let partial = target.with_extension("part");
    let mut file = std::fs::File::create(&partial).map_err(|e| format!("{}: {e}", partial.display()))?;
    for chunk in chunks {
        let chunk = chunk.map_err(|e| e.to_string())?;
        file.write_all(&chunk).map_err(|e| format!("{}: {e}", partial.display()))?;
    }
    file.sync_all().map_err(|e| format!("{}: {e}", partial.display()))?;
    std::fs::rename(&partial, target).map_err(|e| format!("{}: {e}", target.display()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn file(name: &str, size: u64, etag: &str) -> Listed {
        Listed { name: name.into(), size, etag: Some(etag.into()) }
    }

    fn complete(stem: &str, etag: &str) -> Vec<Listed> {
        vec![file(&format!("{stem}.onnx.json"), 100, etag), file(&format!("{stem}.onnx"), 1000, etag)]
    }

    fn ids(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .map(|a| match a {
                Action::Load { id, .. } => format!("load {id}"),
                Action::Remove { id } => format!("remove {id}"),
            })
            .collect()
    }

    #[test]
    fn files_of_a_model_directory() {
        let f = model_files(&complete("voice", "e1")).unwrap();
        assert_eq!((f.config.as_str(), f.graph.as_str()), ("voice.onnx.json", "voice.onnx"));
        // The graph with durations exposed is preferred.
        let mut with_dur = complete("voice", "e1");
        with_dur.push(file("voice.dur.onnx", 1200, "e1"));
        assert_eq!(model_files(&with_dur).unwrap().graph, "voice.dur.onnx");
        assert_eq!(model_files(&with_dur).unwrap().split, None);
        // The split graph is taken when both parts are there, and is part of the signature.
        let mut split = with_dur.clone();
        split.push(file("voice.enc.onnx", 700, "e2"));
        assert_eq!(model_files(&split).unwrap().split, None, "one part alone is not enough");
        split.push(file("voice.dec.onnx", 500, "e3"));
        let f = model_files(&split).unwrap();
        assert_eq!(f.split, Some(("voice.enc.onnx".into(), "voice.dec.onnx".into())));
        assert_eq!(f.names().len(), 4);
        assert_ne!(f.signature, model_files(&with_dur).unwrap().signature);
        // Incomplete: config without graph, graph without config, an empty file, two configs.
        assert!(model_files(&[file("voice.onnx.json", 100, "e")]).unwrap_err().contains("voice.onnx"));
        assert!(model_files(&[file("voice.onnx", 100, "e")]).unwrap_err().contains("config"));
        assert!(
            model_files(&[file("v.onnx.json", 10, "e"), file("v.onnx", 0, "e")])
                .unwrap_err()
                .contains("empty")
        );
        let mut two = complete("a", "e");
        two.extend(complete("b", "e"));
        assert!(model_files(&two).unwrap_err().contains("more than one"));
        // The graph must match the config's name.
        assert!(model_files(&[file("a.onnx.json", 10, "e"), file("b.onnx", 10, "e")]).is_err());
        // A change of etag or size changes the signature.
        let a = model_files(&complete("v", "e1")).unwrap().signature;
        let b = model_files(&complete("v", "e2")).unwrap().signature;
        assert_ne!(a, b);
    }

    #[test]
    fn model_id_patterns() {
        for (pattern, id) in
            [("*", "a"), ("en_*", "en_US-amy"), ("*-fast", "x-fast"), ("a*b*c", "aXbYc"), ("ab", "ab")]
        {
            assert!(id_matches(pattern, id), "{pattern} {id}");
        }
        for (pattern, id) in
            [("en_*", "de_DE"), ("*-fast", "fast"), ("a*b*c", "acb"), ("ab", "abc"), ("a*a", "a")]
        {
            assert!(!id_matches(pattern, id), "{pattern} {id}");
        }
    }

    #[test]
    fn a_filtered_worker_loads_only_its_models() {
        let mut t = Tracker::new(Vec::new()).only(vec!["en_*".into()]);
        let mut scan = Scan::new();
        scan.insert("en_GB-alba".into(), complete("en_GB-alba", "e1"));
        scan.insert("de_DE-thorsten".into(), complete("de_DE-thorsten", "e1"));
        let actions = t.plan(&scan, false);
        assert_eq!(ids(&actions), ["load en_GB-alba"]);
    }

    #[test]
    fn new_directories_load_once_settled() {
        let mut t = Tracker::new(["bundled".to_owned()]);
        let mut scan = Scan::new();
        scan.insert("hot".into(), complete("hot", "e1"));
        assert!(t.plan(&scan, true).is_empty(), "first sight: the copy may still be going on");
        let actions = t.plan(&scan, true);
        assert_eq!(ids(&actions), ["load hot"]);
        // In progress: not planned again.
        assert!(t.plan(&scan, true).is_empty());
        t.done("hot", &model_files(&scan["hot"]).unwrap().signature, Ok(true));
        assert!(t.plan(&scan, true).is_empty(), "loaded and unchanged");
        assert_eq!(t.active().collect::<Vec<_>>(), ["hot"]);
    }

    #[test]
    fn a_growing_copy_waits_until_it_stops_changing() {
        let mut t = Tracker::default();
        let mut scan = Scan::new();
        for size in [10, 20, 30] {
            scan.insert("m".into(), vec![file("m.onnx.json", 100, "c"), file("m.onnx", size, "g")]);
            assert!(t.plan(&scan, true).is_empty(), "size {size} still changing");
        }
        assert_eq!(ids(&t.plan(&scan, true)), ["load m"]);
    }

    /// A tracker that has seen model `m` (files with `etag`) and tried to load it, with `outcome`, and that scan.
    fn tried_m(etag: &str, outcome: Result<bool, ()>) -> (Tracker, Scan) {
        let mut t = Tracker::default();
        let mut scan = Scan::new();
        scan.insert("m".into(), complete("m", etag));
        t.plan(&scan, false);
        t.done("m", &model_files(&scan["m"]).unwrap().signature, outcome);
        (t, scan)
    }

    #[test]
    fn without_settling_loads_at_once() {
        let mut t = Tracker::default();
        let mut scan = Scan::new();
        scan.insert("m".into(), complete("m", "e"));
        assert_eq!(ids(&t.plan(&scan, false)), ["load m"]);
    }

    #[test]
    fn a_changed_etag_reloads() {
        let (mut t, mut scan) = tried_m("e1", Ok(true));
        scan.insert("m".into(), complete("m", "e2"));
        assert!(t.plan(&scan, true).is_empty());
        let actions = t.plan(&scan, true);
        assert_eq!(ids(&actions), ["load m"]);
        let Some(Action::Load { files, .. }) = actions.first() else { panic!("no load") };
        assert!(files.signature.contains("e2"));
    }

    #[test]
    fn a_removed_directory_is_drained_once() {
        let (mut t, _) = tried_m("e", Ok(true));
        let empty = Scan::new();
        assert_eq!(ids(&t.plan(&empty, true)), ["remove m"]);
        assert!(t.plan(&empty, true).is_empty(), "the removal is in progress");
        t.done("m", "", Ok(false));
        assert!(t.plan(&empty, true).is_empty());
        assert_eq!(t.active().count(), 0);
    }

    #[test]
    fn an_incomplete_directory_keeps_the_loaded_model() {
        let (mut t, mut scan) = tried_m("e", Ok(true));
        // Being replaced: only the config is there for now. Nothing is unloaded nor loaded.
        scan.insert("m".into(), vec![file("m.onnx.json", 100, "e2")]);
        assert!(t.plan(&scan, true).is_empty());
        assert!(t.plan(&scan, true).is_empty());
        assert_eq!(t.active().collect::<Vec<_>>(), ["m"]);
    }

    #[test]
    fn a_failed_load_waits_for_new_files() {
        let (mut t, mut scan) = tried_m("e1", Err(()));
        assert!(t.plan(&scan, true).is_empty());
        assert!(t.plan(&scan, true).is_empty(), "the same broken files are not tried again");
        scan.insert("m".into(), complete("m", "e2"));
        t.plan(&scan, true);
        assert_eq!(ids(&t.plan(&scan, true)), ["load m"]);
    }

    #[test]
    fn fixed_and_invalid_ids_are_left_alone() {
        let mut t = Tracker::new(["bundled".to_owned()]);
        let mut scan = Scan::new();
        scan.insert("bundled".into(), complete("bundled", "e"));
        scan.insert("../up".into(), complete("up", "e"));
        scan.insert(".hidden".into(), complete("h", "e"));
        assert!(t.plan(&scan, false).is_empty());
        assert!(t.plan(&Scan::new(), false).is_empty(), "a fixed model is never removed");
        assert!(valid_model_id("en_US-joe-medium") && !valid_model_id("a/b") && !valid_model_id(""));
    }

    /// A bucket's model (here the in-memory store) is downloaded whole into the cache; a new version replaces the
    /// old one there.
    #[test]
    fn downloads_a_bucket_model_into_the_cache() {
        use object_store::{ObjectStoreExt, PutPayload};
        let store = object_store::memory::InMemory::new();
        let cache = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let graph = vec![7u8; 3 * 1024 * 1024];
        runtime.block_on(async {
            let put = |name: &str, bytes: Vec<u8>| {
                let location = Path::from(format!("models/m/{name}"));
                let store = &store;
                async move { store.put(&location, PutPayload::from(bytes)).await.unwrap() }
            };
            put("v.onnx.json", b"{\"audio\":{}}".to_vec()).await;
            put("v.onnx", graph.clone()).await;
            let scan = scan(&store).await.unwrap();
            let files = model_files(&scan["m"]).unwrap();
            let dir = download(&store, cache.path(), "m", &files).await.unwrap();
            assert_eq!(std::fs::read(dir.join("v.onnx")).unwrap(), graph);
            assert_eq!(std::fs::read(dir.join("v.onnx.json")).unwrap(), b"{\"audio\":{}}");
            // A new version: downloaded beside, the old one deleted.
            put("v.onnx", vec![8u8; 10]).await;
            let files = model_files(&super::scan(&store).await.unwrap()["m"]).unwrap();
            let newer = download(&store, cache.path(), "m", &files).await.unwrap();
            assert_ne!(newer, dir);
            assert!(!dir.exists());
            assert_eq!(std::fs::read(newer.join("v.onnx")).unwrap(), vec![8u8; 10]);
        });
    }

    /// The listing of a real directory store groups the files by model and carries sizes and etags.
    #[test]
    fn scans_a_directory_store() {
        let dir = tempfile::tempdir().unwrap();
        let m = dir.path().join("models").join("m1");
        std::fs::create_dir_all(&m).unwrap();
        std::fs::write(m.join("m1.onnx.json"), b"{}").unwrap();
        std::fs::write(m.join("m1.onnx"), b"graph").unwrap();
        std::fs::write(dir.path().join("models").join("stray.txt"), b"x").unwrap();
        let store = object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let scan = runtime.block_on(scan(&store)).unwrap();
        assert_eq!(scan.keys().collect::<Vec<_>>(), ["m1"]);
        let files = model_files(&scan["m1"]).unwrap();
        assert_eq!(files.graph, "m1.onnx");
        assert!(scan["m1"].iter().all(|f| f.etag.is_some() && f.size > 0));
        // An empty store (no models/ yet) lists nothing.
        let empty = tempfile::tempdir().unwrap();
        let store = object_store::local::LocalFileSystem::new_with_prefix(empty.path()).unwrap();
        assert!(runtime.block_on(super::scan(&store)).unwrap().is_empty());
    }
}
