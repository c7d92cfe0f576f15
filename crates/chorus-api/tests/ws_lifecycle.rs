//! `GET /tts/websocket`: idle close, client disconnects and server shutdown.
#![allow(clippy::unwrap_used)]

mod ws_support;

use std::time::{Duration, Instant};

use chorus_api::ws::{WsConfig, WsShutdown};
use futures_util::StreamExt as _;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use ws_support::{Client, of, request, start, types};

const STOPPED: &[&str] = &["cancel", "events closed", "inputs disconnected"];

#[tokio::test]
async fn idle_socket_closes_with_1000() {
    let config = WsConfig { idle_timeout: Duration::from_millis(300), ..WsConfig::default() };
    let server = start(config).await;
    let mut client = Client::connect(server.addr).await;
    let t0 = Instant::now();
    let frame = client.expect_close(Duration::from_secs(3)).await.expect("a close frame");
    assert_eq!(u16::from(frame.code), 1000);
    assert!(t0.elapsed() >= Duration::from_millis(250), "closed after {:?}", t0.elapsed());
}

#[tokio::test]
async fn client_messages_and_streaming_audio_keep_the_socket_open() {
    let config = WsConfig { idle_timeout: Duration::from_millis(300), ..WsConfig::default() };
    let server = start(config).await;
    let mut client = Client::connect(server.addr).await;
    // Client messages every 100 ms.
    for i in 0..6 {
        client.send(request(&format!("m{i}"), "x", false)).await;
        assert_eq!(
            types(&of(&client.recv_until_end(&format!("m{i}")).await, &format!("m{i}"))),
            ["chunk", "done"]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // No client message for 900 ms, but audio flows.
    client.send(request("e", "endless idle", true)).await;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_millis(900) {
        let v = client.recv().await;
        assert_eq!((v["context_id"].as_str(), v["type"].as_str()), (Some("e"), Some("chunk")));
    }
    client.send(json!({"context_id": "e", "cancel": true})).await;
    // Then silence: idle.
    let t0 = Instant::now();
    loop {
        match tokio::time::timeout(Duration::from_secs(3), client.ws.next()).await.expect("no frame in time")
        {
            Some(Ok(Message::Close(frame))) => {
                assert_eq!(u16::from(frame.unwrap().code), 1000);
                break;
            }
            Some(Ok(_)) => assert!(t0.elapsed() < Duration::from_secs(3)),
            Some(Err(e)) => panic!("{e}"),
            None => panic!("no close frame"),
        }
    }
    server.journal.wait_for("endless idle", STOPPED, Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_vanishing_stops_every_worker() {
    let server = start(WsConfig::default()).await;
    let mut client = Client::connect(server.addr).await;
    client.send(request("a", "endless vanish a", true)).await;
    client.send(request("b", "stall vanish b", true)).await;
    let v = client.recv().await;
    assert_eq!(v["context_id"], "a");
    server.journal.wait_for("stall vanish b", &["started"], Duration::from_secs(2)).await;
    // The TCP connection goes away without a close frame.
    drop(client);
    server.journal.wait_for("endless vanish a", STOPPED, Duration::from_secs(2)).await;
    server.journal.wait_for("stall vanish b", STOPPED, Duration::from_secs(2)).await;
}

#[tokio::test]
async fn client_close_frame_stops_every_worker() {
    let server = start(WsConfig::default()).await;
    let mut client = Client::connect(server.addr).await;
    client.send(request("a", "endless close", true)).await;
    assert_eq!(client.recv().await["context_id"], "a");
    client.ws.close(None).await.unwrap();
    server.journal.wait_for("endless close", STOPPED, Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_then_closes_with_1001() {
    let shutdown = WsShutdown::new();
    let config = WsConfig { drain_timeout: Duration::from_millis(500), ..WsConfig::default() }
        .with_shutdown(&shutdown);
    let server = start(config).await;

    let mut idle = Client::connect(server.addr).await;
    let mut busy = Client::connect(server.addr).await;
    busy.send(request("s", "stall shutdown", true)).await;
    let mut finishing = Client::connect(server.addr).await;
    finishing.send(request("f", "first part", true)).await;
    assert_eq!(finishing.recv().await["type"], "chunk");
    server.journal.wait_for("stall shutdown", &["started"], Duration::from_secs(2)).await;

    let t0 = Instant::now();
    shutdown.trigger();
    assert!(shutdown.is_triggered());

    // No context: 1001 at once.
    let frame = idle.expect_close(Duration::from_secs(2)).await.expect("a close frame");
    assert_eq!(u16::from(frame.code), 1001);

    // No new socket...
    match tokio_tungstenite::connect_async(format!("ws://{}/tts/websocket", server.addr)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 503),
        other => panic!("handshake during shutdown: {other:?}"),
    }
    // ...and no new context on an open one.
    busy.send(request("new", "refused", false)).await;
    let v = busy.recv().await;
    assert_eq!(
        (v["type"].clone(), v["context_id"].clone(), v["status_code"].clone()),
        (json!("error"), json!("new"), json!(503))
    );

    // A running context may finish; the socket closes after its done.
    finishing.send(request("f", " and the end.", false)).await;
    let frames = finishing.recv_until_end("f").await;
    assert_eq!(types(&of(&frames, "f")), ["chunk", "done"]);
    let frame = finishing.expect_close(Duration::from_secs(2)).await.expect("a close frame");
    assert_eq!(u16::from(frame.code), 1001);

    // One that does not finish is stopped at the drain timeout: its context ends with an error (never silently),
    // then the socket closes.
    let v = busy.recv().await;
    assert_eq!(
        (v["type"].clone(), v["context_id"].clone(), v["error_code"].clone()),
        (json!("error"), json!("s"), json!("unserviceable")),
        "{v}"
    );
    let frame = busy.expect_close(Duration::from_secs(3)).await.expect("a close frame");
    assert_eq!(u16::from(frame.code), 1001);
    assert!(t0.elapsed() >= Duration::from_millis(450), "closed after {:?}", t0.elapsed());
    server.journal.wait_for("stall shutdown", STOPPED, Duration::from_secs(2)).await;

    tokio::time::timeout(Duration::from_secs(3), shutdown.wait_closed()).await.expect("every socket closed");
}
