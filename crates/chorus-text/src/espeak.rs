//! espeak-ng phonemization through a small hand-written `dlopen` FFI.
//!
//! libespeak-ng is not thread-safe, so one dedicated OS thread (`chorus-espeak`) owns the library; callers send it
//! requests over a bounded channel and receive clauses as they are produced. The library is loaded at run time
//! (GPL-3.0 code is never linked into Chorus): preferably the fork Piper voices were trained with (shipped in the
//! `piper-phonemize-fix` wheel, installed by `scripts/setup`), else Debian's `libespeak-ng1`.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::thread;

use crossbeam_channel::{Receiver, Sender, bounded, unbounded};
use unicode_normalization::UnicodeNormalization;

use crate::TextError;

const AUDIO_OUTPUT_SYNCHRONOUS: c_int = 2;
const ESPEAK_INITIALIZE_DONT_EXIT: c_int = 0x8000;
const ESPEAK_CHARS_AUTO: c_int = 0;
const ESPEAK_PHONEMES_IPA: c_int = 0x02;
// Clause terminator flags (espeak-ng translate.h).
const CLAUSE_INTONATION_TYPE: c_int = 0x0000_7000;
const CLAUSE_TYPE_SENTENCE: c_int = 0x0008_0000;
const CLAUSE_PERIOD: c_int = 40 | CLAUSE_TYPE_SENTENCE;
const CLAUSE_COMMA: c_int = 20 | 0x1000 | 0x0004_0000;
const CLAUSE_QUESTION: c_int = 40 | 0x2000 | CLAUSE_TYPE_SENTENCE;
const CLAUSE_EXCLAMATION: c_int = 45 | 0x3000 | CLAUSE_TYPE_SENTENCE;
const CLAUSE_COLON: c_int = 30 | 0x0004_0000;
const CLAUSE_SEMICOLON: c_int = 30 | 0x1000 | 0x0004_0000;
const _: c_int = CLAUSE_INTONATION_TYPE;

type InitializeFn = unsafe extern "C" fn(c_int, c_int, *const c_char, c_int) -> c_int;
type SetVoiceByNameFn = unsafe extern "C" fn(*const c_char) -> c_int;
type TextToPhonemesFn = unsafe extern "C" fn(*mut *const c_void, c_int, c_int) -> *const c_char;
type TextToPhonemesTermFn =
    unsafe extern "C" fn(*mut *const c_void, c_int, c_int, *mut c_int) -> *const c_char;

/// Where to find libespeak-ng and its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EspeakConfig {
    /// Path or soname of the shared library.
    pub library: PathBuf,
    /// The directory that contains `espeak-ng-data/`; `None` uses the library's built-in default.
    pub data_parent: Option<PathBuf>,
}

impl EspeakConfig {
    /// The fork installed by `scripts/setup` under `runtime_dir/espeak-ng/` if present, else the system library.
    pub fn discover(runtime_dir: &Path) -> Self {
        let dir = runtime_dir.join("espeak-ng");
        let lib = dir.join("libespeak-ng.so.1");
        if lib.is_file() && dir.join("espeak-ng-data").is_dir() {
            Self { library: lib, data_parent: Some(dir) }
        } else {
            Self::system()
        }
    }

    /// Debian's `libespeak-ng1` (1.51), with its built-in data path.
    pub fn system() -> Self {
        Self { library: PathBuf::from("libespeak-ng.so.1"), data_parent: None }
    }
}

/// One clause as espeak-ng splits the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clause {
    /// Byte range of the input text this clause covers (consecutive clauses tile the text).
    pub range: Range<usize>,
    /// IPA phonemes, NFD-decomposed, words separated by single spaces, language markers removed.
    pub phonemes: String,
    /// The clause's punctuation (`.` `,` `?` `!` `:` `;`), if any.
    pub terminator: Option<char>,
    /// True when the clause ends a sentence.
    pub sentence_end: bool,
}

struct Request {
    voice: String,
    text: String,
    reply: Sender<Result<Clause, TextError>>,
}

/// A handle to the process's phonemizer thread. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Phonemizer {
    tx: Sender<Request>,
    version: String,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request").field("voice", &self.voice).field("len", &self.text.len()).finish()
    }
}

/// Requests waiting for the phonemizer thread. Each takes well under a millisecond per 200 characters.
const QUEUE_DEPTH: usize = 1024;

