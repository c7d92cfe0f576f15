//! The usage ledger: append-only, hash-chained, fsync'd in batches, rotated by size.
//!
//! Records live in segment files `ledger/segment-NNNNNNNN.log`, one JSON line per entry:
//! `{"seq":N,"prev":"<hex>","record":{…}}`. The hash of an entry is the SHA-256 of its line (without the newline);
//! each entry's `prev` is the hash of the entry before it (64 zeros for the first). Sequence numbers count from 1
//! with no gap across segments. Editing, removing or reordering any entry breaks the chain; the last entry is
//! covered by the signed manifest of an audit export.
//!
//! One thread owns the files. Appends queued while it writes are written together and fsync'd once; each caller
//! is answered only after that fsync. Each record id is stored once: the ids of the most recent records (rebuilt
//! from the segments at start) are remembered, and a record seen again is acknowledged without being written.
//! A torn last line (a crash mid-write, never acknowledged) is cut off at start.
//!
//! When a segment is closed, its last entry and length are written beside it (`segment-NNNNNNNN.head`). A restart
//! then replays only the recent segments that hold the de-duplication window, starting the chain check from the
//! checkpoint before them, so start-up does not grow with the ledger's age. A ledger without checkpoints (or with
//! one that does not match its segment's length) is replayed whole, and the missing checkpoints are written.
//! `chorus audit verify` checks the whole chain of an export.

use std::collections::{HashSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use chorus_proto::license::UsageRecord;
use chorus_proto::metrics as names;
use chorus_proto::secret::sha256_hex;
use tokio::sync::oneshot;

/// The `prev` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// Record ids remembered for de-duplication.
pub const DEDUP_WINDOW: usize = 1_000_000;

/// The last entry of the chain.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Head {
    /// 0 when the ledger is empty.
    pub seq: u64,
    pub hash: String,
}

/// One line of a segment.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Entry {
    pub seq: u64,
    pub prev: String,
    pub record: UsageRecord,
}

/// The files of the ledger at one instant, each with the length written and fsync'd by then.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub segments: Vec<(PathBuf, u64)>,
    pub head: Head,
}

/// Errors of the ledger.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("ledger I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("the ledger is damaged: {0}")]
    Damaged(String),
    #[error("the ledger writer has stopped")]
    Stopped,
}

enum Command {
    Append(Vec<UsageRecord>, oneshot::Sender<Result<(), String>>),
    Snapshot(oneshot::Sender<Snapshot>),
}

/// A handle to the ledger's writer thread.
#[derive(Debug, Clone)]
pub struct Ledger {
    tx: std::sync::mpsc::Sender<Command>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Append(r, _) => write!(f, "Append({})", r.len()),
            Command::Snapshot(_) => write!(f, "Snapshot"),
        }
    }
}

fn segment_name(n: u64) -> String {
    format!("segment-{n:08}.log")
}

