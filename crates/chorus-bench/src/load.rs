//! `chorus bench --url URL`: load against a running Chorus or Cartesia-compatible server (or Python Piper's HTTP
//! server), level by level.
//!
//! - **Closed loop** (`--concurrency 1,2,4`): C clients, each sending its next request when the previous one
//!   finished, for `--duration` seconds (requests in flight then run to their end) or `--requests` in all.
//! - **Open loop** (`--rate 2,4`): requests arrive at R per second (Poisson or fixed spacing), whatever is in
//!   flight; for the duration or the number of requests. Over WebSocket they share one socket.
//!
//! Per request: time to first audio (send to the first audio byte), total time, audio duration (from the bytes:
//! raw pcm_s16le at 22050 Hz), real-time factor (total / audio), characters, and the underruns of a player that
//! starts at the first audio byte and plays in real time ([`simulate_playback`]). Per level: a
//! [`LevelSummary`], printed as a markdown table and written as a JSON array with `--json`; `--plot` draws them.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::client::{Connection, Protocol, Target, WsConnection, http_client};
use crate::stats::{LevelSummary, Sample, markdown_table, simulate_playback};
use crate::texts::Texts;
use crate::{BenchError, Result};

/// Flags of the load benchmark (`chorus bench --url URL ...`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct LoadArgs {
    /// Load benchmark: the protocol [default: bytes].
    #[arg(long, value_enum)]
    pub protocol: Option<Protocol>,
    /// Load benchmark: closed-loop client counts, comma-separated [default: 1,2,4,8,16].
    #[arg(long, value_delimiter = ',')]
    pub concurrency: Option<Vec<usize>>,
    /// Load benchmark: open-loop arrival rates (requests per second), comma-separated, instead of --concurrency.
    #[arg(long, value_delimiter = ',', conflicts_with = "concurrency")]
    pub rate: Option<Vec<f64>>,
    /// Open loop: arrivals at exponential (Poisson) or fixed intervals.
    #[arg(long, value_enum, default_value = "poisson")]
    pub arrivals: Arrivals,
    /// Open loop: the seed of the Poisson arrivals.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Load benchmark: seconds per level (requests in flight at the end run to completion) [default: 10].
    #[arg(long, conflicts_with = "requests")]
    pub duration: Option<f64>,
    /// Load benchmark: requests per level, in all (instead of --duration).
    #[arg(long)]
    pub requests: Option<usize>,
    /// Load benchmark: `short` (~40 characters), `medium` (~200), `long` (~800), or a file with one text per line
    /// [default: short].
    #[arg(long)]
    pub texts: Option<String>,
    /// Load benchmark: draw TTFA p50/p95 and throughput against concurrency into this SVG (this run's levels and
    /// every --from file).
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Earlier `--json` results to plot and tabulate (repeatable; levels with the same label form one series).
    /// Without --url nothing is measured.
    #[arg(long)]
    pub from: Vec<PathBuf>,
    /// Load benchmark: the series name in tables, JSON and plots [default: PROTOCOL URL].
    #[arg(long)]
    pub label: Option<String>,
    /// Load benchmark: the `model_id` asked for.
    #[arg(long, default_value = "sonic-3")]
    pub model_id: String,
    /// Load benchmark: a request still running after this many seconds counts as an error.
    #[arg(long, default_value_t = 60.0)]
    pub timeout: f64,
    /// Closed loop: spread the clients' first requests evenly over this many seconds instead of sending them all
    /// at once (a burst of C first chunks at the same instant measures the burst, not the steady state).
    #[arg(long, default_value_t = 0.0)]
    pub ramp: f64,
    /// Load benchmark: unmeasured requests before the first level.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
}

