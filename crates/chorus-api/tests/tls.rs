//! TLS on the API port: HTTP/1.1 and HTTP/2 (ALPN), a WebSocket over TLS, and a certificate replaced on disk taking
//! effect for new connections without a restart (a broken replacement is ignored). Certificates are made at test
//! time with rcgen.
#![allow(clippy::unwrap_used)]

mod ws_support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chorus_api::tls::{TlsAcceptor, TlsSettings};
use chorus_api::{ApiConfig, router};
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};

struct Cert {
    pem: String,
    key: String,
    der: CertificateDer<'static>,
}

fn make_cert() -> Cert {
    let c = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    Cert { pem: c.cert.pem(), key: c.signing_key.serialize_pem(), der: c.cert.der().clone() }
}

fn write(dir: &Path, cert: &Cert) {
    std::fs::write(dir.join("tls.crt"), &cert.pem).unwrap();
    std::fs::write(dir.join("tls.key"), &cert.key).unwrap();
}

fn connector(trusted: &Cert, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(trusted.der.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

async fn connect(
    addr: std::net::SocketAddr,
    trusted: &Cert,
    alpn: &[&[u8]],
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    connector(trusted, alpn).connect(ServerName::try_from("localhost").unwrap(), tcp).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_http2_and_websocket_over_tls_and_a_reloaded_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let first = make_cert();
    write(dir.path(), &first);
    let settings = TlsSettings {
        cert: dir.path().join("tls.crt"),
        key: dir.path().join("tls.key"),
        reload_interval: Duration::from_millis(100),
    };
    let acceptor = TlsAcceptor::start(settings.clone()).unwrap();
    let (state, _journal) = ws_support::test_state_with(ApiConfig::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = router(state).layer(axum::Extension(chorus_api::ws::WsConfig::default()));
    tokio::spawn(chorus_api::app::serve_tls(listener, acceptor.clone(), app, std::future::pending()));

    // HTTP/1.1.
    let mut tls = connect(addr, &first, &[b"http/1.1"]).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    tls.write_all(b"GET /status HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut response = String::new();
    tls.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"ok\":true"), "{response}");

    // HTTP/2, chosen by ALPN.
    let tls = connect(addr, &first, &[b"h2", b"http/1.1"]).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = axum::http::Request::get("https://localhost/status")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = sender.send_request(req).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), axum::http::Version::HTTP_2);

    // A WebSocket over TLS (wss://): a context spoken end to end.
    let tls = connect(addr, &first, &[b"http/1.1"]).await.unwrap();
    let (mut ws, _) =
        tokio_tungstenite::client_async(format!("wss://localhost:{}/tts/websocket", addr.port()), tls)
            .await
            .unwrap();
    ws.send(tokio_tungstenite::tungstenite::Message::text(
        ws_support::request("t", "Over TLS.", false).to_string(),
    ))
    .await
    .unwrap();
    let mut types = Vec::new();
    while let Some(msg) = tokio::time::timeout(Duration::from_secs(10), ws.next()).await.unwrap() {
        let v: serde_json::Value = serde_json::from_str(msg.unwrap().to_text().unwrap()).unwrap();
        types.push(v["type"].as_str().unwrap().to_owned());
        if v["type"] == "done" {
            break;
        }
    }
    assert_eq!(types, ["chunk", "done"]);

    // A plain-HTTP client gets nowhere (the handshake fails), and the server goes on.
    let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
    plain.write_all(b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), plain.read(&mut buf)).await.unwrap().unwrap_or(0);
    assert!(!String::from_utf8_lossy(&buf[..n]).contains("200"));

    // Replace the certificate on disk: new connections get the new one, without a restart.
    let second = make_cert();
    write(dir.path(), &second);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while acceptor.reloads() == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(acceptor.reloads(), 1, "the new certificate was not loaded");
    assert!(connect(addr, &second, &[b"http/1.1"]).await.is_ok(), "the new certificate is served");
    assert!(connect(addr, &first, &[b"http/1.1"]).await.is_err(), "the old certificate is no longer served");

    // A broken replacement (a key that does not match, then garbage) is ignored: the last good one stays.
    std::fs::write(dir.path().join("tls.key"), make_cert().key).unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    std::fs::write(dir.path().join("tls.crt"), "not a certificate").unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(acceptor.reloads(), 1);
    assert!(
        connect(addr, &second, &[b"http/1.1"]).await.is_ok(),
        "the last good certificate is still served"
    );

    // A missing or unusable pair is refused at start, with a clear error.
    let bad = TlsSettings { key: dir.path().join("missing.key"), ..settings };
    let err = TlsAcceptor::start(bad).unwrap_err().to_string();
    assert!(err.contains("missing.key"), "{err}");
}
