//! Connected mode: the proxy's calls to an upstream license server (HTTPS; plain HTTP for development).
//!
//! The protocol (ours; the system we reproduce publishes none):
//!
//! - `GET {upstream}/license?deployment=<deployment public key>`: 200 with a signed license document (verified and
//!   stored like a `POST /license`), or 204 when there is none. Any answer counts as contact.
//! - `POST {upstream}/usage` with `{"deployment": <key>, "records": [{"seq": …, "record": {…}}, …]}`: the ledger's
//!   entries after the last reported one (metadata only), at most [`REPORT_BATCH`] per call. A 2xx moves the
//!   reported position (kept in `<data>/upstream-reported`), so nothing is reported twice after a success.
//!
//! `Authorization: Bearer <token>` is sent when a token is configured.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::rustls;

/// Entries reported per call at most.
pub const REPORT_BATCH: usize = 5000;
/// Longest an upstream call may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Errors talking to the upstream server.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("invalid upstream URL '{0}': {1}")]
    Url(String, String),
    #[error("upstream I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("upstream TLS: {0}")]
    Tls(String),
    #[error("upstream HTTP: {0}")]
    Http(String),
    #[error("the upstream server did not answer within {0:?}")]
    Timeout(Duration),
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// An upstream license server.
#[derive(Clone)]
pub struct Upstream {
    https: bool,
    host: String,
    port: u16,
    /// Path prefix without a trailing slash.
    base: String,
    token: Option<String>,
    tls: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("url", &self.url())
            .field("token", &self.token.as_ref().map(|_| "redacted"))
            .finish_non_exhaustive()
    }
}

impl Upstream {
    /// `url`: `https://host[:port][/prefix]` (or `http://` for development).
    pub fn new(url: &str, token: Option<String>) -> Result<Self, UpstreamError> {
        let bad = |why: &str| UpstreamError::Url(url.to_owned(), why.to_owned());
        let uri: hyper::Uri = url.trim_end_matches('/').parse().map_err(|_| bad("not a URL"))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(bad("the scheme must be https (or http for development)")),
        };
        let host = uri.host().ok_or_else(|| bad("no host"))?.to_owned();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let base = uri.path().trim_end_matches('/').to_owned();
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for cert in native.certs {
            let _ = roots.add(cert);
        }
        if https && roots.is_empty() {
            return Err(UpstreamError::Tls("no trusted root certificates found on this system".into()));
        }
        let tls =
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| UpstreamError::Tls(e.to_string()))?
                .with_root_certificates(roots)
                .with_no_client_auth();
        Ok(Self { https, host, port, base, token, tls: Arc::new(tls) })
    }

    pub fn url(&self) -> String {
        format!("{}://{}:{}{}", if self.https { "https" } else { "http" }, self.host, self.port, self.base)
    }

    /// One request on a fresh connection: the status and the body.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(u16, Bytes), UpstreamError> {
        tokio::time::timeout(CALL_TIMEOUT, self.call_inner(method, path, body))
            .await
            .map_err(|_| UpstreamError::Timeout(CALL_TIMEOUT))?
    }

    async fn call_inner(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(u16, Bytes), UpstreamError> {
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port)).await?;
        let io: Box<dyn Io> = if self.https {
            let name = rustls::pki_types::ServerName::try_from(self.host.clone())
                .map_err(|e| UpstreamError::Tls(e.to_string()))?;
            let tls = tokio_rustls::TlsConnector::from(Arc::clone(&self.tls))
                .connect(name, tcp)
                .await
                .map_err(|e| UpstreamError::Tls(e.to_string()))?;
            Box::new(tls)
        } else {
            Box::new(tcp)
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| UpstreamError::Http(e.to_string()))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header(hyper::header::HOST, &self.host)
            .header(hyper::header::USER_AGENT, concat!("chorus-license-proxy/", env!("CARGO_PKG_VERSION")));
        if body.is_some() {
            req = req.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        if let Some(token) = &self.token {
            req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| UpstreamError::Http(e.to_string()))?;
        let response = sender.send_request(req).await.map_err(|e| UpstreamError::Http(e.to_string()))?;
        let status = response.status().as_u16();
        let bytes =
            response.into_body().collect().await.map_err(|e| UpstreamError::Http(e.to_string()))?.to_bytes();
        Ok((status, bytes))
    }
}
