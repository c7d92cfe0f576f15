//! `chorus bench`: model load time, time to first audio and real-time factor, with the reference Python Piper
//! measured in the same run on the same voice file, texts and ONNX Runtime version, reported as ratios.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use chorus_engine::{Engine, EngineConfig, SynthesisRequest};

use crate::{BenchError, DEFAULT_VOICE, Result};

/// A short conversational sentence (time to first audio).
pub const SHORT_TEXT: &str = "Hello there, how can I help you today?";
/// About 200 characters over three sentences (real-time factor).
pub const PARAGRAPH: &str = "The museum opens at nine in the morning and closes at six. Visitors can explore \
    the new exhibition on ancient navigation, which features maps, instruments and ship models from around the world.";

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Measured repetitions of each text (after one warm-up run) [default: 10]. With --url: the interleaved
    /// one-at-a-time comparison of the servers instead of the load benchmark.
    #[arg(long)]
    pub iterations: Option<usize>,
    /// Engine loads measured per configuration.
    #[arg(long, default_value_t = 3)]
    pub loads: usize,
    /// ONNX Runtime intra-op thread counts to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    pub threads: Vec<usize>,
    /// Voice to measure.
    #[arg(long, default_value = DEFAULT_VOICE)]
    pub voice: String,
    /// Python interpreter with `piper-tts` installed (`scripts/setup --dev` makes `.venv`); `none` skips the peer.
    #[arg(long, env = "CHORUS_BENCH_PEER_PYTHON")]
    pub peer_python: Option<String>,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Measure a running server instead of the engine in-process: the load benchmark (the flags below); with
    /// --iterations or several --url, the servers one request at a time, interleaved.
    #[arg(long)]
    pub url: Vec<String>,
    /// API key for --url servers.
    #[arg(long, env = "CHORUS_BENCH_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    #[command(flatten)]
    pub load: Box<crate::load::LoadArgs>,
}

/// Repetitions of the in-process and interleaved benchmarks.
const DEFAULT_ITERATIONS: usize = 10;

