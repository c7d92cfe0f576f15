/// Errors of the text front end.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TextError {
    /// The espeak-ng library could not be loaded or initialised.
    #[error("espeak-ng: {0}")]
    Espeak(String),
    /// The espeak-ng voice (language) is unknown to the library.
    #[error("espeak-ng has no voice '{0}'")]
    UnknownEspeakVoice(String),
    /// The phonemizer thread has stopped.
    #[error("the phonemizer is not running")]
    PhonemizerGone,
    /// The text is empty, or only whitespace.
    #[error("the text is empty")]
    Empty,
    /// The text has nothing to speak (only punctuation or symbols).
    #[error("the text has nothing to speak (only punctuation or symbols)")]
    NothingToSpeak,
    /// The text is longer than the configured limit.
    #[error("the text is {len} characters long; the limit is {max}")]
    TooLong { len: usize, max: usize },
    /// The text is longer than the limit once its pronunciation dictionary is applied.
    #[error(
        "with its pronunciation dictionary applied the text is {len} characters long; the limit is {max}"
    )]
    TooLongExpanded { len: usize, max: usize },
    /// A voice's phoneme map is malformed.
    #[error("invalid phoneme map: {0}")]
    PhonemeMap(String),
}