impl Phonemizer {
    /// The process's phonemizer: started on first use, then shared. libespeak-ng keeps global state, so two
    /// threads driving it (even through two handles of the same library) would corrupt each other; one thread per
    /// process serves everyone. A later call with another `config` gets the running phonemizer (logged).
    pub fn start(config: &EspeakConfig, default_voice: &str) -> Result<Self, TextError> {
        static SHARED: std::sync::Mutex<Option<(EspeakConfig, Phonemizer)>> = std::sync::Mutex::new(None);
        let mut shared = SHARED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((running, p)) = shared.as_ref() {
            if running != config {
                tracing::warn!(running = %running.library.display(), requested = %config.library.display(), "The phonemizer is already running with another library; using it.");
            }
            let p = p.clone();
            // Check the voice exists, as a fresh start would.
            p.phonemize(default_voice, "a")?;
            return Ok(p);
        }
        let p = Self::spawn(config, default_voice)?;
        *shared = Some((config.clone(), p.clone()));
        Ok(p)
    }

    fn spawn(config: &EspeakConfig, default_voice: &str) -> Result<Self, TextError> {
        let (tx, rx) = bounded::<Request>(QUEUE_DEPTH);
        let (ready_tx, ready_rx) = bounded::<Result<String, TextError>>(1);
        let thread_config = config.clone();
        let voice = default_voice.to_owned();
        thread::Builder::new()
            .name("chorus-espeak".into())
            .spawn(move || match Espeak::load(&thread_config) {
                Ok(mut espeak) => match espeak.set_voice(&voice) {
                    Ok(()) => {
                        let _ = ready_tx.send(Ok(espeak.version.clone()));
                        espeak.serve(&rx);
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                },
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            })
            .map_err(|e| TextError::Espeak(format!("cannot start the phonemizer thread: {e}")))?;
        let version = ready_rx.recv().map_err(|_| TextError::PhonemizerGone)??;
        tracing::info!(library = %config.library.display(), %version, "Phonemizer ready.");
        Ok(Self { tx, version })
    }

    /// A description of the loaded library.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Phonemizes `text` with espeak voice `voice`; clauses arrive on the returned channel as they are produced,
    /// and the channel closes after the last one (or after an error).
    pub fn stream(&self, voice: &str, text: &str) -> Result<Receiver<Result<Clause, TextError>>, TextError> {
        let (reply, rx) = unbounded();
        // NUL would end the C string early; replacing it by a space keeps every byte offset.
        let text = text.replace('\0', " ");
        self.tx
            .send(Request { voice: voice.to_owned(), text, reply })
            .map_err(|_| TextError::PhonemizerGone)?;
        Ok(rx)
    }

    /// Phonemizes `text` and collects every clause.
    pub fn phonemize(&self, voice: &str, text: &str) -> Result<Vec<Clause>, TextError> {
        self.stream(voice, text)?.iter().collect()
    }
}

enum ClauseFn {
    /// The Piper fork's `espeak_TextToPhonemesWithTerminator`.
    WithTerminator(TextToPhonemesTermFn),
    /// Upstream 1.51's `espeak_TextToPhonemes`; the terminator is recovered from the consumed text.
    Plain(TextToPhonemesFn),
}

struct Espeak {
    // Keeps the library mapped while the function pointers are in use.
    _lib: libloading::Library,
    set_voice_by_name: SetVoiceByNameFn,
    to_phonemes: ClauseFn,
    voice: Option<String>,
    version: String,
}

impl Espeak {
    fn load(config: &EspeakConfig) -> Result<Self, TextError> {
        let err = |what: &str, e: &dyn std::fmt::Display| {
            TextError::Espeak(format!("{what} ({}): {e}", config.library.display()))
        };
        // SAFETY: loading libespeak-ng runs no initialisers with preconditions; symbols are checked below.
        let lib = unsafe { libloading::Library::new(config.library.to_string_lossy().into_owned()) }
            .map_err(|e| err("cannot load", &e))?;
        // SAFETY: the signatures match espeak-ng's speak_lib.h for these symbols.
        let (initialize, set_voice_by_name, to_phonemes) = unsafe {
            let initialize = *lib
                .get::<InitializeFn>(b"espeak_Initialize\0")
                .map_err(|e| err("missing espeak_Initialize", &e))?;
            let set_voice = *lib
                .get::<SetVoiceByNameFn>(b"espeak_SetVoiceByName\0")
                .map_err(|e| err("missing espeak_SetVoiceByName", &e))?;
            let to_phonemes = match lib.get::<TextToPhonemesTermFn>(b"espeak_TextToPhonemesWithTerminator\0")
            {
                Ok(f) => ClauseFn::WithTerminator(*f),
                Err(_) => ClauseFn::Plain(
                    *lib.get::<TextToPhonemesFn>(b"espeak_TextToPhonemes\0")
                        .map_err(|e| err("missing espeak_TextToPhonemes", &e))?,
                ),
            };
            (initialize, set_voice, to_phonemes)
        };
        let data = match &config.data_parent {
            Some(p) => Some(
                CString::new(p.to_string_lossy().as_bytes())
                    .map_err(|_| TextError::Espeak("data path contains NUL".into()))?,
            ),
            None => None,
        };
        let data_ptr = data.as_ref().map_or(std::ptr::null(), |d| d.as_ptr());
        // SAFETY: data_ptr is NULL or a valid C string that outlives the call; DONT_EXIT keeps errors as returns.
        let rate = unsafe { initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, data_ptr, ESPEAK_INITIALIZE_DONT_EXIT) };
        if rate <= 0 {
            return Err(TextError::Espeak(format!(
                "espeak_Initialize failed ({}; data {:?})",
                config.library.display(),
                config.data_parent
            )));
        }
        let version = match to_phonemes {
            ClauseFn::WithTerminator(_) => format!("espeak-ng (Piper fork) {}", config.library.display()),
            ClauseFn::Plain(_) => format!("espeak-ng (upstream) {}", config.library.display()),
        };
        Ok(Self { _lib: lib, set_voice_by_name, to_phonemes, voice: None, version })
    }

