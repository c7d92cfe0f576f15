//! What the proxy keeps in its data directory:
//!
//! - `licenses/<sha256>.json`: every license accepted, as posted (the one with the latest `issued_at` is active);
//! - `deployment.key`: the deployment's Ed25519 key (base64 seed, mode 0600), made on first start, which signs
//!   audit manifests;
//! - `keys.json`: tenant keys (hashes only), see [`crate::keys`];
//! - `grace-since`: when the deployment was first seen without a valid license (so a restart does not reset the
//!   grace period);
//! - `ledger/`: the usage ledger, see [`crate::ledger`].

use std::io::Write as _;
use std::path::{Path, PathBuf};

use chorus_proto::secret::sha256_hex;

use crate::license::{KeyPair, LicenseError, TrustedKeys, Verified};

/// Writes `bytes` to `path` through a temporary file and a rename, fsync'd.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic_with(path, bytes, false)
}

/// [`write_atomic`] for a secret (a private key): the file is readable by its owner only (mode 0600) from the
/// moment it is created.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic_with(path, bytes, true)
}

fn write_atomic_with(path: &Path, bytes: &[u8], private: bool) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        if private {
            // A mode applies only to a file it creates: no leftover from an earlier run may be reused.
            let _ = std::fs::remove_file(&tmp);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt as _;
                options.create_new(true).mode(0o600);
            }
        }
        let mut f = options.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent()
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

/// The licenses stored in the data directory.
#[derive(Debug, Clone)]
pub struct LicenseStore {
    dir: PathBuf,
    trusted: TrustedKeys,
}

impl LicenseStore {
    pub fn new(data_dir: &Path, trusted: TrustedKeys) -> Self {
        Self { dir: data_dir.join("licenses"), trusted }
    }

    pub fn trusted(&self) -> &TrustedKeys {
        &self.trusted
    }

    /// Every stored license that still verifies (expired ones included).
    pub fn load_all(&self) -> std::io::Result<Vec<Verified>> {
        let mut out = Vec::new();
        if !self.dir.exists() {
            return Ok(out);
        }
        for entry in std::fs::read_dir(&self.dir)? {
            let path = entry?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let bytes = std::fs::read(&path)?;
            match self.trusted.verify(&bytes) {
                Ok(v) => out.push(v),
                Err(e) => tracing::warn!(file = %path.display(), error = %e, "Stored license ignored."),
            }
        }
        Ok(out)
    }

    /// The active license: the latest `issued_at` (ties: the later expiry).
    pub fn active(&self) -> std::io::Result<Option<Verified>> {
        Ok(self.load_all()?.into_iter().max_by_key(|v| (v.issued_at, v.expires_at)))
    }

    /// Verifies and stores a license. An expired license is refused.
    pub fn accept(&self, document: &[u8], now: u64) -> Result<Verified, AcceptError> {
        let verified = self.trusted.verify(document)?;
        if verified.is_expired(now) {
            return Err(LicenseError::Expired(verified.license.expires_at).into());
        }
        std::fs::create_dir_all(&self.dir)?;
        write_atomic(&self.dir.join(format!("{}.json", sha256_hex(document))), document)?;
        tracing::info!(licensee = %verified.license.licensee, issued_at = %verified.license.issued_at, "License stored.");
        Ok(verified)
    }

    /// Stores the seed license only when no license is stored yet (re-installing never overwrites a stored one).
    pub fn seed(&self, seed: &Path, now: u64) -> Result<bool, AcceptError> {
        if !self.load_all()?.is_empty() {
            tracing::info!(seed = %seed.display(), "A license is already stored: the seed license is not used.");
            return Ok(false);
        }
        let bytes = std::fs::read(seed)?;
        self.accept(&bytes, now)?;
        tracing::info!(seed = %seed.display(), "Seed license stored.");
        Ok(true)
    }
}

/// Why a posted license was not stored.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    #[error(transparent)]
    License(#[from] LicenseError),
    #[error("cannot store the license: {0}")]
    Io(#[from] std::io::Error),
}

/// The deployment's key: read from `<data>/deployment.key`, made there on first start.
pub fn deployment_key(data_dir: &Path) -> std::io::Result<KeyPair> {
    let path = data_dir.join("deployment.key");
    match std::fs::read_to_string(&path) {
        Ok(text) => KeyPair::from_seed_base64(&text).map_err(std::io::Error::other),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(data_dir)?;
            let key = KeyPair::generate()?;
            write_private(&path, key.seed_base64().as_bytes())?;
            tracing::info!(public_key = %key.public_base64(), "Deployment key created.");
            Ok(key)
        }
        Err(e) => Err(e),
    }
}

/// When the deployment was first seen without a valid license (`None`: it has one). Kept in `<data>/grace-since`.
#[derive(Debug, Clone)]
pub struct GraceClock {
    path: PathBuf,
}

impl GraceClock {
    pub fn new(data_dir: &Path) -> Self {
        Self::named(data_dir, "grace-since")
    }

    /// The same kind of clock in another file.
    pub fn named(data_dir: &Path, file: &str) -> Self {
        Self { path: data_dir.join(file) }
    }

    /// The recorded time, if any (without starting it).
    pub fn get(&self) -> Option<u64> {
        std::fs::read_to_string(&self.path).ok().and_then(|t| t.trim().parse().ok())
    }

    /// Records `t`.
    pub fn set(&self, t: u64) {
        if let Err(e) = write_atomic(&self.path, t.to_string().as_bytes()) {
            tracing::warn!(error = %e, file = %self.path.display(), "Cannot record a time.");
        }
    }

    /// The start of the unlicensed period, starting it at `now` if needed.
    pub fn start(&self, now: u64) -> u64 {
        if let Ok(text) = std::fs::read_to_string(&self.path)
            && let Ok(t) = text.trim().parse::<u64>()
        {
            return t;
        }
        if let Err(e) = write_atomic(&self.path, now.to_string().as_bytes()) {
            tracing::warn!(error = %e, "Cannot record the start of the grace period.");
        }
        now
    }

    pub fn clear(&self) {
        if self.path.exists() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
