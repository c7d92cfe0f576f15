//! Voices and pronunciation dictionaries as the API serves them: an in-memory cache of the artifact store
//! ([`crate::persistence`]), with the entity tag of each stored version, plus the built-in model voices (learned from
//! the workers' heartbeats, never stored).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::RwLock;
use std::time::{SystemTime, UNIX_EPOCH};

use chorus_bus::ModelInfo;
use chorus_proto::PronunciationItem;

use crate::error::ApiError;

/// Synthesis settings a voice preset carries on top of its model voice.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct VoiceParams {
    /// Multiplies the request's speed.
    pub speed: Option<f32>,
    pub noise_scale: Option<f32>,
    pub noise_w: Option<f32>,
}

/// A voice as the API lists it: a model voice, or a named preset of one.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Voice {
    /// In a stored document it may be left out: the file name gives it.
    #[serde(default)]
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// ISO language code.
    pub language: String,
    #[serde(default)]
    pub gender: Option<String>,
    /// The engine voice (worker model) that speaks it.
    pub model: String,
    #[serde(default)]
    pub params: VoiceParams,
    /// RFC 3339.
    #[serde(default)]
    pub created_at: String,
    /// Model voices are built in: they cannot be deleted. Never stored.
    #[serde(default, skip_serializing)]
    pub builtin: bool,
}

/// A pronunciation dictionary.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PronunciationDict {
    /// In a stored document it may be left out: the file name gives it.
    #[serde(default)]
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub items: Vec<PronunciationItem>,
    /// RFC 3339.
    #[serde(default)]
    pub created_at: String,
    #[serde(default = "default_owner")]
    pub owner_id: String,
    #[serde(default)]
    pub pinned: bool,
}

/// `owner_id` of every dictionary (a self-hosted server has one owner).
pub const OWNER_ID: &str = "chorus";

fn default_owner() -> String {
    OWNER_ID.into()
}

/// Most items in one dictionary.
pub const MAX_ITEMS: usize = 1000;
/// Longest `text` or `alias`, in characters.
const MAX_ITEM_CHARS: usize = 500;

/// Non-empty `text` and `alias`, an IPA alias closed by its slash, at most [`MAX_ITEMS`] items.
pub fn check_items(items: Vec<PronunciationItem>) -> Result<Vec<PronunciationItem>, ApiError> {
    if items.len() > MAX_ITEMS {
        return Err(ApiError::invalid(format!(
            "a dictionary holds at most {MAX_ITEMS} items, got {}",
            items.len()
        )));
    }
    items
        .into_iter()
        .enumerate()
        .map(|(i, mut item)| {
            item.text = item.text.trim().to_owned();
            item.alias = item.alias.trim().to_owned();
            if item.text.is_empty() {
                return Err(ApiError::invalid(format!("items[{i}].text must not be empty")));
            }
            if item.alias.is_empty() {
                return Err(ApiError::invalid(format!("items[{i}].alias must not be empty")));
            }
            if item.text.chars().count() > MAX_ITEM_CHARS || item.alias.chars().count() > MAX_ITEM_CHARS {
                return Err(ApiError::invalid(format!("items[{i}] is longer than {MAX_ITEM_CHARS} characters")));
            }
            if let Some(ipa) = item.alias.strip_prefix('/') {
                match ipa.strip_suffix('/') {
                    Some(phonemes) if !phonemes.trim().is_empty() && !phonemes.contains('/') => {}
                    Some(_) | None => {
                        return Err(ApiError::invalid(format!(
                            "items[{i}].alias starts with '/' but is not IPA between two slashes (e.g. /təmˈɑːtoʊ/)"
                        )));
                    }
                }
            }
            Ok(item)
        })
        .collect()
}

/// A document the API caches by id: a voice or a pronunciation dictionary.
pub trait Document: Clone {
    fn id(&self) -> &str;
    /// Built in (a model voice): listed but never stored, replaced or removed as a stored document.
    fn builtin(&self) -> bool {
        false
    }
}