    fn set_voice(&mut self, voice: &str) -> Result<(), TextError> {
        if self.voice.as_deref() == Some(voice) {
            return Ok(());
        }
        let name = CString::new(voice).map_err(|_| TextError::UnknownEspeakVoice(voice.to_owned()))?;
        // SAFETY: name is a valid C string for the duration of the call; only this thread touches the library.
        let rc = unsafe { (self.set_voice_by_name)(name.as_ptr()) };
        if rc != 0 {
            self.voice = None;
            return Err(TextError::UnknownEspeakVoice(voice.to_owned()));
        }
        self.voice = Some(voice.to_owned());
        Ok(())
    }

    fn serve(&mut self, rx: &Receiver<Request>) {
        for req in rx.iter() {
            if let Err(e) = self.set_voice(&req.voice) {
                let _ = req.reply.send(Err(e));
                continue;
            }
            self.clauses(&req.text, &req.reply);
        }
    }

    /// Runs the clause loop over `text`, sending each clause as it is produced. Stops early if the receiver is gone.
    fn clauses(&self, text: &str, reply: &Sender<Result<Clause, TextError>>) {
        let Ok(c_text) = CString::new(text) else {
            let _ = reply.send(Err(TextError::Espeak("text contains NUL".into())));
            return;
        };
        let base = c_text.as_ptr();
        let len = text.len();
        let mut ptr: *const c_void = base.cast();
        let mut start = 0usize;
        while !ptr.is_null() {
            let mut terminator: c_int = 0;
            // SAFETY: ptr points into c_text (alive for the loop) or is NULL; espeak advances it within the string.
            let out = unsafe {
                match self.to_phonemes {
                    ClauseFn::WithTerminator(f) => {
                        f(&mut ptr, ESPEAK_CHARS_AUTO, ESPEAK_PHONEMES_IPA, &mut terminator)
                    }
                    ClauseFn::Plain(f) => f(&mut ptr, ESPEAK_CHARS_AUTO, ESPEAK_PHONEMES_IPA),
                }
            };
            // Copy the library's static buffer before the next call overwrites it.
            let raw = if out.is_null() {
                String::new()
            } else {
                // SAFETY: espeak returns a NUL-terminated string valid until the next call.
                unsafe { CStr::from_ptr(out) }.to_string_lossy().into_owned()
            };
            let consumed_to = if ptr.is_null() {
                len
            } else {
                // SAFETY: both pointers are within (or one past) the same allocation.
                let off = unsafe { ptr.cast::<c_char>().offset_from(base) };
                usize::try_from(off).unwrap_or(len).min(len)
            };
            // espeak leaves the pointer one character past the clause: step back over it (not at the end).
            let mut end = consumed_to;
            if end < len {
                end = prev_char_boundary(text, end);
            }
            let end = end.max(start);
            let slice = &text[start..end];
            let (punct, sentence_end) = match self.to_phonemes {
                ClauseFn::WithTerminator(_) => terminator_punctuation(terminator),
                ClauseFn::Plain(_) => infer_terminator(slice),
            };
            let phonemes = clean_phonemes(&raw);
            if !phonemes.is_empty() || punct.is_some() {
                let clause = Clause { range: start..end, phonemes, terminator: punct, sentence_end };
                if reply.send(Ok(clause)).is_err() {
                    return; // the caller has gone: stop at once
                }
            }
            start = end;
            if consumed_to >= len {
                break;
            }
        }
    }
}

