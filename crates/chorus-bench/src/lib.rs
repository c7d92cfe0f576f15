//! The Chorus measurement toolkit behind `chorus bench`, `chorus smoke` and `chorus probe`:
//!
//! - [`engine`]: model load time, time to first audio and real-time factor in-process, against the Python Piper
//!   peer; [`load`]: the load benchmark against a running server (TTFA, RTF, throughput and underruns per
//!   concurrency level), with its [`stats`], [`texts`] and [`plot`]; [`url`]: servers compared one request at a
//!   time.
//! - [`smoke`]: the smoke test of a running deployment, and its go-live check ([`golive`]).
//! - [`client`]: the one Cartesia-protocol client (`/tts/bytes`, `/tts/sse`, `/tts/websocket`, the SSE parser);
//!   [`blocking`]: its blocking HTTP/1.1 face for probes and tests, which tells a clean end of a body from an
//!   aborted transfer.
//! - [`BenchError`]: what goes wrong in any of them.
//!
//! The reports are the product of these commands: they print to stdout (tables, `PASS`/`FAIL` lines) and their
//! progress to stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]

pub mod blocking;
pub mod client;
pub mod engine;
mod error;
pub mod golive;
pub mod load;
pub mod plot;
pub mod smoke;
pub mod stats;
pub mod texts;
pub mod url;

pub use error::{BenchError, BoxError, Result};

/// The voice `chorus say`, `chorus bench` and the go-live check use unless told otherwise.
pub const DEFAULT_VOICE: &str = "en_US-joe-medium";

/// The single-threaded runtime the async parts of a command run on.
fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| BenchError::io("cannot start the async runtime", e))
}
