//! `serve` over real TCP: HTTP/1.1 framing of streamed audio (chunked, and left unterminated when synthesis
//! fails mid-stream) and graceful shutdown.
#![allow(clippy::unwrap_used)]

mod http_support;

use std::net::SocketAddr;
use std::time::Duration;

use chorus_api::{router, serve};
use http_support::{FAIL_LATE, TestServer, tts_body};
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// Starts `serve` on 127.0.0.1:0; returns its address, the shutdown trigger and the server task.
async fn start(
    server: &TestServer,
) -> (SocketAddr, tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<std::io::Result<()>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, router(server.state.clone()), async move {
        let _ = rx.await;
    }));
    (addr, tx, task)
}

/// Sends a raw HTTP/1.1 request and reads until the server closes the connection.
async fn exchange(addr: SocketAddr, request: &str) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out)).await.unwrap().unwrap();
    out
}

fn post(path: &str, body: &serde_json::Value) -> String {
    let body = body.to_string();
    format!(
        "POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn head_and_body(response: &[u8]) -> (String, &[u8]) {
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    (String::from_utf8_lossy(&response[..split]).to_lowercase(), &response[split + 4..])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_audio_is_chunked_and_a_late_failure_is_not_terminated() {
    let server = TestServer::open();
    let (addr, shutdown, task) = start(&server).await;
    let format = json!({"container": "raw", "encoding": "pcm_s16le", "sample_rate": 22050});

    let ok = exchange(addr, &post("/tts/bytes", &tts_body("One. Two.", format.clone()))).await;
    let (head, body) = head_and_body(&ok);
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    assert!(head.contains("x-request-id: "));
    assert!(body.ends_with(b"0\r\n\r\n"), "a complete chunked body");

    // hyper closes the connection when the body fails: whatever was still buffered (the first audio, even the
    // head) may be lost, but the body is never terminated as if complete.
    let failed = exchange(addr, &post("/tts/bytes", &tts_body(FAIL_LATE, format))).await;
    if failed.windows(4).any(|w| w == b"\r\n\r\n") {
        let (head, body) = head_and_body(&failed);
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert!(!body.ends_with(b"0\r\n\r\n"), "the chunked body must not be terminated after a failure");
    }

    let status = exchange(addr, "GET /status HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").await;
    let (head, body) = head_and_body(&status);
    assert!(head.starts_with("http/1.1 200"));
    assert_eq!(serde_json::from_slice::<serde_json::Value>(body).unwrap()["ok"], true);

    shutdown.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task).await.unwrap().unwrap().unwrap();
    assert!(TcpStream::connect(addr).await.is_err(), "the listener is closed after shutdown");
}
