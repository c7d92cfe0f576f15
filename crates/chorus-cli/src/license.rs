//! `chorus license-proxy` (the role), `chorus keys` (tenant keys), `chorus audit verify`, and the vendor-side
//! `chorus license keygen|sign` (test and development licenses).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use chorus_license::LicenseProxy;
use chorus_license::keys::{KeyStore, merge};
use chorus_license::license::{KeyPair, License, format_time, now_secs};

use crate::settings::args::{ConfigArgs, ConnArgs, DataArgs, LicenseArgs};
use crate::settings::roles::{ProxySettings, Role, defaults};
use crate::settings::{self, Layers};
use crate::{metrics, process};

/// Flags of `chorus license-proxy`.
#[derive(Debug, clap::Args)]
pub struct ProxyArgs {
    /// Address of /license, /audit, /healthz and /metrics (default 127.0.0.1:8080).
    #[arg(long, env = "CHORUS_LICENSE_LISTEN")]
    pub listen: Option<SocketAddr>,
    #[command(flatten)]
    pub license: LicenseArgs,
    /// NATS server URL, where API servers reach the proxy (default nats://127.0.0.1:4222). Empty: HTTP only.
    #[arg(long = "nats", env = "CHORUS_NATS_URL")]
    pub nats: Option<String>,
    #[command(flatten)]
    pub config: ConfigArgs,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// The settings of `chorus license-proxy`: defaults, the config file, the environment and the flags.
pub fn settings(args: &ProxyArgs) -> Result<settings::file::FileSettings> {
    let mut layers = Layers::file(args.config.config.as_deref())?
        .flags(&args.license.data)?
        .flags(&args.license)?
        .flags(&args.conn)?;
    if let Some(addr) = args.listen {
        layers = layers.set(Some("license"), "listen", addr.to_string());
    }
    if let Some(nats) = &args.nats {
        layers = layers.set(None, "nats", nats.as_str());
    }
    if args.license.air_gapped {
        layers = layers.set(Some("license"), "mode", "air-gapped");
    }
    Ok(layers.resolve(&defaults(Role::LicenseProxy))?)
}

/// The data directory of `chorus keys`: its flag, else the config file's, else the default.
fn data_dir(data: &DataArgs, config: Option<&Path>) -> Result<(PathBuf, settings::file::LicenseSection)> {
    let merged = Layers::file(config)?.flags(data)?.resolve(&defaults(Role::LicenseProxy))?;
    let section = merged.license.unwrap_or_default();
    let dir = section.data.clone().context("internal: no data directory")?;
    Ok((dir, section))
}

/// Metrics text for the proxy's /metrics.
pub fn metrics_render(
    handle: metrics_exporter_prometheus::PrometheusHandle,
) -> chorus_license::http::MetricsRender {
    Arc::new(move || handle.render())
}

pub fn run_proxy(args: ProxyArgs) -> Result<()> {
    let merged = settings(&args)?;
    let s = ProxySettings::resolve(&merged)?;
    if settings::printed(&args.config, &merged)? {
        return Ok(());
    }
    let serve_config = s.server.port("license")?;
    let handle = metrics::install_metrics()?;
    let runtime = process::runtime()?;
    let data = s.proxy.data_dir.clone();
    runtime.block_on(async move {
        let proxy = LicenseProxy::start(s.proxy).context("cannot start the license proxy")?;
        let listener = tokio::net::TcpListener::bind(s.listen)
            .await
            .with_context(|| format!("cannot listen on {}", s.listen))?;
        let _host = if s.nats.trim().is_empty() {
            None
        } else {
            let client = process::connect_nats(&s.nats, "chorus-license-proxy").await?;
            let host = chorus_bus::NatsLicenseHost::start(client, Arc::clone(&proxy) as _)
                .await
                .context("cannot serve the license proxy on NATS")?;
            Some(host)
        };
        let state = proxy.current();
        tracing::info!(
            listen = %s.listen,
            mode = state.mode.as_str(),
            verdict = ?state.verdict,
            data = %data.display(),
            "License proxy serving."
        );
        let app = chorus_license::http::router(Arc::clone(&proxy), Some(metrics_render(handle)));
        chorus_api::serve::serve(listener, app, serve_config, process::shutdown_signal())
            .await
            .context("license proxy server")?;
        Ok(())
    })
}

// ---- chorus keys --------------------------------------------------------------------------------------------

#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Make a tenant key; the key is printed once (only its SHA-256 is stored).
    Add {
        /// The tenant's name (shown in usage records).
        name: String,
        /// Requests in flight at once for this key.
        #[arg(long)]
        max_concurrent: Option<u32>,
        /// Requests started per minute for this key.
        #[arg(long)]
        rpm: Option<u32>,
        /// The key may also download GET /audit.
        #[arg(long)]
        admin: bool,
        #[command(flatten)]
        data: DataArgs,
    },
    /// List the tenant keys (names and limits; never the keys).
    List {
        #[command(flatten)]
        data: DataArgs,
        /// Include the keys of this config file's [license] table.
        #[arg(long, env = "CHORUS_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Revoke a key: API servers refuse it as soon as the proxy publishes the change (within a second).
    Revoke {
        name: String,
        #[command(flatten)]
        data: DataArgs,
        #[arg(long, env = "CHORUS_CONFIG")]
        config: Option<PathBuf>,
    },
}

pub fn run_keys(cmd: KeysCommand) -> Result<()> {
    match cmd {
        KeysCommand::Add { name, max_concurrent, rpm, admin, data } => {
            if name.trim().is_empty() {
                bail!("the key name is empty");
            }
            let (dir, _) = data_dir(&data, None)?;
            let key = KeyStore::new(&dir).add(name.trim(), max_concurrent, rpm, admin)?;
            eprintln!("Key '{}' added. It is shown once; store it now:", name.trim());
            println!("{key}");
            Ok(())
        }
        KeysCommand::List { data, config } => {
            let (dir, section) = data_dir(&data, config.as_deref())?;
            let keys = merge(&section.keys.unwrap_or_default(), &KeyStore::new(&dir).load()?);
            println!("{:<24} {:>14} {:>8} {:>6} {:>8}", "NAME", "MAX_CONCURRENT", "RPM", "ADMIN", "REVOKED");
            let dash = |v: Option<u32>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
            for k in keys {
                println!(
                    "{:<24} {:>14} {:>8} {:>6} {:>8}",
                    k.name,
                    dash(k.max_concurrent),
                    dash(k.requests_per_minute),
                    k.admin,
                    k.revoked
                );
            }
            Ok(())
        }
        KeysCommand::Revoke { name, data, config } => {
            let (dir, section) = data_dir(&data, config.as_deref())?;
            KeyStore::new(&dir).revoke(&name, &section.keys.unwrap_or_default())?;
            eprintln!("Key '{name}' revoked.");
            Ok(())
        }
    }
}

// ---- chorus audit ---------------------------------------------------------------------------------------------

#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Check an audit export (GET /audit): the manifest signature, every segment, the hash chain, the head.
    /// Exits non-zero and lists every problem found.
    Verify {
        /// The tar file.
        file: PathBuf,
        /// The deployment's public key (GET /license shows it) the manifest must be signed with.
        #[arg(long)]
        public_key: Option<String>,
    },
}

