//! Phoneme symbols to model input ids, as Piper voices expect them.

use std::collections::HashMap;

use crate::TextError;

/// Beginning of utterance.
pub const BOS: char = '^';
/// End of utterance.
pub const EOS: char = '$';
/// Padding, interspersed after every phoneme.
pub const PAD: char = '_';

/// A voice's `phoneme_id_map`: one codepoint to one or more ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhonemeIdMap {
    map: HashMap<char, Vec<i64>>,
    bos: i64,
    eos: i64,
    pad: i64,
}

impl PhonemeIdMap {
    /// Builds the map from the voice config's `phoneme_id_map` object.
    pub fn from_json(value: &serde_json::Value) -> Result<Self, TextError> {
        let obj = value.as_object().ok_or_else(|| TextError::PhonemeMap("not a JSON object".into()))?;
        let mut map = HashMap::with_capacity(obj.len());
        for (key, ids) in obj {
            let mut chars = key.chars();
            let (Some(c), None) = (chars.next(), chars.next()) else {
                return Err(TextError::PhonemeMap(format!("key {key:?} is not a single character")));
            };
            let ids = ids
                .as_array()
                .ok_or_else(|| TextError::PhonemeMap(format!("ids of {key:?} are not an array")))?
                .iter()
                .map(|v| {
                    v.as_i64()
                        .ok_or_else(|| TextError::PhonemeMap(format!("id of {key:?} is not an integer")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            if ids.is_empty() {
                return Err(TextError::PhonemeMap(format!("{key:?} has no ids")));
            }
            map.insert(c, ids);
        }
        let first = |c: char| {
            map.get(&c)
                .and_then(|ids| ids.first().copied())
                .ok_or_else(|| TextError::PhonemeMap(format!("missing the {c:?} symbol")))
        };
        Ok(Self { bos: first(BOS)?, eos: first(EOS)?, pad: first(PAD)?, map })
    }

    /// The ids of one phoneme symbol; `None` for symbols the voice does not know (they are dropped, as Piper does).
    pub fn ids(&self, phoneme: char) -> Option<&[i64]> {
        self.map.get(&phoneme).map(Vec::as_slice)
    }

    pub fn bos(&self) -> i64 {
        self.bos
    }

    pub fn eos(&self) -> i64 {
        self.eos
    }

    pub fn pad(&self) -> i64 {
        self.pad
    }

    /// `^ _ p1 _ p2 _ ... pn _ $` for a phoneme string, unknown symbols dropped.
    pub fn encode(&self, phonemes: &str) -> Vec<i64> {
        let mut ids = vec![self.bos, self.pad];
        for c in phonemes.chars() {
            if let Some(p) = self.ids(c) {
                ids.extend_from_slice(p);
                ids.push(self.pad);
            }
        }
        ids.push(self.eos);
        ids
    }
}
