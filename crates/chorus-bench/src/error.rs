//! What can go wrong in a benchmark, a smoke test or a request of the client.
//!
//! A variant that has a cause displays only its own part (`cannot reach URL`); its cause is [`source`]
//! (`connection refused`), and [`BenchError::chain`] (like the `{:#}` of the CLI's report) joins them on one
//! line.
//!
//! [`source`]: std::error::Error::source

/// A cause of any type (the HTTP client's, the WebSocket's, a decoder's).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Flags or arguments that cannot work (`--requests 0`, an unknown node type, an https URL).
    #[error("{0}")]
    Usage(String),
    /// A file or a process the command needs: reading, writing, running.
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// JSON that does not parse or serialize (a server's body, a results file, the Python peer's output).
    #[error("{what}")]
    Json {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    /// No exchange with a server: it cannot be reached or connected to, the request cannot be built or sent, the
    /// body broke off.
    #[error("{what}")]
    Transport {
        what: String,
        #[source]
        source: BoxError,
    },
    /// The server answered something wrong: a status, an error event, no audio, a stream without its end.
    #[error("{0}")]
    Protocol(String),
    /// The server sent data that does not decode (an SSE event that is not UTF-8, audio that is not base64).
    #[error("{what}")]
    Malformed {
        what: String,
        #[source]
        source: BoxError,
    },
    /// No answer in the time allowed.
    #[error("{0}")]
    Timeout(String),
    /// The engine measured in-process failed.
    #[error(transparent)]
    Engine(#[from] chorus_engine::EngineError),
    /// The in-process measurement or its Python peer went wrong.
    #[error("{0}")]
    Measure(String),
    /// A task of the load benchmark panicked or was cancelled.
    #[error("{what}")]
    Task {
        what: String,
        #[source]
        source: tokio::task::JoinError,
    },
    /// The unmeasured request before the first level failed.
    #[error("the warm-up request failed")]
    Warmup(#[source] Box<BenchError>),
    /// The deployment failed checks, or the go-live benchmark is outside the figures.
    #[error("{0}")]
    Failed(String),
}

pub type Result<T, E = BenchError> = std::result::Result<T, E>;

impl BenchError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io { what: what.into(), source }
    }

    pub(crate) fn json(what: impl Into<String>, source: serde_json::Error) -> Self {
        Self::Json { what: what.into(), source }
    }

    pub(crate) fn transport(what: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::Transport { what: what.into(), source: source.into() }
    }

    pub(crate) fn malformed(what: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::Malformed { what: what.into(), source: source.into() }
    }

    /// The message and its causes on one line: `what: cause: cause`.
    pub fn chain(&self) -> String {
        let mut line = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(c) = cause {
            line.push_str(": ");
            line.push_str(&c.to_string());
            cause = c.source();
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_joins_the_causes_once_each() {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let e =
            BenchError::Warmup(Box::new(BenchError::transport("cannot reach http://x/tts/bytes", refused)));
        assert_eq!(e.to_string(), "the warm-up request failed");
        assert_eq!(
            e.chain(),
            "the warm-up request failed: cannot reach http://x/tts/bytes: connection refused"
        );
        assert_eq!(BenchError::Protocol("no audio received".into()).chain(), "no audio received");
    }
}