/// The segment files of `dir`, in order.
pub fn list_segments(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    if !dir.exists() {
        return Ok(out);
    }
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name.starts_with("segment-") && name.ends_with(".log") {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// The end of a closed segment, stored beside it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Checkpoint {
    seq: u64,
    hash: String,
    /// The segment's length when it was closed.
    bytes: u64,
}

impl Checkpoint {
    fn head(&self) -> Head {
        Head { seq: self.seq, hash: self.hash.clone() }
    }
}

fn checkpoint_path(segment: &Path) -> PathBuf {
    segment.with_extension("head")
}

/// The checkpoint of a closed segment, if it exists and matches the segment's length.
fn read_checkpoint(segment: &Path) -> Option<Checkpoint> {
    let raw = std::fs::read(checkpoint_path(segment)).ok()?;
    let checkpoint: Checkpoint = serde_json::from_slice(&raw).ok()?;
    let len = std::fs::metadata(segment).ok()?.len();
    (checkpoint.bytes == len).then_some(checkpoint)
}

/// Writes a closed segment's checkpoint (temporary file, fsync, rename).
fn write_checkpoint(segment: &Path, head: &Head, bytes: u64) -> std::io::Result<()> {
    let checkpoint = Checkpoint { seq: head.seq, hash: head.hash.clone(), bytes };
    let path = checkpoint_path(segment);
    let tmp = path.with_extension("head.tmp");
    let mut file = File::create(&tmp)?;
    file.write_all(&serde_json::to_vec(&checkpoint).map_err(std::io::Error::other)?)?;
    file.sync_all()?;
    std::fs::rename(&tmp, &path)
}

/// Which segments a restart replays: from index `start`, with the chain's head before it. Walks back from the
/// newest closed segment until the replayed ones hold `window` records and the segment before them has a
/// checkpoint; without the checkpoints that needs, from the first segment.
fn replay_start(checkpoints: &[Option<Checkpoint>], window: usize) -> (usize, Head) {
    let genesis = Head { seq: 0, hash: GENESIS.into() };
    let mut start = checkpoints.len();
    let mut covered = 0u64;
    while start > 0 {
        if covered >= window as u64
            && let Some(before) = &checkpoints[start - 1]
        {
            return (start, before.head());
        }
        start -= 1;
        let end = checkpoints[start].as_ref().map(|c| c.seq);
        let begin = if start == 0 { Some(0) } else { checkpoints[start - 1].as_ref().map(|c| c.seq) };
        if let (Some(end), Some(begin)) = (end, begin) {
            covered += end.saturating_sub(begin);
        }
    }
    (0, genesis)
}

struct Writer {
    dir: PathBuf,
    max_segment_bytes: u64,
    segment_no: u64,
    file: File,
    written: u64,
    head: Head,
    recent: RecentIds,
    /// Finished segments with their sizes.
    closed: Vec<(PathBuf, u64)>,
    /// Audio seconds written since start, per model (for the whole-seconds counter).
    audio_seconds: std::collections::HashMap<String, f64>,
    /// Entries read back at start (logged; the tests check it).
    #[cfg_attr(not(test), allow(dead_code))]
    replayed: u64,
}

/// The ids of the most recent records, at most `window` (for de-duplication).
struct RecentIds {
    seen: HashSet<String>,
    order: VecDeque<String>,
    window: usize,
}

impl RecentIds {
    fn new(window: usize) -> Self {
        Self { seen: HashSet::new(), order: VecDeque::new(), window }
    }

    fn contains(&self, id: &str) -> bool {
        self.seen.contains(id)
    }

    /// Remembers `id`, forgetting the oldest beyond the window.
    fn remember(&mut self, id: &str) {
        if self.seen.insert(id.to_owned()) {
            self.order.push_back(id.to_owned());
            if self.order.len() > self.window
                && let Some(old) = self.order.pop_front()
            {
                self.seen.remove(&old);
            }
        }
    }
}

impl Writer {
    fn open(dir: &Path, max_segment_bytes: u64, window: usize) -> Result<Self, LedgerError> {
        std::fs::create_dir_all(dir)?;
        let segments = list_segments(dir)?;
        let mut recent = RecentIds::new(window);
        let mut closed = Vec::new();
        let count = segments.len();
        let checkpoints: Vec<Option<Checkpoint>> =
            segments.iter().take(count.saturating_sub(1)).map(|p| read_checkpoint(p)).collect();
        let (start, mut head) = replay_start(&checkpoints, window);
        let mut replayed = 0u64;
        for (i, path) in segments.iter().enumerate() {
            let last = i + 1 == count;
            if i < start {
                closed.push((path.clone(), std::fs::metadata(path)?.len()));
                continue;
            }
            let from_checkpoint = i == start && start > 0;
            let good_len = replay(path, &mut head, last, |id| {
                replayed += 1;
                recent.remember(id);
            })
            .map_err(|e| match e {
                LedgerError::Damaged(m) if from_checkpoint => LedgerError::Damaged(format!(
                    "{m} (replayed from the checkpoint of the segment before; delete the ledger's *.head files to \
                     check the whole chain)"
                )),
                other @ (LedgerError::Damaged(_) | LedgerError::Io(_) | LedgerError::Stopped) => other,
            })?;
            if !last {
                match &checkpoints[i] {
                    Some(c) if c.head() != head => {
                        return Err(LedgerError::Damaged(format!(
                            "{}: ends at entry {} but its checkpoint (.head) says entry {}",
                            path.display(),
                            head.seq,
                            c.seq
                        )));
                    }
                    Some(_) => {}
                    None => {
                        if let Err(e) = write_checkpoint(path, &head, good_len) {
                            tracing::warn!(segment = %path.display(), error = %e, "Cannot write a ledger checkpoint.");
                        }
                    }
                }
            }
            if last {
                let file = OpenOptions::new().write(true).open(path)?;
                if file.metadata()?.len() != good_len {
                    tracing::warn!(segment = %path.display(), "Cutting a torn last ledger line (never acknowledged).");
                    file.set_len(good_len)?;
                    file.sync_all()?;
                }
            } else {
                closed.push((path.clone(), std::fs::metadata(path)?.len()));
            }
        }
        let (segment_no, path) = match segments.last() {
            Some(p) => (segment_number(p), p.clone()),
            None => (1, dir.join(segment_name(1))),
        };
        let mut file = OpenOptions::new().create(true).append(true).open(&path)?;
        let written = file.seek(SeekFrom::End(0))?;
        sync_dir(dir);
        tracing::info!(records = head.seq, segments = count.max(1), replayed, "Usage ledger opened.");
        Ok(Self {
            dir: dir.to_owned(),
            max_segment_bytes,
            segment_no,
            file,
            written,
            head,
            recent,
            closed,
            replayed,
            audio_seconds: std::collections::HashMap::new(),
        })
    }

    fn current_path(&self) -> PathBuf {
        self.dir.join(segment_name(self.segment_no))
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.file.sync_all()?;
        // Without its checkpoint a segment is only replayed again at the next start: not an error.
        if let Err(e) = write_checkpoint(&self.current_path(), &self.head, self.written) {
            tracing::warn!(error = %e, "Cannot write a ledger checkpoint.");
        }
        self.closed.push((self.current_path(), self.written));
        self.segment_no += 1;
        self.file = OpenOptions::new().create(true).append(true).open(self.current_path())?;
        self.written = 0;
        sync_dir(&self.dir);
        Ok(())
    }

    /// Writes the records not seen before (not yet fsync'd).
    fn append(&mut self, records: Vec<UsageRecord>) -> std::io::Result<()> {
        for record in records {
            if self.recent.contains(&record.id) {
                metrics::counter!(names::LICENSE_USAGE_DUPLICATES_TOTAL).increment(1);
                continue;
            }
            if self.written >= self.max_segment_bytes {
                self.rotate()?;
            }
            let entry = Entry { seq: self.head.seq + 1, prev: self.head.hash.clone(), record };
            let line = serde_json::to_vec(&entry).map_err(std::io::Error::other)?;
            let mut buf = line.clone();
            buf.push(b'\n');
            if let Err(e) = self.file.write_all(&buf) {
                // A partial line (disk full...) would break the chain for every later entry: cut it off.
                let _ = self.file.set_len(self.written);
                return Err(e);
            }
            self.written += buf.len() as u64;
            self.head = Head { seq: entry.seq, hash: sha256_hex(&line) };
            let model = entry.record.model.clone();
            metrics::counter!(names::LICENSE_USAGE_RECORDS_TOTAL, "model" => model.clone()).increment(1);
            metrics::counter!(names::LICENSE_USAGE_CHARACTERS_TOTAL, "model" => model.clone())
                .increment(entry.record.characters);
            // The counter is whole seconds: it shows the exact sum so far, rounded down, not a sum of rounded
            // records (records under half a second would otherwise add nothing).
            let audio = self.audio_seconds.entry(model.clone()).or_insert(0.0);
            *audio += entry.record.audio_seconds.max(0.0);
            metrics::counter!(names::LICENSE_USAGE_AUDIO_SECONDS_TOTAL, "model" => model)
                .absolute(audio.floor() as u64);
            self.recent.remember(&entry.record.id);
        }
        Ok(())
    }

    fn snapshot(&self) -> Snapshot {
        let mut segments = self.closed.clone();
        segments.push((self.current_path(), self.written));
        Snapshot { segments, head: self.head.clone() }
    }
}

fn segment_number(path: &Path) -> u64 {
    path.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("segment-"))
        .and_then(|n| n.strip_suffix(".log"))
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Reads a segment, checking the chain from `head` and advancing it; returns the length of its whole lines. In
/// the last segment a torn or unreadable final line is tolerated (it is cut off); anywhere else it is damage.
fn replay(path: &Path, head: &mut Head, last: bool, mut seen: impl FnMut(&str)) -> Result<u64, LedgerError> {
    let mut reader = BufReader::new(File::open(path)?);
    let mut good = 0u64;
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 {
            return Ok(good);
        }
        let complete = line.last() == Some(&b'\n');
        let body = if complete { &line[..line.len() - 1] } else { &line[..] };
        let parsed = serde_json::from_slice::<Entry>(body);
        match parsed {
            Ok(entry) if complete => {
                if entry.seq != head.seq + 1 || entry.prev != head.hash {
                    return Err(LedgerError::Damaged(format!(
                        "{}: entry {} does not follow entry {}",
                        path.display(),
                        entry.seq,
                        head.seq
                    )));
                }
                *head = Head { seq: entry.seq, hash: sha256_hex(body) };
                seen(&entry.record.id);
                good += n as u64;
            }
            Ok(_) | Err(_) if last => {
                // A torn tail: only acceptable as the very end of the last segment.
                let mut rest = Vec::new();
                std::io::Read::read_to_end(&mut reader, &mut rest)?;
                if rest.iter().any(|b| !b.is_ascii_whitespace()) {
                    return Err(LedgerError::Damaged(format!(
                        "{}: unreadable entry after {}",
                        path.display(),
                        head.seq
                    )));
                }
                return Ok(good);
            }
            Ok(_) | Err(_) => {
                return Err(LedgerError::Damaged(format!(
                    "{}: unreadable entry after {}",
                    path.display(),
                    head.seq
                )));
            }
        }
    }
}

