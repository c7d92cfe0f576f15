//! The model catalogue: our model ids and the aliases stock clients send (`sonic-3`, `tts-1`...).

/// One model as clients name it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ModelEntry {
    pub id: String,
    /// Other names that reach this model. An alias also matches its dated snapshots (`sonic-3-2025-10-27`).
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub description: String,
}

/// Every model the API accepts.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Catalogue {
    pub models: Vec<ModelEntry>,
}

impl Default for Catalogue {
    fn default() -> Self {
        let aliases = [
            "sonic",
            "sonic-2",
            "sonic-3",
            "sonic-3.5",
            "sonic-latest",
            "sonic-3-latest",
            "sonic-turbo",
            "sonic-english",
            "sonic-multilingual",
            "tts-1",
            "tts-1-hd",
            "gpt-4o-mini-tts",
        ];
        Self {
            models: vec![ModelEntry {
                id: "chorus-piper".into(),
                aliases: aliases.iter().map(|a| (*a).to_owned()).collect(),
                description: "Piper (VITS) voices on ONNX Runtime".into(),
            }],
        }
    }
}

impl Catalogue {
    /// The model a client's `model_id` names: an id, an alias, or an alias's dated snapshot.
    pub fn resolve(&self, model_id: &str) -> Option<&ModelEntry> {
        self.models.iter().find(|m| {
            m.id == model_id
                || m.aliases
                    .iter()
                    .any(|a| a == model_id || model_id.strip_prefix(a.as_str()).is_some_and(is_snapshot))
        })
    }
}

/// `-YYYY-MM-DD`
fn is_snapshot(rest: &str) -> bool {
    let b = rest.as_bytes();
    b.len() == 11
        && b[0] == b'-'
        && b[5] == b'-'
        && b[8] == b'-'
        && [1, 2, 3, 4, 6, 7, 9, 10].iter().all(|&i| b[i].is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_and_snapshots_resolve() {
        let c = Catalogue::default();
        for id in [
            "chorus-piper",
            "sonic-3",
            "sonic-2",
            "sonic-latest",
            "tts-1",
            "sonic-3-2025-10-27",
            "sonic-3.5-2026-05-04",
        ] {
            assert_eq!(c.resolve(id).map(|m| m.id.as_str()), Some("chorus-piper"), "{id}");
        }
        for id in ["", "sonic-4", "sonic-3-latest-x", "gpt-4", "sonic-3-2025-1-27"] {
            assert!(c.resolve(id).is_none(), "{id}");
        }
    }
}
