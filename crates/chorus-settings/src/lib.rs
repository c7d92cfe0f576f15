//! Chorus's settings: one typed object per serving role (`serve`, `api`, `worker`, `license-proxy`), resolved once, here,
//! from four layers, each one over the last:
//!
//! 1. the defaults: the libraries' own (`ServeConfig`, `WsConfig`, `ApiConfig`, the bus, the license proxy...),
//!    and the few that only the command line has (addresses, the data directory);
//! 2. the config file (`--config`, TOML, [`file::FileSettings`]);
//! 3. the environment and 4. the flags, which clap reads together (each flag names its variable).
//!
//! Every layer has the file's shape: the flag groups ([`Layer`]) serialize into it, and [`merge`] lays one table
//! over another, the one function where precedence is decided. The merged table is deserialized once (so a typo in
//! the file is an error), then each role validates and converts what it uses ([`roles`]) before anything starts.
//! `--print-config` prints the merged table, secrets redacted.
//!
//! Why clap and serde rather than a layering crate such as `figment`: the environment variables are clap's
//! already (one per flag, named in `--help`, several with comma-separated lists), and their names do not follow one
//! prefix-to-key rule (`CHORUS_NATS_URL` is `nats`, `CHORUS_WS_IDLE_TIMEOUT` is `server.ws_idle_seconds`), so an
//! environment provider would need a table of every variable anyway; what is left is merging two TOML tables over
//! the defaults, which `toml`'s own `Table` does in [`merge`]'s twenty lines.

pub mod file;
pub mod roles;

use std::path::Path;

use serde::{Deserialize, Serialize};
use toml::{Table, Value};

use self::file::FileSettings;

/// A setting that cannot be used, or a config file that cannot be read; the message names the setting.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Error(pub String);

pub type Result<T, E = Error> = std::result::Result<T, E>;

macro_rules! bail {
    ($($t:tt)*) => {
        return Err($crate::Error(format!($($t)*)))
    };
}
pub(crate) use bail;

/// `context` and `with_context` for the errors of the crates below (their message after ours).
pub(crate) trait Context<T> {
    fn with_context(self, what: impl FnOnce() -> String) -> Result<T>;

    fn context(self, what: &str) -> Result<T>
    where
        Self: Sized,
    {
        self.with_context(|| what.to_owned())
    }
}

impl<T, E: std::fmt::Display> Context<T> for Result<T, E> {
    fn with_context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error(format!("{}: {e}", what())))
    }
}

impl<T> Context<T> for Option<T> {
    fn with_context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.ok_or_else(|| Error(what()))
    }
}

/// A group of flags (and their environment variables) in the file's shape: the fields are named after the
/// file's keys, and those not given are left out when it serializes (`None`, empty lists, unset switches).
pub trait Layer: Serialize {
    /// Where the group's keys go in the file: the top level, or this table.
    const TABLE: Option<&'static str> = None;
}

/// A secret setting (a key, a token): never shown by `Debug` nor by `--print-config`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
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

/// What `--print-config` shows instead of a secret.
const REDACTED: &str = "<redacted>";

/// Keys whose lists add up across the layers instead of replacing each other (trusted signing keys: the file's
/// and the flags').
const APPENDED: [&str; 1] = ["license.trusted_keys"];

/// Lays `over` over `base`: tables merge key by key, anything else in `over` replaces what `base` has.
pub fn merge(base: &mut Table, over: Table) {
    merge_at(base, over, "");
}

fn merge_at(base: &mut Table, over: Table, path: &str) {
    for (key, value) in over {
        let here = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
        match (base.get_mut(&key), value) {
            (Some(Value::Table(b)), Value::Table(o)) => merge_at(b, o, &here),
            (Some(Value::Array(b)), Value::Array(o)) if APPENDED.contains(&here.as_str()) => b.extend(o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// The layers of one role, merged as they are added.
#[derive(Debug, Default)]
pub struct Layers {
    table: Table,
}

impl Layers {
    /// The config file, if any (a file that does not parse, or has an unknown key, is refused).
    pub fn file(path: Option<&Path>) -> Result<Self> {
        let Some(path) = path else { return Ok(Self::default()) };
        let raw = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        // Parsed as settings first, so that an error points at its line.
        toml::from_str::<FileSettings>(&raw).with_context(|| format!("invalid config {}", path.display()))?;
        let table: Table =
            toml::from_str(&raw).with_context(|| format!("invalid config {}", path.display()))?;
        Ok(Self { table })
    }

    /// A group of flags (and their environment variables) over what is there.
    pub fn flags<L: Layer>(mut self, group: &L) -> Result<Self> {
        let given = Table::try_from(group).context("internal: a flag group does not serialize")?;
        let given = match L::TABLE {
            None => given,
            Some(name) => Table::from_iter([(name.to_owned(), Value::Table(given))]),
        };
        merge(&mut self.table, given);
        Ok(self)
    }

    /// One setting over what is there (`table` is the file's table, `None` for the top level).
    pub fn set(mut self, table: Option<&str>, key: &str, value: impl Into<Value>) -> Self {
        let one = Table::from_iter([(key.to_owned(), value.into())]);
        let over = match table {
            None => one,
            Some(name) => Table::from_iter([(name.to_owned(), Value::Table(one))]),
        };
        merge(&mut self.table, over);
        self
    }

    /// The merged settings over `defaults`.
    pub fn resolve(self, defaults: &FileSettings) -> Result<FileSettings> {
        let given: FileSettings = self.table.try_into().context("invalid settings")?;
        let mut base = Table::try_from(defaults).context("internal: the defaults do not serialize")?;
        let given =
            Table::try_from(roles::derived(given)).context("internal: the settings do not serialize")?;
        merge(&mut base, given);
        base.try_into().context("invalid settings")
    }
}

/// The settings as TOML, in the config file's shape, secrets redacted (`--print-config`).
pub fn print(settings: &FileSettings) -> Result<String> {
    let mut shown = settings.clone();
    let redact = |keys: &mut Option<Vec<Secret>>| {
        if let Some(keys) = keys {
            keys.iter_mut().for_each(|k| *k = Secret(REDACTED.into()));
        }
    };
    redact(&mut shown.api_keys);
    if let Some(license) = &mut shown.license {
        redact(&mut license.admin_keys);
        if let Some(token) = &mut license.upstream_token {
            *token = Secret(REDACTED.into());
        }
        for key in license.keys.iter_mut().flatten() {
            REDACTED.clone_into(&mut key.sha256);
        }
    }
    toml::to_string(&shown).context("internal: the settings do not print")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_lays_tables_over_each_other_and_adds_up_trusted_keys() {
        let mut base: Table = toml::from_str(
            "a = 1\nlist = [1]\n[server]\nx = 1\ny = 2\n[license]\ntrusted_keys = [\"f\"]\nmode = \"open\"",
        )
        .unwrap();
        let over: Table = toml::from_str(
            "list = [2]\n[server]\ny = 3\n[license]\ntrusted_keys = [\"g\"]\nmode = \"connected\"",
        )
        .unwrap();
        merge(&mut base, over);
        let want: Table = toml::from_str(
            "a = 1\nlist = [2]\n[server]\nx = 1\ny = 3\n[license]\ntrusted_keys = [\"f\", \"g\"]\nmode = \"connected\"",
        )
        .unwrap();
        assert_eq!(base, want);
    }
}
