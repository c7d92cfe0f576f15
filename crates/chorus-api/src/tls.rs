//! TLS on the API port (rustls, ring): a PEM certificate chain and key, reloaded when the files change, without a
//! restart; ALPN offers HTTP/2 and HTTP/1.1 (WebSockets over either).
//!
//! The serve path needs one thing from here: [`TlsAcceptor::accept`], which turns an accepted `TcpStream` into the
//! stream HTTP is spoken on; [`TlsAcceptor`] is the accept loop's [`Wrap`](crate::serve::Wrap), so the handshake
//! runs in the connection's own task under the loop's connection limits and header timeout, and the protocol
//! negotiated by ALPN picks HTTP/2 or HTTP/1.1.
//!
//! Reloading: every [`TlsSettings::reload_interval`] the two files are read again; when their contents changed and
//! parse into a certificate whose key matches, new handshakes use it (connections already open keep theirs). A
//! broken or half-written pair is logged and ignored: the previous certificate stays in use. This follows a
//! Kubernetes `kubernetes.io/tls` Secret mounted as files (updated in place by the kubelet) and cert-manager's
//! renewals.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;

/// How often the certificate files are checked for a change, by default.
pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(5);

/// Where the certificate and key are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    pub reload_interval: Duration,
}

/// Why a certificate cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path}: no PEM certificate found")]
    NoCertificate { path: PathBuf },
    #[error("{path}: no PEM private key found ({why})")]
    NoKey { path: PathBuf, why: String },
    #[error("the private key is not usable: {0}")]
    Key(String),
    #[error("the private key does not match the certificate: {0}")]
    Mismatch(String),
    #[error("TLS settings: {0}")]
    Config(String),
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { path: path.to_owned(), source })
}

/// Parses a certificate chain and key (PEM) into a usable certified key.
fn certified_key(
    cert_pem: &[u8],
    key_pem: &[u8],
    paths: &TlsSettings,
) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(cert_pem).filter_map(Result::ok).collect();
    if chain.is_empty() {
        return Err(TlsError::NoCertificate { path: paths.cert.clone() });
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| TlsError::NoKey { path: paths.key.clone(), why: e.to_string() })?;
    let signer =
        rustls::crypto::ring::sign::any_supported_type(&key).map_err(|e| TlsError::Key(e.to_string()))?;
    let certified = CertifiedKey::new(chain, signer);
    certified.keys_match().map_err(|e| TlsError::Mismatch(e.to_string()))?;
    Ok(Arc::new(certified))
}

/// The current certificate, swapped on reload.
#[derive(Debug)]
struct Current {
    key: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.key.read().unwrap_or_else(std::sync::PoisonError::into_inner)))
    }
}

/// Accepts TLS connections with the current certificate. Cheap to clone.
#[derive(Clone)]
pub struct TlsAcceptor {
    inner: tokio_rustls::TlsAcceptor,
    current: Arc<Current>,
    /// The certificate's fingerprint (a change means a reload took effect), for logs and tests.
    generation: Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for TlsAcceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsAcceptor").finish_non_exhaustive()
    }
}

impl TlsAcceptor {
    /// Loads the certificate (an error if it cannot be used) and starts following its files (inside a Tokio
    /// runtime; the follower stops when every clone of the acceptor is dropped).
    pub fn start(settings: TlsSettings) -> Result<Self, TlsError> {
        let (cert_pem, key_pem) = (read(&settings.cert)?, read(&settings.key)?);
        let key = certified_key(&cert_pem, &key_pem, &settings)?;
        let current = Arc::new(Current { key: RwLock::new(key) });
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&current) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = Self {
            inner: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            current,
            generation: Arc::default(),
        };
        acceptor.follow(settings, cert_pem, key_pem);
        Ok(acceptor)
    }

    /// Re-reads the files every interval and swaps the certificate when they changed and are valid.
    fn follow(&self, settings: TlsSettings, mut cert_pem: Vec<u8>, mut key_pem: Vec<u8>) {
        let weak = Arc::downgrade(&self.current);
        let generation = Arc::clone(&self.generation);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(settings.reload_interval.max(Duration::from_millis(50)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(current) = weak.upgrade() else { break };
                let (Ok(cert), Ok(key)) = (read(&settings.cert), read(&settings.key)) else {
                    tracing::warn!(cert = %settings.cert.display(), key = %settings.key.display(), "TLS files unreadable; keeping the current certificate.");
                    continue;
                };
                if cert == cert_pem && key == key_pem {
                    continue;
                }
                match certified_key(&cert, &key, &settings) {
                    Ok(new) => {
                        *current.key.write().unwrap_or_else(std::sync::PoisonError::into_inner) = new;
                        generation.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
                        tracing::info!(cert = %settings.cert.display(), "TLS certificate reloaded.");
                        (cert_pem, key_pem) = (cert, key);
                    }
                    // A pair caught half-written is retried on the next tick (the contents stay "changed").
                    Err(e) => {
                        tracing::warn!(error = %e, "New TLS files not usable; keeping the current certificate.")
                    }
                }
            }
        });
    }

    /// How many times the certificate was reloaded.
    pub fn reloads(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The TLS handshake on an accepted connection: the stream HTTP is then spoken on.
    pub async fn accept(&self, tcp: TcpStream) -> io::Result<tokio_rustls::server::TlsStream<TcpStream>> {
        self.inner.accept(tcp).await
    }
}

/// The serve path's hook ([`crate::serve::Wrap`]): accepted connections become TLS sessions, HTTP/2 when the
/// client chose `h2`.
impl crate::serve::Wrap for TlsAcceptor {
    type Stream = tokio_rustls::server::TlsStream<TcpStream>;

    fn wrap(
        &self,
        tcp: TcpStream,
        _peer: SocketAddr,
    ) -> chorus_bus::BoxFuture<'static, io::Result<Self::Stream>> {
        let acceptor = self.clone();
        Box::pin(async move { acceptor.accept(tcp).await })
    }

    fn http2(stream: &Self::Stream) -> bool {
        stream.get_ref().1.alpn_protocol() == Some(b"h2")
    }
}
