//! Issue 14 in one process: what a careless or abusive client must not get away with, through the real router and
//! the real accept loop (`chorus_api::serve`), over loopback sockets.
//!
//! - an empty (or whitespace-only) WebSocket context starts no job, so it holds no worker slot; its job starts
//!   with its first text, and flushes before that are answered and counted;
//! - empty messages do not keep a socket open past its idle timeout;
//! - a huge `Content-Length` is refused with 413 at once, without waiting for the body;
//! - ids are quoted cut in error bodies and frames, never echoed whole;
//! - `generation_config` must be an object of known fields.
#![allow(clippy::unwrap_used)]

mod ws_support;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use chorus_api::ws::WsConfig;
use serde_json::json;
use ws_support::{Client, VOICE, request, serve, start, test_state};

/// Three contexts opened with no text (and one with only whitespace) start nothing on the bus; text starts the
/// context's job, with the text sent so far.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_contexts_start_no_job_until_they_have_text() {
    let server = start(WsConfig::default()).await;
    let mut client = Client::connect(server.addr).await;
    for id in ["hold1", "hold2", "hold3"] {
        client.send(request(id, "", true)).await;
    }
    client.send(request("blank", "  \n ", true)).await;
    // An empty `continue` message on an open context is nothing either.
    client.send(json!({"context_id": "hold1", "transcript": "", "continue": true})).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        server.journal.of("").is_empty(),
        "a job started for an empty context: {:?}",
        server.journal.of("")
    );
    assert!(server.journal.of("  \n ").is_empty(), "a job started for a whitespace-only context");

    // Text starts the job (the whitespace sent before is part of its text).
    client.send(json!({"context_id": "blank", "transcript": "Now words.", "continue": false})).await;
    let frames = client.recv_until_end("blank").await;
    assert_eq!(frames.last().unwrap()["type"], "done", "{frames:?}");
    assert_eq!(server.journal.of("  \n Now words."), ["started", "done"]);
    // A context ended before it had text is done at once, without a job.
    client.send(json!({"context_id": "hold2", "transcript": "", "continue": false})).await;
    let frames = client.recv_until_end("hold2").await;
    assert_eq!(frames.iter().map(|f| f["type"].clone()).collect::<Vec<_>>(), [json!("done")]);
    assert!(server.journal.of("").is_empty());
}

/// Flushes of a context without text are answered at once; its job's flushes continue the numbering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushes_before_text_are_answered_and_counted() {
    let server = start(WsConfig::default()).await;
    let mut client = Client::connect(server.addr).await;
    let mut first = request("f", "", true);
    first["flush"] = json!(true);
    client.send(first).await;
    let v = client.recv().await;
    assert_eq!((v["type"].clone(), v["flush_id"].clone()), (json!("flush_done"), json!(1)), "{v}");
    client
        .send(json!({"context_id": "f", "transcript": "Some text.", "continue": true, "flush": true}))
        .await;
    let mut chunk_flush = None;
    loop {
        let v = client.recv().await;
        if v["type"] == "chunk" {
            chunk_flush = Some(v["flush_id"].clone());
        }
        if v["type"] == "flush_done" {
            assert_eq!(v["flush_id"], 2, "{v}");
            break;
        }
    }
    assert_eq!(chunk_flush, Some(json!(2)), "audio of the second flush period");
    client.send(json!({"context_id": "f", "transcript": "", "continue": false})).await;
    assert_eq!(client.recv_until_end("f").await.last().unwrap()["type"], "done");
}

