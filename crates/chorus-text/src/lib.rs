//! The text front end: normalization, segmentation, espeak-ng phonemization and the offset maps that let
//! timestamps name the words the user wrote.
//!
//! ```text
//! original text -> normalize (offset map) -> espeak-ng clauses (one thread) -> align words -> chunks of ids
//! ```

mod cut;
mod error;
mod espeak;
mod frontend;
pub mod normalize;
mod phonemes;
mod pronounce;
mod tags;
mod words;

pub use cut::{has_speech, join_message, sentence_cut, word_cut};
pub use error::TextError;
pub use espeak::{Clause, EspeakConfig, Phonemizer};
pub use frontend::{
    ChunkBudget, ChunkStream, ChunkWord, Frontend, FrontendConfig, PhonemeChunk, PhonemeSlot, TextInput,
};
pub use phonemes::PhonemeIdMap;
pub use pronounce::{Alias, Lexicon, PhonemeOverride};
pub use tags::{
    MAX_BREAK_SECONDS, Segment, SourceMap, ends_in_open_tag, parse_tags, parse_tags_mapped, written_tokens,
};
pub use words::{Token, WordLabeler, tokenize};