impl Ledger {
    /// Opens (or creates) the ledger in `dir` and starts its writer thread.
    pub fn open(dir: &Path, max_segment_bytes: u64) -> Result<Self, LedgerError> {
        let mut writer = Writer::open(dir, max_segment_bytes.max(1024), DEDUP_WINDOW)?;
        let (tx, rx) = std::sync::mpsc::channel::<Command>();
        std::thread::Builder::new().name("chorus-ledger".into()).spawn(move || {
            while let Ok(first) = rx.recv() {
                let mut commands = vec![first];
                while let Ok(more) = rx.try_recv() {
                    commands.push(more);
                    if commands.len() >= 4096 {
                        break;
                    }
                }
                let mut result: Result<(), String> = Ok(());
                for c in &mut commands {
                    if let (Command::Append(records, _), Ok(())) = (c, &result) {
                        result = writer.append(std::mem::take(records)).map_err(|e| e.to_string());
                    }
                }
                if result.is_ok() {
                    result = writer.file.sync_data().map_err(|e| e.to_string());
                }
                if let Err(e) = &result {
                    tracing::error!(error = %e, "Usage ledger write failed: the batch is not acknowledged.");
                }
                for c in commands {
                    match c {
                        Command::Append(_, reply) => {
                            let _ = reply.send(result.clone());
                        }
                        Command::Snapshot(reply) => {
                            let _ = reply.send(writer.snapshot());
                        }
                    }
                }
            }
        })?;
        Ok(Self { tx })
    }