/// Empty messages (and bad ones) every 300 ms do not keep a socket open: it closes at its idle timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_messages_do_not_keep_a_socket_open() {
    let idle = Duration::from_millis(1500);
    let server = start(WsConfig { idle_timeout: idle, ..WsConfig::default() }).await;
    let client = Client::connect(server.addr).await;
    let opened = Instant::now();
    let pinger = {
        let (sink, mut stream) = futures_util::StreamExt::split(client.ws);
        let mut sink = sink;
        let task = tokio::spawn(async move {
            for i in 0..20 {
                let msg = if i % 3 == 2 {
                    "not json".to_owned()
                } else {
                    json!({"context_id": "keepalive", "transcript": "", "continue": true, "model_id": "sonic-3",
                           "voice": {"mode": "id", "id": VOICE},
                           "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 22050}})
                    .to_string()
                };
                if futures_util::SinkExt::send(&mut sink, tokio_tungstenite::tungstenite::Message::text(msg))
                    .await
                    .is_err()
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        });
        // Read until the server closes (or the socket ends).
        let closed = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(Ok(msg)) = futures_util::StreamExt::next(&mut stream).await {
                if let tokio_tungstenite::tungstenite::Message::Close(frame) = msg {
                    return frame.map(|f| u16::from(f.code));
                }
            }
            None
        })
        .await;
        task.abort();
        closed
    };
    let code = pinger.expect("the socket was still open 5 s later, kept alive by empty messages");
    let after = opened.elapsed();
    assert_eq!(code, Some(1000), "idle close");
    assert!(after >= idle && after < idle + Duration::from_millis(1500), "closed after {after:?}");
}

/// `Content-Length: 10^12` is answered 413 at once, not after waiting for a terabyte; the real accept loop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_content_length_is_413_without_reading_the_body() {
    let (state, _journal) = test_state();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(chorus_api::serve(listener, chorus_api::router(state), std::future::pending()));
    let answer = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let started = Instant::now();
        write!(
            s,
            "POST /tts/bytes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Content-Length: 1000000000000\r\n\r\n{{\"model_id\""
        )
        .unwrap();
        let mut buf = vec![0u8; 4096];
        let n = s.read(&mut buf).unwrap_or(0);
        (String::from_utf8_lossy(&buf[..n]).into_owned(), started.elapsed())
    })
    .await
    .unwrap();
    let (text, took) = answer;
    assert!(text.starts_with("HTTP/1.1 413"), "{text:?} after {took:?}");
    assert!(text.contains("request_id"), "the Cartesia error JSON: {text}");
    assert!(took < Duration::from_secs(2), "413 took {took:?}");
}

/// A 100 kB voice id is not echoed whole in the 404; a 900 kB `context_id` is not echoed whole in the error frame.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_values_are_quoted_cut() {
    let (state, _journal) = test_state();
    let addr = serve(chorus_api::router(state)).await;
    let long_voice = "v".repeat(100_000);
    let body = json!({
        "model_id": "sonic-3", "transcript": "Hello.", "voice": {"mode": "id", "id": long_voice},
        "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 22050},
    })
    .to_string();
    let (status, text) =
        tokio::task::spawn_blocking(move || raw_post(addr, "/tts/bytes", &body)).await.unwrap();
    assert_eq!(status, 404, "{}", &text[..text.len().min(300)]);
    assert!(text.len() < 2048, "the 404 body is {} bytes", text.len());
    assert!(text.contains("voice_not_found"), "{text}");

    let mut client = Client::connect(addr).await;
    let long_id = "c".repeat(900_000);
    client.send(request(&long_id, "Hello.", false)).await;
    let frame = client.recv().await;
    assert_eq!(frame["type"], "error");
    assert!(frame.to_string().len() < 4096, "the error frame is {} bytes", frame.to_string().len());
}

/// `generation_config: [1]` (or a misspelt field) is refused, not silently replaced by defaults.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generation_config_must_be_an_object_of_known_fields() {
    let (state, _journal) = test_state();
    let addr = serve(chorus_api::router(state)).await;
    for config in [json!([1]), json!({"sped": 2.0})] {
        let body = json!({
            "model_id": "sonic-3", "transcript": "Hello.", "voice": {"mode": "id", "id": VOICE},
            "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 22050},
            "generation_config": config,
        })
        .to_string();
        let (status, text) =
            tokio::task::spawn_blocking(move || raw_post(addr, "/tts/bytes", &body)).await.unwrap();
        assert_eq!(status, 422, "generation_config {config}: {text}");
        assert!(text.contains("generation_config"), "{text}");
    }
}

/// One HTTP/1.1 POST on a fresh connection: status and body (read to the end).
fn raw_post(addr: std::net::SocketAddr, path: &str, body: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or(String::new(), |(_, b)| b.to_owned());
    (status, body)
}
