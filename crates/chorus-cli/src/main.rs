//! `chorus`: the Chorus command line.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod api;
mod artifacts;
mod engine;
mod license;
mod metrics;
mod models;
mod paths;
mod probe;
mod process;
mod say;
mod serve;
mod settings;
mod state;
mod worker;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// Chorus: open, self-hostable, low-latency text to speech.
#[derive(Debug, Parser)]
#[command(name = "chorus", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    paths: paths::PathArgs,

    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `chorus_engine=debug`. Default: `info` for serve,
    /// `warn` for the one-shot commands.
    #[arg(long, global = true, env = "CHORUS_LOG")]
    log: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the Cartesia-compatible API (and the OpenAI speech endpoint) with the installed voices, in one process.
    Serve(Box<serve::ServeArgs>),
    /// Run the API server alone, reaching workers over NATS (cluster mode).
    Api(Box<api::ApiRoleArgs>),
    /// Run one model's worker, serving jobs from NATS (cluster mode).
    Worker(Box<worker::WorkerArgs>),
    /// Move voices and pronunciation dictionaries between artifact stores (JSON lines), e.g. from staging to
    /// production.
    #[command(subcommand)]
    Artifacts(artifacts::ArtifactsCommand),
    /// Check a role's readiness (for Kubernetes probes).
    Probe(probe::ProbeArgs),
    /// Smoke-test a running deployment: status, voices, a WAV, a WebSocket round trip, the metric names; with
    /// --golive NODE_TYPE also a short load benchmark judged against the node type's documented figures.
    Smoke(chorus_bench::smoke::SmokeArgs),
    /// Speak a text into an audio file (or stdout), chunk by chunk as it is synthesized.
    Say(say::SayArgs),
    /// Run the license proxy: entitlement, tenant keys, the usage ledger, /license and /audit (port 8080).
    LicenseProxy(Box<license::ProxyArgs>),
    /// Manage tenant API keys in the license proxy's data directory.
    #[command(subcommand)]
    Keys(license::KeysCommand),
    /// Audit exports (GET /audit of the license proxy).
    #[command(subcommand)]
    Audit(license::AuditCommand),
    /// (Vendor/development) Make signing keys and sign licenses.
    #[command(subcommand)]
    License(license::LicenseCommand),
    /// Measure model load time, time to first audio and real-time factor, against the Python Piper peer; or load a
    /// running server with `--url` (TTFA, RTF, throughput and underruns per concurrency level).
    Bench(chorus_bench::engine::BenchArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // Usage errors in one line, like every other error.
            let msg = e.to_string();
            let first = msg.lines().next().unwrap_or("invalid arguments").trim_start_matches("error: ");
            eprintln!("error: {first}");
            return ExitCode::from(2);
        }
    };
    let default_level = match cli.command {
        Command::Serve(_) | Command::Api(_) | Command::Worker(_) | Command::LicenseProxy(_) => "info",
        Command::Say(_)
        | Command::Bench(_)
        | Command::Probe(_)
        | Command::Smoke(_)
        | Command::Artifacts(_)
        | Command::Keys(_)
        | Command::Audit(_)
        | Command::License(_) => "warn",
    };
    let filter = EnvFilter::try_new(cli.log.as_deref().unwrap_or(default_level))
        .unwrap_or_else(|_| EnvFilter::new(default_level));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let result = match cli.command {
        Command::Serve(args) => serve::run(&cli.paths, *args),
        Command::Api(args) => api::run(&cli.paths, *args),
        Command::Worker(args) => worker::run(&cli.paths, *args),
        Command::Artifacts(cmd) => artifacts::run(cmd),
        Command::Probe(args) => probe::run(args),
        Command::Smoke(args) => chorus_bench::smoke::run(args).map_err(anyhow::Error::from),
        Command::Say(args) => say::run(&cli.paths, args),
        Command::Bench(args) => {
            chorus_bench::engine::run(&cli.paths.engine_config(), args).map_err(anyhow::Error::from)
        }
        Command::LicenseProxy(args) => license::run_proxy(*args),
        Command::Keys(cmd) => license::run_keys(cmd),
        Command::Audit(cmd) => license::run_audit(cmd),
        Command::License(cmd) => license::run_license(cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the error and its causes.
            eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}
