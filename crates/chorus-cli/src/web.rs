//! Browser-facing settings of the API port: CORS origins (and, with `--tls-cert`, TLS).

use anyhow::Result;
use chorus_api::cors::CorsConfig;

use crate::common::ConfigFile;

/// Flags of the API port that browsers need (`serve` and `api`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct WebArgs {
    /// A browser origin allowed to call the API (CORS), e.g. https://app.example.com; `*` allows any; repeat for
    /// several. CHORUS_CORS_ORIGINS takes a comma-separated list. Default: none (no CORS headers).
    #[arg(long = "cors-origin", env = "CHORUS_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,
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
}
