//! Tenant API keys: a name, limits, a revoked flag, and the SHA-256 of the key (the key itself is shown once, when
//! made, and never stored).
//!
//! Keys come from two places, merged by name (the data directory wins): the proxy's config file and
//! `<data>/keys.json`, which `chorus keys add|revoke` edits (written atomically; the proxy notices within a second).

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chorus_proto::license::TenantKey;

use chorus_proto::secret::hash_key;

/// A key as stored.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredKey {
    pub name: String,
    /// Lowercase hex SHA-256 of the key.
    pub sha256: String,
    #[serde(default)]
    pub max_concurrent: Option<u32>,
    #[serde(default)]
    pub requests_per_minute: Option<u32>,
    #[serde(default)]
    pub revoked: bool,
    /// May download the audit (`GET /audit`).
    #[serde(default)]
    pub admin: bool,
    #[serde(default)]
    pub created_at: Option<String>,
}

impl std::fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredKey")
            .field("name", &self.name)
            .field("revoked", &self.revoked)
            .field("admin", &self.admin)
            .finish_non_exhaustive()
    }
}

impl StoredKey {
    pub fn to_tenant(&self) -> TenantKey {
        TenantKey {
            name: self.name.clone(),
            sha256: self.sha256.clone(),
            max_concurrent: self.max_concurrent,
            requests_per_minute: self.requests_per_minute,
            revoked: self.revoked,
        }
    }
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct KeyFile {
    keys: Vec<StoredKey>,
}

/// Errors of the key store.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("keys file {0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("keys file {0} is invalid: {1}")]
    Invalid(PathBuf, String),
    #[error("a key named '{0}' already exists")]
    Exists(String),
    #[error("no key named '{0}'")]
    Unknown(String),
    #[error("cannot generate a key: {0}")]
    Random(String),
}

/// A new high-entropy key (`chk_` and 256 random bits).
pub fn generate_key() -> Result<String, KeyError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| KeyError::Random(e.to_string()))?;
    Ok(format!("chk_{}", URL_SAFE_NO_PAD.encode(bytes)))
}

/// `<data>/keys.json`.
#[derive(Debug, Clone)]
pub struct KeyStore {
    path: PathBuf,
}

impl KeyStore {
    pub fn new(data_dir: &Path) -> Self {
        Self { path: data_dir.join("keys.json") }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn load(&self) -> Result<Vec<StoredKey>, KeyError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice::<KeyFile>(&bytes)
                .map(|f| f.keys)
                .map_err(|e| KeyError::Invalid(self.path.clone(), e.to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(KeyError::Io(self.path.clone(), e)),
        }
    }

    fn save(&self, keys: Vec<StoredKey>) -> Result<(), KeyError> {
        let io = |e| KeyError::Io(self.path.clone(), e);
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let bytes = serde_json::to_vec_pretty(&KeyFile { keys })
            .map_err(|e| KeyError::Invalid(self.path.clone(), e.to_string()))?;
        crate::store::write_atomic(&self.path, &bytes).map_err(io)
    }

    /// Adds a key; returns the key itself (to show once).
    pub fn add(
        &self,
        name: &str,
        max_concurrent: Option<u32>,
        requests_per_minute: Option<u32>,
        admin: bool,
    ) -> Result<String, KeyError> {
        let mut keys = self.load()?;
        if keys.iter().any(|k| k.name == name) {
            return Err(KeyError::Exists(name.to_owned()));
        }
        let key = generate_key()?;
        keys.push(StoredKey {
            name: name.to_owned(),
            sha256: hash_key(&key),
            max_concurrent,
            requests_per_minute,
            revoked: false,
            admin,
            created_at: Some(crate::license::format_time(crate::license::now_secs())),
        });
        self.save(keys)?;
        Ok(key)
    }

    /// Marks a key revoked. A key known only from `config_keys` gets a revoked entry here (which wins).
    pub fn revoke(&self, name: &str, config_keys: &[StoredKey]) -> Result<(), KeyError> {
        let mut keys = self.load()?;
        if let Some(k) = keys.iter_mut().find(|k| k.name == name) {
            k.revoked = true;
        } else if let Some(k) = config_keys.iter().find(|k| k.name == name) {
            keys.push(StoredKey { revoked: true, ..k.clone() });
        } else {
            return Err(KeyError::Unknown(name.to_owned()));
        }
        self.save(keys)
    }
}

/// Config keys overlaid by stored keys of the same name.
pub fn merge(config: &[StoredKey], stored: &[StoredKey]) -> Vec<StoredKey> {
    let mut out: Vec<StoredKey> =
        config.iter().filter(|c| !stored.iter().any(|s| s.name == c.name)).cloned().collect();
    out.extend(stored.iter().cloned());
    out
}