pub fn run_audit(cmd: AuditCommand) -> Result<()> {
    match cmd {
        AuditCommand::Verify { file, public_key } => {
            let bytes = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let report = chorus_license::audit::verify(&bytes, public_key.as_deref());
            print!("{report}");
            if report.ok() {
                Ok(())
            } else {
                bail!("the audit export failed verification ({} problems)", report.problems.len())
            }
        }
    }
}

// ---- chorus license (vendor side) -----------------------------------------------------------------------------

#[derive(Debug, clap::Subcommand)]
pub enum LicenseCommand {
    /// (Vendor/development) Make a license-signing key pair: the private seed goes to FILE (mode 0600), the public
    /// key (what deployments trust with --trust-key) is printed.
    Keygen {
        /// Where to write the private key.
        #[arg(long)]
        out: PathBuf,
    },
    /// (Vendor/development) Sign a license with a key from `keygen`; prints the license JSON to post.
    Sign {
        /// The private key file from `chorus license keygen`.
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        licensee: String,
        /// RFC 3339 UTC, e.g. 2027-01-01T00:00:00Z.
        #[arg(long)]
        expires_at: String,
        /// RFC 3339 UTC (default: now).
        #[arg(long)]
        issued_at: Option<String>,
        #[arg(long)]
        max_concurrent_streams: Option<u32>,
        /// A model id the license allows; repeat for several (default: every model).
        #[arg(long = "model")]
        models: Vec<String>,
        /// The license id (default: a UUID).
        #[arg(long)]
        id: Option<String>,
    },
}

pub fn run_license(cmd: LicenseCommand) -> Result<()> {
    match cmd {
        LicenseCommand::Keygen { out } => {
            if out.exists() {
                bail!("{} exists; not overwriting a key", out.display());
            }
            let key = KeyPair::generate()?;
            chorus_license::store::write_private(&out, key.seed_base64().as_bytes())
                .with_context(|| format!("cannot write {}", out.display()))?;
            eprintln!("Private key written to {}. Public key (trust it with --trust-key):", out.display());
            println!("{}", key.public_base64());
            Ok(())
        }
        LicenseCommand::Sign { key, licensee, expires_at, issued_at, max_concurrent_streams, models, id } => {
            let text =
                std::fs::read_to_string(&key).with_context(|| format!("cannot read {}", key.display()))?;
            let pair = KeyPair::from_seed_base64(&text)?;
            let license = License {
                id: id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
                licensee,
                issued_at: issued_at.unwrap_or_else(|| format_time(now_secs())),
                expires_at,
                max_concurrent_streams,
                models: (!models.is_empty()).then_some(models),
            };
            for t in [&license.issued_at, &license.expires_at] {
                humantime::parse_rfc3339(t).with_context(|| format!("'{t}' is not RFC 3339 UTC (…Z)"))?;
            }
            let doc = pair.sign_license(&license)?;
            println!("{}", String::from_utf8_lossy(&doc));
            Ok(())
        }
    }
}