impl LoadArgs {
    /// Whether a flag that only the load benchmark reads was given.
    pub fn any_given(&self) -> bool {
        self.protocol.is_some()
            || self.concurrency.is_some()
            || self.rate.is_some()
            || self.duration.is_some()
            || self.requests.is_some()
            || self.texts.is_some()
            || self.plot.is_some()
            || !self.from.is_empty()
            || self.label.is_some()
            || self.ramp > 0.0
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Arrivals {
    #[default]
    Poisson,
    Fixed,
}

/// When a level stops issuing requests.
#[derive(Debug, Clone, Copy)]
enum Stop {
    Duration(f64),
    Requests(usize),
}

impl Stop {
    fn describe(self) -> String {
        match self {
            Self::Duration(d) => format!("{d} s per level"),
            Self::Requests(n) => format!("{n} requests per level"),
        }
    }
}

/// The whole load benchmark against `url`.
pub fn run(
    url: &str,
    api_key: Option<&str>,
    voice: &str,
    json: Option<&Path>,
    args: &LoadArgs,
) -> Result<()> {
    let texts = Texts::load(args.texts.as_deref().unwrap_or("short"))?;
    if !(args.ramp.is_finite() && (0.0..=3600.0).contains(&args.ramp)) {
        return Err(BenchError::Usage("--ramp must be between 0 and 3600 seconds".into()));
    }
    let protocol = args.protocol.unwrap_or(Protocol::Bytes);
    let base = url.trim_end_matches('/').to_owned();
    if !base.starts_with("http://") && !base.starts_with("ws://") {
        return Err(BenchError::Usage(format!("--url {url}: give an http:// URL (https is not supported)")));
    }
    let target = Target {
        base: base.replacen("ws://", "http://", 1),
        api_key: api_key.map(str::to_owned),
        voice: voice.to_owned(),
        model_id: args.model_id.clone(),
        protocol,
    };
    let stop = match (args.duration, args.requests) {
        (Some(d), _) if d > 0.0 && d.is_finite() => Stop::Duration(d),
        (Some(_), _) => {
            return Err(BenchError::Usage("--duration must be a positive number of seconds".into()));
        }
        (None, Some(0)) => return Err(BenchError::Usage("--requests must be positive".into())),
        (None, Some(n)) => Stop::Requests(n),
        (None, None) => Stop::Duration(10.0),
    };
    if !(args.timeout > 0.0 && args.timeout.is_finite()) {
        return Err(BenchError::Usage("--timeout must be a positive number of seconds".into()));
    }
    let timeout = Duration::from_secs_f64(args.timeout);
    let levels: Vec<Level> = match (&args.rate, &args.concurrency) {
        (Some(rates), _) => {
            if rates.is_empty() || rates.iter().any(|r| !(*r > 0.0 && r.is_finite())) {
                return Err(BenchError::Usage("--rate takes positive arrival rates".into()));
            }
            rates.iter().map(|&r| Level::Open(r)).collect()
        }
        (None, Some(cs)) => {
            if cs.is_empty() || cs.contains(&0) {
                return Err(BenchError::Usage("--concurrency takes positive client counts".into()));
            }
            cs.iter().map(|&c| Level::Closed(c)).collect()
        }
        (None, None) => [1, 2, 4, 8, 16].into_iter().map(Level::Closed).collect(),
    };
    let label = args.label.clone().unwrap_or_else(|| format!("{} {}", protocol.name(), target.base));

    let runtime = crate::runtime()?;
    let mut results = runtime.block_on(async {
        let run = Run {
            target: Arc::new(target),
            texts: Arc::new(texts.clone()),
            stop,
            timeout,
            label: &label,
            ramp: Duration::from_secs_f64(args.ramp),
        };
        run.all(&levels, args).await
    })?;
    for l in &mut results {
        l.label.clone_from(&label);
        l.url.clone_from(&base);
        l.protocol = protocol.name().to_owned();
        l.texts.clone_from(&texts.name);
    }
    let named = if args.label.is_some() { format!("{label}: ") } else { String::new() };
    println!(
        "{named}{} {base}, voice {voice}, texts {} ({} texts, {:.0} characters on average), {}\n",
        protocol.name(),
        texts.name,
        texts.texts.len(),
        texts.mean_chars(),
        stop.describe()
    );
    println!("{}", markdown_table(&results));
    if let Some(path) = json {
        write_json(path, &results)?;
    }
    if let Some(path) = &args.plot {
        let mut series = vec![(label.clone(), results)];
        for s in read_series(&args.from)? {
            series.push(s);
        }
        write_plot(path, &series)?;
    }
    Ok(())
}

/// `chorus bench --from A.json --from B.json [--plot OUT.svg] [--json ALL.json]`: tables (and a plot) of earlier
/// results, without measuring.
pub fn report(json: Option<&Path>, args: &LoadArgs) -> Result<()> {
    let series = read_series(&args.from)?;
    for (label, levels) in &series {
        let about = levels.first().map_or_else(String::new, |l| {
            if l.url.is_empty() {
                String::new()
            } else {
                format!(": {} {}, texts {}", l.protocol, l.url, l.texts)
            }
        });
        println!("{label}{about}\n\n{}", markdown_table(levels));
    }
    if let Some(path) = json {
        let all: Vec<&LevelSummary> = series.iter().flat_map(|(_, l)| l).collect();
        write_json(path, &all)?;
    }
    if let Some(path) = &args.plot {
        write_plot(path, &series)?;
    }
    Ok(())
}

fn write_plot(path: &Path, series: &[(String, Vec<LevelSummary>)]) -> Result<()> {
    write(path, crate::plot::svg(series))
}

/// `value` as pretty JSON into `path` (`--json`).
pub(crate) fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<()> {
    let json = serde_json::to_string_pretty(value).map_err(|e| BenchError::json("the results' JSON", e))?;
    write(path, json)
}

fn write(path: &Path, contents: String) -> Result<()> {
    std::fs::write(path, contents).map_err(|e| BenchError::io(format!("cannot write {}", path.display()), e))
}

/// The JSON file at `path`, of what `what` says.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<T> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| BenchError::io(format!("cannot read {}", path.display()), e))?;
    serde_json::from_str(&text).map_err(|e| BenchError::json(what, e))
}

/// The levels of every file, grouped by label in order of appearance (a file's stem names levels without one).
fn read_series(paths: &[PathBuf]) -> Result<Vec<(String, Vec<LevelSummary>)>> {
    let mut series: Vec<(String, Vec<LevelSummary>)> = Vec::new();
    for path in paths {
        let levels: Vec<LevelSummary> =
            read_json(path, &format!("{}: not a `chorus bench --json` array of levels", path.display()))?;
        let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        for level in levels {
            let label = if level.label.is_empty() { stem.clone() } else { level.label.clone() };
            match series.iter_mut().find(|(l, _)| *l == label) {
                Some((_, v)) => v.push(level),
                None => series.push((label, vec![level])),
            }
        }
    }
    for (_, levels) in &mut series {
        levels.sort_by(|a, b| a.x().total_cmp(&b.x()));
    }
    Ok(series)
}

#[derive(Debug, Clone, Copy)]
enum Level {
    Closed(usize),
    Open(f64),
}

struct Run<'a> {
    target: Arc<Target>,
    texts: Arc<Texts>,
    stop: Stop,
    timeout: Duration,
    label: &'a str,
    ramp: Duration,
}

