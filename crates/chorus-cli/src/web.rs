//! Browser-facing settings of the API port: CORS origins and TLS.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};
use chorus_api::cors::CorsConfig;
use chorus_api::tls::{DEFAULT_RELOAD_INTERVAL, TlsSettings};

use crate::common::ConfigFile;

/// Flags of the API port that browsers need (`serve` and `api`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct WebArgs {
    /// A browser origin allowed to call the API (CORS), e.g. https://app.example.com; `*` allows any; repeat for
    /// several. CHORUS_CORS_ORIGINS takes a comma-separated list. Default: none (no CORS headers).
    #[arg(long = "cors-origin", env = "CHORUS_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,
    /// Serve the API over TLS with this PEM certificate chain (leaf first); needs --tls-key. Reloaded when the file
    /// changes, without a restart. HTTP/2 and HTTP/1.1 (ALPN); WebSockets over TLS (wss://).
    #[arg(long, env = "CHORUS_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "CHORUS_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Seconds between two checks of the certificate files for a change (default 5).
    #[arg(long, env = "CHORUS_TLS_RELOAD_INTERVAL")]
    pub tls_reload_interval: Option<f64>,
}

/// The config file's `[tls]` table.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub reload_interval_seconds: Option<f64>,
}

impl WebArgs {
    /// The CORS origins: flags or env, else the config file's `cors_origins`; checked.
    pub fn cors(&self, file: &ConfigFile) -> Result<CorsConfig> {
        let origins: Vec<String> = if self.cors_origins.is_empty() {
            file.cors_origins.clone().unwrap_or_default()
        } else {
            self.cors_origins.clone()
        };
        let cors = CorsConfig {
            origins: origins.into_iter().map(|o| o.trim().to_owned()).filter(|o| !o.is_empty()).collect(),
        };
        cors.validate()?;
        Ok(cors)
    }

    /// TLS on the API port, when a certificate is configured (flags or env, else the config file's `[tls]`).
    pub fn tls(&self, file: &ConfigFile) -> Result<Option<TlsSettings>> {
        let section = file.tls.clone().unwrap_or_default();
        let cert = self.tls_cert.clone().or(section.cert);
        let key = self.tls_key.clone().or(section.key);
        let secs = self.tls_reload_interval.or(section.reload_interval_seconds);
        let reload_interval = match secs {
            None => DEFAULT_RELOAD_INTERVAL,
            Some(s) if s.is_finite() && s > 0.0 => Duration::from_secs_f64(s),
            Some(s) => bail!("the TLS reload interval must be a positive number of seconds, not {s}"),
        };
        match (cert, key) {
            (None, None) => Ok(None),
            (Some(cert), Some(key)) => Ok(Some(TlsSettings { cert, key, reload_interval })),
            (Some(_), None) => bail!("a TLS certificate needs its key (--tls-key, or key in [tls])"),
            (None, Some(_)) => bail!("a TLS key needs its certificate (--tls-cert, or cert in [tls])"),
        }
    }

    /// Starts TLS (inside the runtime) when configured: the certificate must load now.
    pub fn tls_acceptor(&self, file: &ConfigFile) -> Result<Option<chorus_api::tls::TlsAcceptor>> {
        let Some(settings) = self.tls(file)? else { return Ok(None) };
        let acceptor = chorus_api::tls::TlsAcceptor::start(settings.clone())
            .map_err(|e| anyhow::anyhow!("cannot serve TLS: {e}"))?;
        tracing::info!(cert = %settings.cert.display(), "TLS on the API port.");
        Ok(Some(acceptor))
    }
}
