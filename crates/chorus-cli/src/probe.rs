//! `chorus probe ready`: exit 0 only when a role's /ready answers 200 (a Kubernetes exec probe).

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
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
            let status = http_get_status(&url, Duration::from_secs(timeout))?;
            if status != 200 {
                bail!("{url} answered {status}: not ready");
            }
            Ok(())
        }
    }
}

/// The status code of a plain-HTTP GET (no TLS: the internal port is plain HTTP).
fn http_get_status(url: &str, timeout: Duration) -> Result<u16> {
    let rest = url.strip_prefix("http://").context("only http:// URLs are supported")?;
    let (authority, path) =
        rest.split_once('/').map_or((rest, "/".to_owned()), |(a, p)| (a, format!("/{p}")));
    let addr = authority
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {authority}"))?
        .next()
        .with_context(|| format!("no address for {authority}"))?;
    let mut stream =
        TcpStream::connect_timeout(&addr, timeout).with_context(|| format!("cannot connect to {url}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {authority}\r\nConnection: close\r\n\r\n")?;
    let mut head = [0u8; 64];
    let n = stream.read(&mut head)?;
    let line = String::from_utf8_lossy(&head[..n]);
    let code = line.split_whitespace().nth(1).and_then(|c| c.parse().ok());
    code.with_context(|| format!("{url} did not answer HTTP"))
}