/// What the requests of a level report, shared by their tasks.
#[derive(Debug, Default)]
struct Collector {
    samples: Mutex<Vec<Sample>>,
    errors: AtomicUsize,
    first_error: Mutex<Option<String>>,
    done: AtomicUsize,
    in_flight: AtomicUsize,
    peak_in_flight: AtomicUsize,
}

/// A request still running at its timeout.
fn no_end(timeout: Duration) -> BenchError {
    BenchError::Timeout(format!("no end of stream within {} s", timeout.as_secs_f64()))
}

impl Collector {
    async fn measure(&self, conn: &Connection, target: &Target, text: &str, timeout: Duration) {
        let now = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak_in_flight.fetch_max(now, Ordering::Relaxed);
        let result = match tokio::time::timeout(timeout, conn.request(target, text)).await {
            Ok(r) => r,
            Err(_) => Err(no_end(timeout)),
        };
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        match result {
            Ok(o) => {
                let sample = Sample {
                    ttfa_s: o.ttfa.as_secs_f64(),
                    total_s: o.total.as_secs_f64(),
                    audio_s: o.audio_s(),
                    chars: text.chars().count(),
                    underruns: simulate_playback(&o.arrivals, o.bytes_per_s),
                };
                self.samples.lock().unwrap_or_else(PoisonError::into_inner).push(sample);
            }
            Err(e) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                self.first_error.lock().unwrap_or_else(PoisonError::into_inner).get_or_insert(e.chain());
            }
        }
        self.done.fetch_add(1, Ordering::Relaxed);
    }
}

