//! CORS for browsers: pages on the configured origins may call the API (tower-http's [`CorsLayer`], outside
//! authentication, so that a preflight needs no key and every answer, a 401 included, carries the CORS headers the
//! page needs to read it).
//!
//! Allowed: the methods of the API, the headers the official SDKs send (`Authorization`, `Cartesia-Version`,
//! `X-API-Key`, the `X-Stainless-*` set, OpenAI's), and the response headers a client reads (`x-request-id`,
//! `Retry-After`, `ETag`...) exposed. No cookies are involved (credentials are not allowed): browsers authenticate
//! with an access token ([`crate::token`]). A preflight is cached for 10 minutes. WebSockets are not subject to
//! CORS; a browser's socket authenticates with `?access_token=`.

use std::time::Duration;

use axum::http::{HeaderName, HeaderValue, Method, header};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// Which origins may call the API from a browser. Empty: no CORS headers at all (browsers refuse cross-origin
/// calls, as before).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CorsConfig {
    /// Origins such as `https://app.example.com`; `*` allows any origin.
    pub origins: Vec<String>,
}

/// A bad origin in the configuration.
#[derive(Debug, thiserror::Error)]
#[error("invalid CORS origin '{0}': expected scheme://host[:port] (no path) or *")]
pub struct BadOrigin(pub String);

/// Request headers a page may send: what the Cartesia and OpenAI SDKs put on their requests.
const ALLOWED_HEADERS: [&str; 24] = [
    "authorization",
    "content-type",
    "accept",
    "cartesia-version",
    "x-api-key",
    "x-cartesia-client",
    "x-request-id",
    "if-match",
    "x-stainless-arch",
    "x-stainless-async",
    "x-stainless-lang",
    "x-stainless-os",
    "x-stainless-package-version",
    "x-stainless-read-timeout",
    "x-stainless-retry-count",
    "x-stainless-runtime",
    "x-stainless-runtime-version",
    "x-stainless-timeout",
    "x-stainless-helper-method",
    "x-stainless-poll-helper",
    "openai-organization",
    "openai-project",
    "openai-beta",
    "idempotency-key",
];

/// Response headers a page may read.
const EXPOSED_HEADERS: [&str; 8] = [
    "x-request-id",
    "cartesia-version",
    "cartesia-file-id",
    "retry-after",
    "x-should-retry",
    "etag",
    "content-type",
    "content-length",
];

impl CorsConfig {
    /// Checks every origin (`scheme://host[:port]`, or `*`).
    pub fn validate(&self) -> Result<(), BadOrigin> {
        for o in &self.origins {
            if o != "*" && !is_origin(o) {
                return Err(BadOrigin(o.clone()));
            }
        }
        Ok(())
    }

    /// The layer, or `None` when no origin is configured.
    pub fn layer(&self) -> Result<Option<CorsLayer>, BadOrigin> {
        self.validate()?;
        if self.origins.is_empty() {
            return Ok(None);
        }
        let origin = if self.origins.iter().any(|o| o == "*") {
            AllowOrigin::any()
        } else {
            let list: Result<Vec<HeaderValue>, BadOrigin> = self
                .origins
                .iter()
                .map(|o| HeaderValue::from_str(o.trim_end_matches('/')).map_err(|_| BadOrigin(o.clone())))
                .collect();
            AllowOrigin::list(list?)
        };
        let names =
            |list: &[&'static str]| list.iter().map(|h| HeaderName::from_static(h)).collect::<Vec<_>>();
        Ok(Some(
            CorsLayer::new()
                .allow_origin(origin)
                .allow_methods([
                    Method::GET,
                    Method::HEAD,
                    Method::POST,
                    Method::PATCH,
                    Method::PUT,
                    Method::DELETE,
                    Method::OPTIONS,
                ])
                .allow_headers(names(&ALLOWED_HEADERS))
                .expose_headers(names(&EXPOSED_HEADERS))
                .max_age(Duration::from_secs(600))
                .vary([
                    header::ORIGIN,
                    header::ACCESS_CONTROL_REQUEST_METHOD,
                    header::ACCESS_CONTROL_REQUEST_HEADERS,
                ]),
        ))
    }
}

/// `scheme://host[:port]` with an http(s) scheme, no path, query or credentials.
fn is_origin(o: &str) -> bool {
    let o = o.trim_end_matches('/');
    let Some((scheme, rest)) = o.split_once("://") else { return false };
    if !matches!(scheme, "http" | "https") || rest.is_empty() {
        return false;
    }
    !rest.contains(['/', '?', '#', '@', ' ']) && HeaderValue::from_str(o).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_checked() {
        let ok =
            CorsConfig { origins: vec!["https://app.example.com".into(), "http://127.0.0.1:8000/".into()] };
        assert!(ok.layer().unwrap().is_some());
        assert!(CorsConfig::default().layer().unwrap().is_none());
        assert!(CorsConfig { origins: vec!["*".into()] }.layer().unwrap().is_some());
        for bad in ["example.com", "ftp://x", "https://x/path", "https://", "https://u@x"] {
            assert!(CorsConfig { origins: vec![bad.into()] }.validate().is_err(), "{bad}");
        }
    }
}
