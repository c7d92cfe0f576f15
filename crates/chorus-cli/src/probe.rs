//! `chorus probe ready`: exit 0 only when a role's /ready answers 200 (a Kubernetes exec probe).

use std::time::Duration;

use anyhow::{Context, Result, bail};

#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    #[command(subcommand)]
    pub check: ProbeCheck,
}

#[derive(Debug, clap::Subcommand)]
pub enum ProbeCheck {
    /// Ready: the worker's model is loaded and warm (capacity above 0), or the API is up.
    Ready {
        /// The role's /ready URL.
        #[arg(long, env = "CHORUS_PROBE_URL", default_value = "http://127.0.0.1:8080/ready")]
        url: String,
        /// Seconds to wait for an answer.
        #[arg(long, default_value_t = 2)]
        timeout: u64,
    },
}

pub fn run(args: ProbeArgs) -> Result<()> {
    match args.check {
        ProbeCheck::Ready { url, timeout } => {
            let status = chorus_bench::blocking::get_status(&url, Duration::from_secs(timeout))
                .with_context(|| format!("{url}: no HTTP answer"))?;
            if status != 200 {
                bail!("{url} answered {status}: not ready");
            }
            Ok(())
        }
    }
}