impl Run<'_> {
    async fn all(&self, levels: &[Level], args: &LoadArgs) -> Result<Vec<LevelSummary>> {
        let http = http_client();
        if args.warmup > 0 {
            let conn = Connection::open(&self.target, &http).await?;
            for k in 0..args.warmup {
                let request = conn.request(&self.target, self.texts.get(k));
                tokio::time::timeout(self.timeout, request)
                    .await
                    .map_err(|_| no_end(self.timeout))
                    .and_then(|r| r)
                    .map_err(|e| BenchError::Warmup(Box::new(e)))?;
            }
        }
        let mut seed = args.seed;
        let mut results = Vec::with_capacity(levels.len());
        for &level in levels {
            let collector = Arc::new(Collector::default());
            let progress = Progress::start(self.label, level, self.stop, Arc::clone(&collector));
            let t0 = Instant::now();
            match level {
                Level::Closed(c) => self.closed(c, &http, &collector).await?,
                Level::Open(rate) => {
                    seed = seed.wrapping_add(1);
                    self.open(rate, args.arrivals, seed, &http, &collector).await?;
                }
            }
            let wall = t0.elapsed().as_secs_f64();
            progress.stop().await;
            let samples =
                std::mem::take(&mut *collector.samples.lock().unwrap_or_else(PoisonError::into_inner));
            let errors = collector.errors.load(Ordering::Relaxed);
            let mut summary = match level {
                Level::Closed(c) => LevelSummary::from_samples(c, &samples, errors, wall),
                Level::Open(rate) => {
                    let peak = collector.peak_in_flight.load(Ordering::Relaxed);
                    let mut s = LevelSummary::from_samples(peak, &samples, errors, wall);
                    s.offered_rate = Some(rate);
                    s
                }
            };
            summary.mode = match level {
                Level::Closed(_) => "closed",
                Level::Open(_) => "open",
            }
            .to_owned();
            summary.first_error = collector.first_error.lock().unwrap_or_else(PoisonError::into_inner).take();
            eprintln!(
                "{}: {} {}: {} requests, {} errors, TTFA p50 {:.1} ms, p95 {:.1} ms, {:.2} audio s/s, {} underruns, {:.1} s",
                self.label,
                level.name(),
                level.value(),
                summary.requests,
                summary.errors,
                summary.ttfa_p50_ms,
                summary.ttfa_p95_ms,
                summary.audio_s_per_s,
                summary.underruns,
                wall
            );
            if let Some(e) = &summary.first_error {
                eprintln!("  first error: {e}");
            }
            results.push(summary);
        }
        Ok(results)
    }

    /// `c` clients, each with its own connection (a socket for ws), one request after the other.
    async fn closed(
        &self,
        c: usize,
        http: &crate::client::HttpClient,
        collector: &Arc<Collector>,
    ) -> Result<()> {
        let mut conns = Vec::with_capacity(c);
        for _ in 0..c {
            conns.push(Connection::open(&self.target, http).await?);
        }
        let issued = Arc::new(AtomicUsize::new(0));
        let start = Instant::now();
        let mut tasks = JoinSet::new();
        for (i, conn) in conns.into_iter().enumerate() {
            let delay = self.ramp.mul_f64(i as f64 / c as f64);
            let (target, texts, collector, issued) = (
                Arc::clone(&self.target),
                Arc::clone(&self.texts),
                Arc::clone(collector),
                Arc::clone(&issued),
            );
            let (stop, timeout) = (self.stop, self.timeout);
            tasks.spawn(async move {
                tokio::time::sleep(delay).await;
                loop {
                    let k = issued.fetch_add(1, Ordering::Relaxed);
                    let more = match stop {
                        Stop::Duration(d) => start.elapsed().as_secs_f64() < d,
                        Stop::Requests(n) => k < n,
                    };
                    if !more {
                        break;
                    }
                    collector.measure(&conn, &target, texts.get(k), timeout).await;
                }
                conn.close().await;
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.map_err(|e| BenchError::Task { what: "a client task failed".into(), source: e })?;
        }
        Ok(())
    }

    /// Requests arriving at `rate` per second, each on its own task; over ws they share one socket.
    async fn open(
        &self,
        rate: f64,
        arrivals: Arrivals,
        seed: u64,
        http: &crate::client::HttpClient,
        collector: &Arc<Collector>,
    ) -> Result<()> {
        let conn = match self.target.protocol {
            Protocol::Ws => Connection::Ws(Arc::new(WsConnection::connect(&self.target).await?)),
            Protocol::Bytes | Protocol::Sse | Protocol::Piper => Connection::open(&self.target, http).await?,
        };
        let mut rng = SplitMix64(seed);
        let start = Instant::now();
        let mut at = 0.0;
        let mut tasks = JoinSet::new();
        for k in 0.. {
            let more = match self.stop {
                Stop::Duration(d) => at < d,
                Stop::Requests(n) => k < n,
            };
            if !more {
                break;
            }
            tokio::time::sleep_until((start + Duration::from_secs_f64(at)).into()).await;
            let (conn, target, texts, collector) =
                (conn.clone(), Arc::clone(&self.target), Arc::clone(&self.texts), Arc::clone(collector));
            let timeout = self.timeout;
            tasks.spawn(async move { collector.measure(&conn, &target, texts.get(k), timeout).await });
            at += match arrivals {
                Arrivals::Fixed => 1.0 / rate,
                Arrivals::Poisson => -(1.0 - rng.next_f64()).ln() / rate,
            };
        }
        while let Some(r) = tasks.join_next().await {
            r.map_err(|e| BenchError::Task { what: "a request task failed".into(), source: e })?;
        }
        conn.close().await;
        Ok(())
    }
}

impl Level {
    fn name(self) -> &'static str {
        match self {
            Self::Closed(_) => "concurrency",
            Self::Open(_) => "rate",
        }
    }

    fn value(self) -> String {
        match self {
            Self::Closed(c) => c.to_string(),
            Self::Open(r) => format!("{r}/s"),
        }
    }
}

