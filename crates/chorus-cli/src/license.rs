//! `chorus license-proxy` (the role), `chorus keys` (tenant keys), `chorus audit verify`, and the vendor-side
//! `chorus license keygen|sign` (test and development licenses).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use chorus_license::keys::{KeyStore, StoredKey, merge};
use chorus_license::license::{KeyPair, License, format_time, now_secs};
use chorus_license::proxy::{DEFAULT_GRACE, DEFAULT_SEGMENT_BYTES};
use chorus_license::{LicenseProxy, ProxyConfig};
use chorus_proto::license::LicenseMode;

use crate::common::{self, ConfigFile};

/// The `[license]` table of the config file (`chorus serve` and `chorus license-proxy`).
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LicenseSection {
    /// `open`, `connected` or `air-gapped`.
    pub mode: Option<String>,
    /// Grace period, e.g. `7d` or `36h`.
    pub grace: Option<String>,
    /// Base64 Ed25519 public keys trusted to sign licenses.
    #[serde(default)]
    pub trusted_keys: Vec<String>,
    pub seed_license: Option<PathBuf>,
    pub segment_bytes: Option<u64>,
    /// Connected mode: the upstream license server (`https://…`).
    pub upstream: Option<String>,
    /// Connected mode: how often to contact it, e.g. `1h`.
    pub refresh: Option<String>,
    /// Tenant keys (hashes), overridden by name by the data directory's keys.json.
    #[serde(default)]
    pub keys: Vec<StoredKey>,
}

/// Flags of `chorus license-proxy`.
#[derive(Debug, clap::Args)]
pub struct ProxyArgs {
    /// Address of /license, /audit, /healthz and /metrics.
    #[arg(long, env = "CHORUS_LICENSE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub data: DataArgs,
    /// open (no license needed), connected, or air-gapped (a valid license needed). Default: open.
    #[arg(long, env = "CHORUS_LICENSE_MODE")]
    pub mode: Option<String>,
    /// Shorthand for --mode air-gapped (the Helm chart sets it from infra.authenticate).
    #[arg(long, env = "CHORUS_AIR_GAPPED")]
    pub air_gapped: bool,
    /// How long an expired or missing license still serves, e.g. 7d or 36h (default 7d).
    #[arg(long, env = "CHORUS_LICENSE_GRACE")]
    pub grace: Option<String>,
    /// A base64 Ed25519 public key trusted to sign licenses; repeat for several.
    #[arg(long = "trust-key", env = "CHORUS_LICENSE_TRUSTED_KEYS", value_delimiter = ',')]
    pub trust_keys: Vec<String>,
    /// A license file used only when no license is stored yet.
    #[arg(long, env = "CHORUS_SEED_LICENSE")]
    pub seed_license: Option<PathBuf>,
    /// A key allowed to download GET /audit (besides tenant keys added with --admin); comma-separated in the env.
    #[arg(long = "admin-key", env = "CHORUS_ADMIN_KEYS", value_delimiter = ',', hide_env_values = true)]
    pub admin_keys: Vec<Secret>,
    /// Connected mode: the upstream license server (https://…) the license is refreshed from and usage reported to.
    #[arg(long, env = "CHORUS_LICENSE_UPSTREAM")]
    pub upstream: Option<String>,
    /// Connected mode: a bearer token for the upstream server.
    #[arg(long, env = "CHORUS_LICENSE_UPSTREAM_TOKEN", hide_env_values = true)]
    pub upstream_token: Option<Secret>,
    /// Connected mode: how often to contact the upstream server, e.g. 1h (default) or 10m.
    #[arg(long, env = "CHORUS_LICENSE_REFRESH")]
    pub refresh: Option<String>,
    /// NATS server URL, where API servers reach the proxy. Empty: HTTP only.
    #[arg(long = "nats", env = "CHORUS_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats: String,
    /// A TOML config file (its [license] table, and [server]).
    #[arg(long, env = "CHORUS_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub conn: crate::common::ConnArgs,
}

/// A secret flag value (a key, a token): never shown by `Debug`.
#[derive(Clone)]
pub struct Secret(pub String);

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(redacted)")
    }
}

/// The data directory flag.
#[derive(Debug, Clone, clap::Args)]
pub struct DataArgs {
    /// The proxy's data directory: licenses, keys, the usage ledger, the deployment key (default:
    /// $XDG_DATA_HOME/chorus/license, or ~/.local/share/chorus/license).
    #[arg(long = "data", alias = "data-dir", env = "CHORUS_LICENSE_DATA")]
    pub dir: Option<PathBuf>,
}

impl DataArgs {
    pub fn dir(&self) -> PathBuf {
        self.dir.clone().unwrap_or_else(default_data_dir)
    }
}

/// `$XDG_DATA_HOME/chorus/license`, else `~/.local/share/chorus/license`, else `./chorus-license`.
pub fn default_data_dir() -> PathBuf {
    let nonempty = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(xdg) = nonempty("XDG_DATA_HOME") {
        return xdg.join("chorus").join("license");
    }
    if let Some(home) = nonempty("HOME") {
        return home.join(".local").join("share").join("chorus").join("license");
    }
    PathBuf::from("chorus-license")
}

/// Everything that configures a proxy, however it is run (holds secrets: no `Debug`).
#[derive(Default)]
pub struct ProxyOptions {
    pub data_dir: PathBuf,
    pub mode: Option<String>,
    pub air_gapped: bool,
    pub grace: Option<String>,
    pub trust_keys: Vec<String>,
    pub seed_license: Option<PathBuf>,
    pub admin_keys: Vec<String>,
    pub upstream: Option<String>,
    pub upstream_token: Option<String>,
    pub refresh: Option<String>,
}