fn prev_char_boundary(s: &str, mut i: usize) -> usize {
    i = i.saturating_sub(1);
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Maps espeak's clause terminator to the punctuation Piper appends, and whether it ends a sentence.
fn terminator_punctuation(terminator: c_int) -> (Option<char>, bool) {
    let punct = match terminator & 0x000F_FFFF {
        CLAUSE_PERIOD => Some('.'),
        CLAUSE_QUESTION => Some('?'),
        CLAUSE_EXCLAMATION => Some('!'),
        CLAUSE_COMMA => Some(','),
        CLAUSE_COLON => Some(':'),
        CLAUSE_SEMICOLON => Some(';'),
        _ => None,
    };
    (punct, terminator & CLAUSE_TYPE_SENTENCE == CLAUSE_TYPE_SENTENCE)
}

/// Emulates the terminator for libraries without `espeak_TextToPhonemesWithTerminator`: trailing spaces and closing
/// quotes or brackets are skipped, then the first character of the trailing run of `.,?!:;` is the terminator.
fn infer_terminator(slice: &str) -> (Option<char>, bool) {
    let trimmed = slice.trim_end_matches(|c: char| {
        c.is_whitespace() || matches!(c, '"' | '\'' | ')' | ']' | '}' | '”' | '’' | '»')
    });
    let run_start = trimmed
        .char_indices()
        .rev()
        .take_while(|(_, c)| matches!(c, '.' | ',' | '?' | '!' | ':' | ';'))
        .last()
        .map(|(i, _)| i);
    let punct = run_start.and_then(|i| trimmed[i..].chars().next());
    (punct, matches!(punct, Some('.' | '?' | '!')))
}

/// Removes language-switch markers such as `(en)` or `(fr)`, collapses whitespace and NFD-decomposes.
fn clean_phonemes(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '(' {
            let marker: String = chars.clone().take_while(|&c| c != ')').collect();
            let is_marker = !marker.is_empty()
                && marker.len() <= 8
                && marker.chars().all(|c| c.is_ascii_lowercase() || c == '-')
                && chars.clone().nth(marker.chars().count()) == Some(')');
            if is_marker {
                for _ in 0..=marker.chars().count() {
                    chars.next();
                }
                continue;
            }
        }
        out.push(c);
    }
    let collapsed = out.split_whitespace().collect::<Vec<_>>().join(" ");
    collapsed.nfd().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_removed_and_whitespace_collapsed() {
        assert_eq!(clean_phonemes("(fr)bɔ̃ʒuʁ(en)  wˈɜːld\n"), "bɔ̃ʒuʁ wˈɜːld".nfd().collect::<String>());
        assert_eq!(clean_phonemes("a(b c)"), "a(b c)");
    }

    #[test]
    fn inferred_terminators() {
        assert_eq!(infer_terminator("Hello, "), (Some(','), false));
        assert_eq!(infer_terminator("Is it?\" "), (Some('?'), true));
        assert_eq!(infer_terminator("Wait... "), (Some('.'), true));
        assert_eq!(infer_terminator("no end"), (None, false));
    }

    #[test]
    fn terminator_flags() {
        assert_eq!(terminator_punctuation(CLAUSE_PERIOD), (Some('.'), true));
        assert_eq!(terminator_punctuation(CLAUSE_COMMA), (Some(','), false));
        assert_eq!(terminator_punctuation(CLAUSE_QUESTION | 0x0010_0000), (Some('?'), true));
    }
}