/// A deterministic generator for the Poisson arrivals (SplitMix64).
#[derive(Debug)]
struct SplitMix64(u64);

impl SplitMix64 {
    /// Uniform in [0, 1).
    fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A line on stderr, rewritten in place four times a second while a level runs (on a terminal only).
struct Progress {
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    fn start(label: &str, level: Level, stop: Stop, collector: Arc<Collector>) -> Self {
        if !std::io::stderr().is_terminal() {
            return Self { task: None };
        }
        let head = format!("{label}: {} {}", level.name(), level.value());
        let t0 = Instant::now();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tick.tick().await;
                let done = collector.done.load(Ordering::Relaxed);
                let errors = collector.errors.load(Ordering::Relaxed);
                let in_flight = collector.in_flight.load(Ordering::Relaxed);
                let elapsed = t0.elapsed().as_secs_f64();
                let of = match stop {
                    Stop::Duration(d) => format!("{elapsed:.1}/{d} s"),
                    Stop::Requests(n) => format!("{done}/{n} requests, {elapsed:.1} s"),
                };
                let mut err = std::io::stderr().lock();
                let _ =
                    write!(err, "\r\x1b[2K{head}: {of}, {done} done, {errors} errors, {in_flight} in flight");
                let _ = err.flush();
            }
        });
        Self { task: Some(task) }
    }

    async fn stop(self) {
        if let Some(task) = self.task {
            task.abort();
            let _ = task.await;
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poisson_gaps_average_the_rate() {
        let mut rng = SplitMix64(7);
        let n = 20_000;
        let rate = 4.0;
        let mean = (0..n).map(|_| -(1.0 - rng.next_f64()).ln() / rate).sum::<f64>() / f64::from(n);
        assert!((mean - 0.25).abs() < 0.01, "{mean}");
        let mut a = SplitMix64(1);
        let mut b = SplitMix64(1);
        assert_eq!(a.next_f64().to_bits(), b.next_f64().to_bits());
    }

    #[test]
    fn series_group_by_label_across_files() {
        let dir = tempfile::tempdir().unwrap();
        let level = |label: &str, c: usize| LevelSummary {
            label: label.into(),
            concurrency: c,
            ..Default::default()
        };
        let a = dir.path().join("a.json");
        let b = dir.path().join("b.json");
        std::fs::write(&a, serde_json::to_string(&[level("chorus", 2), level("piper", 1)]).unwrap()).unwrap();
        std::fs::write(&b, serde_json::to_string(&[level("chorus", 1), level("", 4)]).unwrap()).unwrap();
        let s = read_series(&[a, b]).unwrap();
        let names: Vec<&str> = s.iter().map(|(l, _)| l.as_str()).collect();
        assert_eq!(names, ["chorus", "piper", "b"]);
        let xs: Vec<usize> = s[0].1.iter().map(|l| l.concurrency).collect();
        assert_eq!(xs, [1, 2]);
    }
}
