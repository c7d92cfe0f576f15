//! `chorus`: the Chorus command line.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod bench;
mod paths;
mod say;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// Chorus: open, self-hostable, low-latency text to speech.
#[derive(Debug, Parser)]
#[command(name = "chorus", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    paths: paths::PathArgs,

    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `chorus_engine=debug`.
    #[arg(long, global = true, env = "CHORUS_LOG", default_value = "warn")]
    log: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Speak a text into an audio file (or stdout), chunk by chunk as it is synthesized.
    Say(say::SayArgs),
    /// Measure model load time, time to first audio and real-time factor, against the Python Piper peer.
    Bench(bench::BenchArgs),
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
    let filter = EnvFilter::try_new(&cli.log).unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let result = match cli.command {
        Command::Say(args) => say::run(&cli.paths, args),
        Command::Bench(args) => bench::run(&cli.paths, args),
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