impl BenchArgs {
    fn iterations(&self) -> usize {
        self.iterations.unwrap_or(DEFAULT_ITERATIONS)
    }
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct Measurement {
    load_s: f64,
    /// Sorted samples.
    ttfa_s: Vec<f64>,
    /// Sorted samples.
    rtf: Vec<f64>,
    /// Barge-in: from dropping a synthesis while its next chunk computes to the model threads holding none of its
    /// work (queue empty, no pass running), sorted samples (chorus only).
    #[serde(default)]
    cancel_s: Vec<f64>,
}

#[derive(Debug, serde::Serialize)]
struct Row {
    threads: usize,
    chorus: Measurement,
    peer: Option<Measurement>,
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Runs `chorus bench`; `engine` is where the voices and run-time libraries are (the in-process measurement).
pub fn run(engine: &EngineConfig, args: BenchArgs) -> Result<()> {
    let iterations = args.iterations();
    if iterations == 0 || args.loads == 0 || args.threads.is_empty() {
        return Err(BenchError::Usage("--iterations, --loads and --threads must be positive".into()));
    }
    match args.url.as_slice() {
        [] if !args.load.from.is_empty() => {
            return crate::load::report(args.json.as_deref(), &args.load);
        }
        [] if args.load.any_given() => {
            return Err(BenchError::Usage(
                "the load benchmark needs --url (or --from files to report)".into(),
            ));
        }
        [] => {}
        [url] if args.iterations.is_none() => {
            return crate::load::run(
                url,
                args.api_key.as_deref(),
                &args.voice,
                args.json.as_deref(),
                &args.load,
            );
        }
        [_, ..] => {
            if args.load.any_given() {
                return Err(BenchError::Usage(
                    "--iterations and several --url compare servers one request at a time: drop the load flags"
                        .into(),
                ));
            }
            return run_urls(&args, iterations);
        }
    }
    let peer_python = match args.peer_python.as_deref() {
        Some("none") => None,
        Some(p) => Some(PathBuf::from(p)),
        None => {
            let venv = PathBuf::from(".venv/bin/python");
            venv.is_file().then_some(venv)
        }
    };
    let voice_dir = engine.models_dir.join(&args.voice);
    let mut rows = Vec::new();
    for &threads in &args.threads {
        eprintln!("measuring chorus with {threads} thread(s)...");
        let chorus = measure_chorus(engine, &args, threads)?;
        let peer = match &peer_python {
            Some(python) => {
                eprintln!("measuring piper-tts (Python) with {threads} thread(s)...");
                Some(measure_peer(python, &voice_dir, &args.voice, threads, args.iterations())?)
            }
            None => None,
        };
        rows.push(Row { threads, chorus, peer });
    }
    println!("{}", render(&rows, &args));
    if let Some(path) = &args.json {
        crate::load::write_json(path, &rows)?;
    }
    Ok(())
}

fn run_urls(args: &BenchArgs, iterations: usize) -> Result<()> {
    let results =
        crate::url::measure(&args.url, args.api_key.as_deref(), &args.voice, SHORT_TEXT, iterations)?;
    let base = results.first().map(|r| quantile(&r.ttfa_s, 0.5)).unwrap_or(f64::NAN);
    let mut s = format!(
        "POST /tts/bytes, \"{SHORT_TEXT}\", {} requests per server, interleaved, one at a time\n\n",
        iterations
    );
    s.push_str("| server | TTFA p50 (ms) | TTFA p90 (ms) | total p50 (ms) | TTFA p50 minus the first server's (ms) |\n");
    s.push_str("|---|---|---|---|---|\n");
    for r in &results {
        let p50 = quantile(&r.ttfa_s, 0.5);
        s.push_str(&format!(
            "| {} | {:.2} | {:.2} | {:.2} | {:+.2} |\n",
            r.url,
            p50 * 1e3,
            quantile(&r.ttfa_s, 0.9) * 1e3,
            quantile(&r.total_s, 0.5) * 1e3,
            (p50 - base) * 1e3
        ));
    }
    println!("{s}");
    if let Some(path) = &args.json {
        crate::load::write_json(path, &results)?;
    }
    Ok(())
}

fn measure_chorus(engine: &EngineConfig, args: &BenchArgs, threads: usize) -> Result<Measurement> {
    let mut config = engine.clone();
    config.voices = vec![args.voice.clone()];
    config.intra_threads = threads;
    config.sessions_per_voice = 1;
    let mut loads = Vec::new();
    let mut engine = None;
    for _ in 0..args.loads {
        drop(engine.take());
        let t0 = Instant::now();
        let e = Engine::load(&config)?;
        loads.push(t0.elapsed().as_secs_f64());
        engine = Some(e);
    }
    let engine = engine.ok_or_else(|| BenchError::Measure("no engine loaded".into()))?;
    loads.sort_by(f64::total_cmp);

    let short = SynthesisRequest::new(SHORT_TEXT, &args.voice);
    let paragraph = SynthesisRequest::new(PARAGRAPH, &args.voice);
    // One unmeasured run of each text.
    for r in [&short, &paragraph] {
        for c in engine.synthesize(r)? {
            c?;
        }
    }
    let mut ttfa = Vec::with_capacity(args.iterations());
    for _ in 0..args.iterations() {
        let t0 = Instant::now();
        let mut synthesis = engine.synthesize(&short)?;
        synthesis.next().ok_or_else(no_audio)??;
        ttfa.push(t0.elapsed().as_secs_f64());
    }
    let mut rtf = Vec::with_capacity(args.iterations());
    for _ in 0..args.iterations() {
        let t0 = Instant::now();
        let synthesis = engine.synthesize(&paragraph)?;
        let rate = f64::from(synthesis.sample_rate());
        let mut samples = 0usize;
        for c in synthesis {
            samples += c?.samples.len();
        }
        rtf.push(t0.elapsed().as_secs_f64() / (samples as f64 / rate));
    }
    // Barge-in: drop the paragraph's synthesis while its second chunk computes.
    let pool = engine.pool(&args.voice).ok_or_else(|| BenchError::Measure("the voice has no pool".into()))?;
    let mut cancel = Vec::with_capacity(args.iterations());
    for _ in 0..args.iterations() {
        let mut synthesis = engine.synthesize(&paragraph)?;
        synthesis.next().ok_or_else(no_audio)??;
        std::thread::sleep(std::time::Duration::from_millis(20));
        let t0 = Instant::now();
        drop(synthesis);
        while pool.queued() > 0 || pool.busy() > 0 {
            if t0.elapsed().as_secs() > 10 {
                return Err(BenchError::Timeout(
                    "a cancelled synthesis still held a model thread after 10 s".into(),
                ));
            }
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
        cancel.push(t0.elapsed().as_secs_f64());
    }
    ttfa.sort_by(f64::total_cmp);
    rtf.sort_by(f64::total_cmp);
    cancel.sort_by(f64::total_cmp);
    Ok(Measurement { load_s: quantile(&loads, 0.5), ttfa_s: ttfa, rtf, cancel_s: cancel })
}

fn measure_peer(
    python: &Path,
    voice_dir: &Path,
    voice: &str,
    threads: usize,
    iterations: usize,
) -> Result<Measurement> {
    let script = peer_script()?;
    let out = Command::new(python)
        .arg(&script)
        .arg(voice_dir.join(format!("{voice}.onnx")))
        .arg(voice_dir.join(format!("{voice}.onnx.json")))
        .arg(threads.to_string())
        .arg(iterations.to_string())
        .arg(SHORT_TEXT)
        .arg(PARAGRAPH)
        .output()
        .map_err(|e| BenchError::io(format!("cannot run {}", python.display()), e))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr.lines().last().unwrap_or("");
        return Err(BenchError::Measure(format!("the Python peer failed: {last}")));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| BenchError::json("the Python peer printed no JSON", e))
}

fn peer_script() -> Result<PathBuf> {
    let rel = Path::new("scripts/bench_peer_piper.py");
    if rel.is_file() {
        return Ok(rel.to_path_buf());
    }
    let exe = std::env::current_exe().map_err(|e| BenchError::io("cannot find the chorus executable", e))?;
    exe.ancestors().map(|d| d.join(rel)).find(|p| p.is_file()).ok_or_else(|| {
        BenchError::Usage("scripts/bench_peer_piper.py not found: run from the repository root".into())
    })
}

/// The engine's iterator of chunks ended before the first.
fn no_audio() -> BenchError {
    BenchError::Measure("no audio".into())
}

/// One table row: name, chorus median and p90, peer median and p90 (NaN where a single value).
type Metric<'a> = (&'a str, f64, f64, Option<(f64, f64)>);

fn render(rows: &[Row], args: &BenchArgs) -> String {
    let mut s = format!(
        "voice {}, {} iterations per text, median (p90); ratio = chorus / piper-tts (below 1 is better for chorus)\n\n",
        args.voice,
        args.iterations()
    );
    s.push_str("| threads | metric | chorus | piper-tts (Python) | ratio |\n|---|---|---|---|---|\n");
    for row in rows {
        let c = &row.chorus;
        let p = row.peer.as_ref();
        let metrics: [Metric; 4] = [
            ("model load + warm-up (s)", c.load_s, f64::NAN, p.map(|p| (p.load_s, f64::NAN))),
            (
                "time to first audio, short sentence (ms)",
                quantile(&c.ttfa_s, 0.5) * 1e3,
                quantile(&c.ttfa_s, 0.9) * 1e3,
                p.map(|p| (quantile(&p.ttfa_s, 0.5) * 1e3, quantile(&p.ttfa_s, 0.9) * 1e3)),
            ),
            (
                "real-time factor, 200-char paragraph",
                quantile(&c.rtf, 0.5),
                quantile(&c.rtf, 0.9),
                p.map(|p| (quantile(&p.rtf, 0.5), quantile(&p.rtf, 0.9))),
            ),
            (
                "barge-in: cancel to model thread free (ms)",
                quantile(&c.cancel_s, 0.5) * 1e3,
                quantile(&c.cancel_s, 0.9) * 1e3,
                None,
            ),
        ];
        for (name, median, p90, peer) in metrics {
            let fmt = |m: f64, q: f64| {
                if q.is_nan() { format!("{m:.3}") } else { format!("{m:.3} ({q:.3})") }
            };
            let (peer_s, ratio) = match peer {
                Some((pm, pq)) => (fmt(pm, pq), format!("{:.2}", median / pm)),
                None => ("-".into(), "-".into()),
            };
            s.push_str(&format!(
                "| {} | {name} | {} | {peer_s} | {ratio} |\n",
                row.threads,
                fmt(median, p90)
            ));
        }
    }
    s
}