impl Document for Voice {
    fn id(&self) -> &str {
        &self.id
    }
    fn builtin(&self) -> bool {
        self.builtin
    }
}

impl Document for PronunciationDict {
    fn id(&self) -> &str {
        &self.id
    }
}

/// Documents by id, ordered (cursor pagination walks ids in order), with the entity tag of each stored version.
#[derive(Debug)]
pub struct DocCache<T> {
    docs: RwLock<BTreeMap<String, T>>,
    /// Voices only: models whose built-in voice stays listed while no worker announces them (installed beside the
    /// API, or served when it started): their requests wait for a worker instead of failing.
    pinned: RwLock<BTreeSet<String>>,
    /// Entity tags of the stored (non built-in) documents.
    etags: RwLock<BTreeMap<String, String>>,
}

/// Voices by id: the stored presets and the built-in model voices.
pub type VoiceCache = DocCache<Voice>;
/// Pronunciation dictionaries by id.
pub type DictCache = DocCache<PronunciationDict>;

impl<T> Default for DocCache<T> {
    fn default() -> Self {
        Self { docs: RwLock::default(), pinned: RwLock::default(), etags: RwLock::default() }
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl<T: Document> DocCache<T> {
    pub fn get(&self, id: &str) -> Option<T> {
        read(&self.docs).get(id).cloned()
    }

    /// Caches a stored version; refused (false) when `id` is a built-in document.
    pub fn put_stored(&self, doc: T, etag: String) -> bool {
        let mut docs = write(&self.docs);
        if docs.get(doc.id()).is_some_and(Document::builtin) {
            return false;
        }
        write(&self.etags).insert(doc.id().to_owned(), etag);
        docs.insert(doc.id().to_owned(), doc);
        true
    }

    /// Forgets a stored document (never a built-in one).
    pub fn remove_stored(&self, id: &str) {
        let mut docs = write(&self.docs);
        if docs.get(id).is_some_and(|d| !d.builtin()) {
            docs.remove(id);
        }
        write(&self.etags).remove(id);
    }

    /// The entity tag of a stored document's cached version.
    pub fn etag(&self, id: &str) -> Option<String> {
        read(&self.etags).get(id).cloned()
    }

    /// Entity tags of every cached stored document.
    pub fn etags(&self) -> BTreeMap<String, String> {
        read(&self.etags).clone()
    }

    /// All documents in id order.
    pub fn list(&self) -> Vec<T> {
        read(&self.docs).values().cloned().collect()
    }

    /// True if `id` is a built-in document (a model voice).
    pub fn is_builtin(&self, id: &str) -> bool {
        read(&self.docs).get(id).is_some_and(Document::builtin)
    }
}

impl DocCache<Voice> {
    /// Follows the models the bus announces: adds a built-in voice for every one not listed yet (id = the model
    /// voice's id), and drops the built-in voices of models no worker announces any more (a model removed from the
    /// artifact store), unless pinned ([`DocCache::pin_builtin`]).
    ///
    /// Called with every change of the announcements (pushed, see `AppState::new`); requests only read.
    pub fn sync_builtin(&self, models: &[ModelInfo]) {
        let pinned = read(&self.pinned);
        let mut voices = write(&self.docs);
        voices
            .retain(|_, v| !v.builtin || pinned.contains(&v.model) || models.iter().any(|m| m.id == v.model));
        self.add_builtin(&mut voices, models);
    }

    /// Adds built-in voices for `models` that stay listed even while no worker announces them. The voices of the
    /// announced models stay as they are.
    pub fn pin_builtin(&self, models: &[ModelInfo]) {
        write(&self.pinned).extend(models.iter().map(|m| m.id.clone()));
        self.add_builtin(&mut write(&self.docs), models);
    }

    /// A built-in voice for each of `models` not listed as one yet.
    fn add_builtin(&self, voices: &mut BTreeMap<String, Voice>, models: &[ModelInfo]) {
        for m in models {
            if voices.get(&m.id).is_some_and(|v| v.builtin) {
                continue;
            }
            // A stored document named like a model voice is shadowed by it.
            write(&self.etags).remove(&m.id);
            voices.insert(
                m.id.clone(),
                Voice {
                    id: m.id.clone(),
                    name: display_name(&m.id),
                    description: format!("Piper voice {} ({} Hz)", m.id, m.sample_rate),
                    language: m.language.clone(),
                    gender: None,
                    model: m.id.clone(),
                    params: VoiceParams::default(),
                    created_at: rfc3339_now(),
                    builtin: true,
                },
            );
        }
    }
}

/// "en_US-joe-medium" -> "Joe (en_US, medium)".
fn display_name(model: &str) -> String {
    let parts: Vec<&str> = model.split('-').collect();
    match parts.as_slice() {
        [locale, name, quality] => {
            let mut c = name.chars();
            let name = c.next().map(|f| f.to_uppercase().chain(c).collect::<String>()).unwrap_or_default();
            format!("{name} ({locale}, {quality})")
        }
        _ => model.to_owned(),
    }
}

/// The current time as RFC 3339 (UTC, seconds).
pub fn rfc3339_now() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    rfc3339(secs)
}

/// Seconds since the epoch as RFC 3339 (UTC).
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_names() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_764_115_200), "2025-11-26T00:00:00Z");
        assert_eq!(rfc3339(951_782_400 + 3661), "2000-02-29T01:01:01Z");
        assert_eq!(display_name("en_US-joe-medium"), "Joe (en_US, medium)");
    }

    fn model(id: &str) -> ModelInfo {
        ModelInfo { id: id.into(), language: "en".into(), sample_rate: 22050 }
    }

    #[test]
    #[allow(clippy::unwrap_used)]
    fn builtin_voices_follow_the_announced_models() {
        let store = VoiceCache::default();
        store.pin_builtin(&[model("installed")]);
        store.sync_builtin(&[model("installed"), model("hot")]);
        assert!(store.get("hot").is_some_and(|v| v.builtin));
        // A user voice on the hot model is the user's: it stays.
        let mut preset = store.get("hot").unwrap();
        preset.id = "mine".into();
        preset.builtin = false;
        assert!(store.put_stored(preset, "etag-1".into()));
        // No worker announces either model any more: the hot model's built-in voice goes, the pinned one stays.
        store.sync_builtin(&[]);
        assert!(store.get("hot").is_none());
        assert!(store.get("installed").is_some());
        assert!(store.get("mine").is_some());
        // Announced again: listed again.
        store.sync_builtin(&[model("hot")]);
        assert!(store.get("hot").is_some());
    }

    #[test]
    fn pinning_later_keeps_the_announced_voices() {
        let store = VoiceCache::default();
        store.sync_builtin(&[model("hot")]);
        store.pin_builtin(&[model("installed")]);
        assert!(store.get("hot").is_some_and(|v| v.builtin), "pinning dropped a voice a worker announces");
        assert!(store.get("installed").is_some_and(|v| v.builtin));
        // The pinned voice outlives its announcement; the other does not.
        store.sync_builtin(&[]);
        assert!(store.get("installed").is_some());
        assert!(store.get("hot").is_none());
    }

    fn item(text: &str, alias: &str) -> PronunciationItem {
        PronunciationItem { text: text.into(), alias: alias.into(), case_sensitive: false }
    }

    #[test]
    fn item_validation() {
        assert!(check_items(vec![item("tomato", "/təmˈɑːtoʊ/"), item("SQL", "sequel")]).is_ok());
        for (text, alias) in
            [("", "x"), ("x", ""), ("  ", "x"), ("x", "/"), ("x", "//"), ("x", "/abc"), ("x", "/a/b/")]
        {
            assert!(check_items(vec![item(text, alias)]).is_err(), "{text:?} {alias:?}");
        }
        assert!(check_items(vec![item("a", "b"); MAX_ITEMS]).is_ok());
        assert!(check_items(vec![item("a", "b"); MAX_ITEMS + 1]).is_err());
    }
}