pub fn parse_mode(text: &str) -> Result<LicenseMode> {
    match text.trim().to_ascii_lowercase().as_str() {
        "open" => Ok(LicenseMode::Open),
        "connected" => Ok(LicenseMode::Connected),
        "air-gapped" | "airgapped" | "air_gapped" => Ok(LicenseMode::AirGapped),
        other => bail!("unknown license mode '{other}' (open, connected or air-gapped)"),
    }
}

/// Flags over the config file over defaults.
pub fn proxy_config(opts: ProxyOptions, file: &ConfigFile) -> Result<ProxyConfig> {
    let section = file.license.clone().unwrap_or_default();
    let mode = if opts.air_gapped {
        LicenseMode::AirGapped
    } else {
        match opts.mode.as_deref().or(section.mode.as_deref()) {
            Some(m) => parse_mode(m)?,
            None => LicenseMode::Open,
        }
    };
    let grace = match opts.grace.as_deref().or(section.grace.as_deref()) {
        Some(g) => humantime::parse_duration(g).with_context(|| format!("invalid grace period '{g}'"))?,
        None => DEFAULT_GRACE,
    };
    let mut trusted = section.trusted_keys.clone();
    trusted.extend(opts.trust_keys.into_iter().filter(|k| !k.trim().is_empty()));
    let mut config = ProxyConfig::new(opts.data_dir, mode);
    config.grace = grace;
    config.trusted_keys = trusted;
    config.seed_license = opts.seed_license.or(section.seed_license.clone());
    config.config_keys = section.keys.clone();
    config.admin_keys = opts.admin_keys.into_iter().filter(|k| !k.trim().is_empty()).collect();
    config.max_segment_bytes = section.segment_bytes.unwrap_or(DEFAULT_SEGMENT_BYTES);
    config.upstream = opts.upstream.or(section.upstream.clone()).filter(|u| !u.trim().is_empty());
    config.upstream_token = opts.upstream_token.filter(|t| !t.trim().is_empty());
    if let Some(r) = opts.refresh.as_deref().or(section.refresh.as_deref()) {
        config.refresh =
            humantime::parse_duration(r).with_context(|| format!("invalid refresh interval '{r}'"))?;
    }
    Ok(config)
}

/// Metrics text for the proxy's /metrics.
pub fn metrics_render(
    handle: metrics_exporter_prometheus::PrometheusHandle,
) -> chorus_license::http::MetricsRender {
    Arc::new(move || handle.render())
}

pub fn run_proxy(args: ProxyArgs) -> Result<()> {
    let file = ConfigFile::load(args.config.as_deref())?;
    let serve_config = args.conn.serve_config(&file, "license")?;
    let metrics = common::install_metrics()?;
    let runtime = common::runtime()?;
    let opts = ProxyOptions {
        data_dir: args.data.dir(),
        mode: args.mode.clone(),
        air_gapped: args.air_gapped,
        grace: args.grace.clone(),
        trust_keys: args.trust_keys.clone(),
        seed_license: args.seed_license.clone(),
        admin_keys: args.admin_keys.iter().map(|k| k.0.clone()).collect(),
        upstream: args.upstream.clone(),
        upstream_token: args.upstream_token.as_ref().map(|t| t.0.clone()),
        refresh: args.refresh.clone(),
    };
    let config = proxy_config(opts, &file)?;
    runtime.block_on(async move {
        let proxy = LicenseProxy::start(config).context("cannot start the license proxy")?;
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let _host = if args.nats.trim().is_empty() {
            None
        } else {
            let client = common::connect_nats(&args.nats, "chorus-license-proxy").await?;
            let host = chorus_bus::NatsLicenseHost::start(client, Arc::clone(&proxy) as _)
                .await
                .context("cannot serve the license proxy on NATS")?;
            Some(host)
        };
        let state = proxy.current();
        tracing::info!(
            listen = %args.listen,
            mode = state.mode.as_str(),
            verdict = ?state.verdict,
            data = %args.data.dir().display(),
            "License proxy serving."
        );
        let app = chorus_license::http::router(Arc::clone(&proxy), Some(metrics_render(metrics)));
        chorus_api::serve::serve(listener, app, serve_config, common::shutdown_signal())
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
            let key = KeyStore::new(&data.dir()).add(name.trim(), max_concurrent, rpm, admin)?;
            eprintln!("Key '{}' added. It is shown once; store it now:", name.trim());
            println!("{key}");
            Ok(())
        }
        KeysCommand::List { data, config } => {
            let file = ConfigFile::load(config.as_deref())?;
            let section = file.license.unwrap_or_default();
            let keys = merge(&section.keys, &KeyStore::new(&data.dir()).load()?);
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
            let file = ConfigFile::load(config.as_deref())?;
            let section = file.license.unwrap_or_default();
            KeyStore::new(&data.dir()).revoke(&name, &section.keys)?;
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
            for p in &report.problems {
                println!("PROBLEM: {p}");
            }
            if let Some(m) = &report.manifest {
                println!(
                    "{} entries in {} segments; signed head: entry {} ({}); signed by {}",
                    report.entries,
                    m.segments.len(),
                    m.head.seq,
                    m.head.hash,
                    m.deployment_public_key
                );
            }
            if report.ok() {
                println!("OK: the audit export is intact.");
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
            write_private(&out, &key.seed_base64())?;
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

fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut f = options.open(path).with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

/// How long `chorus serve` waits for usage records to be acknowledged at shutdown.
pub const USAGE_FLUSH: Duration = Duration::from_secs(5);