    /// Appends the records (ids already stored are skipped); resolves after the fsync.
    pub async fn append(&self, records: Vec<UsageRecord>) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Command::Append(records, tx)).map_err(|_| LedgerError::Stopped.to_string())?;
        rx.await.map_err(|_| LedgerError::Stopped.to_string())?
    }

    /// The segments and head, consistent with each other, after everything queued so far is fsync'd.
    pub async fn snapshot(&self) -> Result<Snapshot, LedgerError> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Command::Snapshot(tx)).map_err(|_| LedgerError::Stopped)?;
        rx.await.map_err(|_| LedgerError::Stopped)
    }
}

/// The entries of `snapshot` after sequence number `after`, at most `max` (blocking: reads the files).
pub fn read_since(snapshot: &Snapshot, after: u64, max: usize) -> std::io::Result<Vec<Entry>> {
    let mut out = Vec::new();
    for (path, len) in &snapshot.segments {
        // A closed segment that ends at or before `after` has nothing to read.
        if read_checkpoint(path).is_some_and(|c| c.bytes == *len && c.seq <= after) {
            continue;
        }
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::Read::take(File::open(path)?, *len), &mut bytes)?;
        for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            // Cheap skip of earlier entries: `{"seq":N,` leads every line.
            let entry: Entry = serde_json::from_slice(line).map_err(std::io::Error::other)?;
            if entry.seq > after {
                out.push(entry);
                if out.len() >= max {
                    return Ok(out);
                }
            }
        }
    }
    Ok(out)
}

