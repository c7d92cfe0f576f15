/// Word timestamps in the Cartesia shape: parallel arrays, seconds from the start of the stream's audio.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WordTimestamps {
    pub words: Vec<String>,
    pub start: Vec<f64>,
    pub end: Vec<f64>,
}

/// Phoneme timestamps in the Cartesia shape.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PhonemeTimestamps {
    pub phonemes: Vec<String>,
    pub start: Vec<f64>,
    pub end: Vec<f64>,
}

impl WordTimestamps {
    /// Appends another set, shifting its times by `offset` seconds.
    pub fn extend_shifted(&mut self, other: &WordTimestamps, offset: f64) {
        self.words.extend(other.words.iter().cloned());
        self.start.extend(other.start.iter().map(|t| t + offset));
        self.end.extend(other.end.iter().map(|t| t + offset));
    }

    pub fn len(&self) -> usize {
        self.words.len()
    }

    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }
}

impl PhonemeTimestamps {
    /// Appends another set, shifting its times by `offset` seconds.
    pub fn extend_shifted(&mut self, other: &PhonemeTimestamps, offset: f64) {
        self.phonemes.extend(other.phonemes.iter().cloned());
        self.start.extend(other.start.iter().map(|t| t + offset));
        self.end.extend(other.end.iter().map(|t| t + offset));
    }
}