/// What checking a chain found.
#[derive(Debug, Clone, Default)]
pub struct ChainReport {
    pub head: Option<Head>,
    pub entries: u64,
    /// Every break: a gap, an edit, an unreadable line.
    pub problems: Vec<String>,
}

/// Checks the chain through `segments` (name, contents), in order.
pub fn verify_chain(segments: &[(String, Vec<u8>)]) -> ChainReport {
    let mut report = ChainReport::default();
    let mut head = Head { seq: 0, hash: GENESIS.into() };
    for (name, bytes) in segments {
        for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
            if line.is_empty() {
                continue;
            }
            match serde_json::from_slice::<Entry>(line) {
                Ok(entry) => {
                    if entry.seq != head.seq + 1 {
                        report.problems.push(format!(
                            "{name} line {}: gap: entry {} follows entry {}",
                            i + 1,
                            entry.seq,
                            head.seq
                        ));
                    } else if entry.prev != head.hash {
                        report.problems.push(format!(
                            "{name} line {}: entry {} does not chain to entry {} (an entry was edited)",
                            i + 1,
                            entry.seq,
                            head.seq
                        ));
                    }
                    head = Head { seq: entry.seq, hash: sha256_hex(line) };
                    report.entries += 1;
                }
                Err(e) => {
                    report.problems.push(format!("{name} line {}: unreadable entry ({e})", i + 1));
                }
            }
        }
    }
    report.head = Some(head);
    report
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn record(id: &str) -> UsageRecord {
        UsageRecord {
            id: id.into(),
            time_ms: 1,
            key_name: Some("team-a".into()),
            model: "m".into(),
            voice_id: "v".into(),
            route: "bytes".into(),
            characters: 12,
            audio_seconds: 1.5,
            ttfa_ms: Some(40.0),
            status: "completed".into(),
        }
    }

    fn read_all(dir: &Path) -> Vec<(String, Vec<u8>)> {
        list_segments(dir)
            .unwrap()
            .into_iter()
            .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
            .collect()
    }

    #[tokio::test]
    async fn rotates_dedups_and_reopens_with_the_chain_intact() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(dir.path(), 1024).unwrap();
        for i in 0..40 {
            ledger.append(vec![record(&format!("r{i}")), record(&format!("r{i}"))]).await.unwrap();
        }
        let snap = ledger.snapshot().await.unwrap();
        assert_eq!(snap.head.seq, 40);
        assert!(snap.segments.len() > 2, "rotated by size");
        drop(ledger);

        // A torn line at the end (a crash mid-write) is cut off; old ids are still known.
        let last = list_segments(dir.path()).unwrap().pop().unwrap();
        let mut f = OpenOptions::new().append(true).open(&last).unwrap();
        f.write_all(b"{\"seq\":41,\"pre").unwrap();
        drop(f);
        let ledger = Ledger::open(dir.path(), 1024).unwrap();
        ledger.append(vec![record("r3"), record("new")]).await.unwrap();
        let snap = ledger.snapshot().await.unwrap();
        assert_eq!(snap.head.seq, 41);

        let report = verify_chain(&read_all(dir.path()));
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert_eq!(report.entries, 41);
        assert_eq!(report.head.unwrap(), snap.head);
    }

    /// Writes `n` records `r0..` through a writer with tiny segments and drops it.
    fn fill(dir: &Path, n: usize) {
        let mut w = Writer::open(dir, 1024, 1000).unwrap();
        for i in 0..n {
            w.append(vec![record(&format!("r{i}"))]).unwrap();
        }
        w.file.sync_all().unwrap();
    }

    #[test]
    fn a_restart_replays_only_the_segments_the_dedup_window_needs() {
        let dir = tempfile::tempdir().unwrap();
        fill(dir.path(), 300);
        let segments = list_segments(dir.path()).unwrap().len();
        assert!(segments > 20, "{segments} segments");

        let mut w = Writer::open(dir.path(), 1024, 20).unwrap();
        assert_eq!(w.head.seq, 300);
        let per_segment = 300 / segments as u64 + 1;
        assert!(w.replayed >= 20 && w.replayed <= 20 + 2 * per_segment, "replayed {}", w.replayed);
        // Ids inside the window are still known; the chain goes on from the right head.
        w.append(vec![record("r295"), record("fresh")]).unwrap();
        assert_eq!(w.head.seq, 301);
        w.file.sync_all().unwrap();
        drop(w);
        let report = verify_chain(&read_all(dir.path()));
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert_eq!(report.entries, 301);
    }

    #[test]
    fn a_ledger_without_checkpoints_is_replayed_whole_once_and_gets_them() {
        let dir = tempfile::tempdir().unwrap();
        fill(dir.path(), 120);
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "head") {
                std::fs::remove_file(path).unwrap();
            }
        }
        let w = Writer::open(dir.path(), 1024, 10).unwrap();
        assert_eq!(w.replayed, 120, "no checkpoint: everything is read");
        drop(w);
        let w = Writer::open(dir.path(), 1024, 10).unwrap();
        assert!(w.replayed < 60, "checkpoints written by the last start: replayed {}", w.replayed);
        assert_eq!(w.head.seq, 120);
    }

    #[test]
    fn a_checkpoint_that_disagrees_with_the_chain_is_damage() {
        let dir = tempfile::tempdir().unwrap();
        fill(dir.path(), 120);
        // The checkpoints are edited: the entry after the one a restart starts from no longer follows it.
        let segments = list_segments(dir.path()).unwrap();
        for path in &segments[..segments.len() - 1] {
            let head = checkpoint_path(path);
            let raw = std::fs::read_to_string(&head).unwrap();
            std::fs::write(&head, raw.replacen("\"hash\":\"", "\"hash\":\"f", 1)).unwrap();
        }
        let err = Writer::open(dir.path(), 1024, 10).err().expect("an edited checkpoint is refused");
        assert!(matches!(err, LedgerError::Damaged(_)), "{err}");
        assert!(err.to_string().contains(".head"), "the message says how to replay everything: {err}");
    }

    #[test]
    fn an_edit_and_a_gap_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let ledger = Ledger::open(dir.path(), 1 << 20).unwrap();
        rt.block_on(async {
            for i in 0..5 {
                ledger.append(vec![record(&format!("r{i}"))]).await.unwrap();
            }
        });
        let mut segs = read_all(dir.path());
        let text = String::from_utf8(segs[0].1.clone()).unwrap();
        let edited = text.replacen("\"characters\":12", "\"characters\":13", 1);
        segs[0].1 = edited.into_bytes();
        let report = verify_chain(&segs);
        assert_eq!(report.problems.len(), 1, "{:?}", report.problems);

        let lines: Vec<&str> = text.lines().collect();
        let gap = format!("{}\n{}\n", lines[0], lines[2]);
        let report = verify_chain(&[("s".into(), gap.into_bytes())]);
        assert!(report.problems[0].contains("gap"), "{:?}", report.problems);
    }
}
