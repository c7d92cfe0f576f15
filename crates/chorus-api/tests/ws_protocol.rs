//! `GET /tts/websocket`: the context protocol (spec 2.4.4) against a deterministic worker.
#![allow(clippy::unwrap_used)]

mod ws_support;

use std::time::Duration;

use chorus_api::ws::WsConfig;
use futures_util::SinkExt as _;
use serde_json::json;
use ws_support::{Client, RATE, SAMPLES_PER_CHAR, chunk_bytes, of, request, start, types};

/// Bytes of s16le audio the test worker makes for `text` at the model rate.
fn s16_bytes(text: &str) -> usize {
    text.chars().count() * SAMPLES_PER_CHAR * 2
}

#[tokio::test]
async fn one_shot_request_gets_chunks_then_one_done() {
    let server = start(WsConfig::default()).await;
    let mut client = Client::connect(server.addr).await;
    client.send(request("a", "Hello there.", false)).await;
    let frames = client.recv_until_end("a").await;
    assert_eq!(types(&of(&frames, "a")), ["chunk", "done"]);
    let chunk = &frames[0];
    assert_eq!(chunk_bytes(chunk), s16_bytes("Hello there."));
    assert_eq!(
        (chunk["done"].clone(), chunk["status_code"].clone(), chunk["flush_id"].clone()),
        (json!(false), json!(206), json!(1))
    );
    assert!(chunk["step_time"].is_number());
    assert_eq!(frames[1], json!({"type": "done", "context_id": "a", "done": true, "status_code": 206}));
    server.journal.wait_for("Hello there.", &["done"], Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_contexts_interleave_each_with_its_own_audio() {
    let server = start(WsConfig::default()).await;
    let mut client = Client::connect(server.addr).await;
    client.send(request("a", "aa", true)).await;
    client.send(request("b", "bbbbbbb", true)).await;
    client.send(request("a", "aaaa", true)).await;
    client.send(request("b", "bbb", true)).await;
    client.send(request("a", "a", true)).await;
    client.send(request("b", "", false)).await;
    client.send(request("a", "", false)).await;

    let mut frames = Vec::new();
    let mut done = 0;
    while done < 2 {
        let v = client.recv().await;
        if v["type"] == "done" {
            done += 1;
        }
        frames.push(v);
    }
    for (id, texts) in [("a", ["aa", "aaaa", "a"].as_slice()), ("b", ["bbbbbbb", "bbb"].as_slice())] {
        let mine = of(&frames, id);
        assert_eq!(mine.last().unwrap()["type"], "done", "{id}: {mine:?}");
        assert_eq!(mine.iter().filter(|v| v["type"] == "done").count(), 1);
        let sizes: Vec<usize> =
            mine.iter().filter(|v| v["type"] == "chunk").map(|v| chunk_bytes(v)).collect();
        let expected: Vec<usize> = texts.iter().map(|t| s16_bytes(t)).collect();
        assert_eq!(sizes, expected, "context {id}");
    }
    assert!(frames.iter().all(|v| v["context_id"] == "a" || v["context_id"] == "b"));
}

#[tokio::test]
async fn continue_and_flush_number_the_periods_from_one() {
    let server = start(WsConfig::default()).await;
    let mut client = Client::connect(server.addr).await;
    client.send(request("f", "Hello ", true)).await;
    client.send(json!({"context_id": "f", "transcript": "", "continue": true, "flush": true})).await;
    client.send(request("f", "again", true)).await;
    let mut flush = request("f", "", true);
    flush["flush"] = json!(true);
    client.send(flush).await;
    client.send(request("f", "last", false)).await;

    let frames = client.recv_until_end("f").await;
    assert_eq!(types(&of(&frames, "f")), ["chunk", "flush_done", "chunk", "flush_done", "chunk", "done"]);
    let ids: Vec<_> = frames.iter().map(|v| v["flush_id"].clone()).collect();
    assert_eq!(ids, [json!(1), json!(1), json!(2), json!(2), json!(3), json!(null)]);
    assert_eq!(
        frames[1],
        json!({"type": "flush_done", "context_id": "f", "done": false, "flush_done": true, "flush_id": 1,
            "status_code": 206})
    );
    let sizes: Vec<usize> = [0, 2, 4].iter().map(|&i| chunk_bytes(&frames[i])).collect();
    assert_eq!(sizes, [s16_bytes("Hello "), s16_bytes("again"), s16_bytes("last")]);
}

#[tokio::test]
async fn flush_on_the_first_message_and_with_the_last_one() {
    let server = start(WsConfig::default()).await;
    let mut client = Client::connect(server.addr).await;
    let mut first = request("g", "One.", true);
    first["flush"] = json!(true);
    client.send(first).await;
    let mut last = request("g", "Two.", false);
    last["flush"] = json!(true);
    client.send(last).await;
    let frames = client.recv_until_end("g").await;
    assert_eq!(types(&of(&frames, "g")), ["chunk", "flush_done", "chunk", "flush_done", "done"]);
    assert_eq!(frames[3]["flush_id"], 2);
}

#[tokio::test]
async fn resampled_output_carries_across_chunks_and_flushes() {
    let server = start(WsConfig::default()).await;
    let mut client = Client::connect(server.addr).await;
    let mut first = request("r", "abcdefghij", true);
    first["output_format"] = json!({"container": "raw", "encoding": "pcm_f32le", "sample_rate": 16000});
    client.send(first).await;
    client
        .send(json!({"context_id": "r", "transcript": "klmnopqrst", "continue": true, "flush": true}))
        .await;
    client.send(json!({"context_id": "r", "transcript": "uvwxyz", "continue": false})).await;
    let frames = client.recv_until_end("r").await;
    let mine = of(&frames, "r");
    let flush_at = mine.iter().position(|v| v["type"] == "flush_done").unwrap();
    let bytes = |frames: &[&serde_json::Value]| -> usize {
        frames.iter().filter(|v| v["type"] == "chunk").map(|v| chunk_bytes(v)).sum()
    };
    // Everything before the flush is out before flush_done: 20 characters, resampled to 16 kHz, 4 bytes a sample.
    let before = bytes(&mine[..flush_at]) / 4;
    let expected = 20 * SAMPLES_PER_CHAR * 16_000 / RATE as usize;
    assert!(before.abs_diff(expected) <= 2, "{before} samples before the flush, expected about {expected}");
    let after = bytes(&mine[flush_at..]) / 4;
    let expected = 6 * SAMPLES_PER_CHAR * 16_000 / RATE as usize;
    assert!(after.abs_diff(expected) <= 2, "{after} samples after the flush, expected about {expected}");
    assert!(mine[..flush_at].iter().all(|v| v["flush_id"] == 1));
    assert!(mine[flush_at + 1..].iter().filter(|v| v["type"] == "chunk").all(|v| v["flush_id"] == 2));
}

#[tokio::test]
async fn word_timestamps_only_when_asked() {
    let server = start(WsConfig::default()).await;
    let mut client = Client::connect(server.addr).await;
    let mut req = request("t", "two words", false);
    req["add_timestamps"] = json!(true);
    client.send(req).await;
    let frames = client.recv_until_end("t").await;
    assert_eq!(types(&of(&frames, "t")), ["chunk", "timestamps", "done"]);
    assert_eq!(
        frames[1]["word_timestamps"],
        json!({"words": ["two", "words"], "start": [0.0, 0.1], "end": [0.1, 0.2]})
    );
    assert_eq!((frames[1]["flush_id"].clone(), frames[1]["status_code"].clone()), (json!(1), json!(206)));

    client.send(request("u", "two words", false)).await;
    let frames = client.recv_until_end("u").await;
    assert_eq!(types(&of(&frames, "u")), ["chunk", "done"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_the_worker_and_nothing_more_is_sent() {
    let server = start(WsConfig::default()).await;
    let mut client = Client::connect(server.addr).await;
    client.send(request("x", "endless cancel", true)).await;
    // Audio is flowing.
    for _ in 0..3 {
        let v = client.recv().await;
        assert_eq!((v["context_id"].as_str(), v["type"].as_str()), (Some("x"), Some("chunk")));
    }
    client.send(json!({"context_id": "x", "cancel": true})).await;
    // Ordered after the cancel on the wire: every frame of "y" is written after the cancel was handled.
    client.send(request("y", "after", false)).await;
    let mut seen_y = false;
    loop {
        let v = client.recv().await;
        if v["context_id"] == "y" {
            seen_y = true;
            if v["type"] == "done" {
                break;
            }
        } else {
            assert_eq!(v["context_id"], "x");
            assert_eq!(v["type"], "chunk", "only audio already in flight, never done: {v}");
            assert!(!seen_y, "a frame of the cancelled context after the cancel: {v}");
        }
    }
    let ended =
        server.journal.wait_for("endless cancel", &["cancel", "events closed"], Duration::from_secs(2)).await;
    assert_eq!(ended, "cancel");
    // A cancel of a finished or unknown context is ignored, and so is the SDK's closing message after a cancel.
    client.send(json!({"context_id": "x", "cancel": true})).await;
    client.send(json!({"context_id": "nope", "cancel": true})).await;
    client
        .send(json!({"context_id": "x", "transcript": "", "continue": false, "model_id": "sonic-latest",
        "voice": "6ccbfb76-1fc6-48f7-b71d-91ac6298247b",
        "output_format": {"container": "raw", "encoding": "pcm_f32le", "sample_rate": 44100}}))
        .await;
    client.send(request("z", "z", false)).await;
    let frames = client.recv_until_end("z").await;
    assert!(frames.iter().all(|v| v["context_id"] == "z"), "{frames:?}");
    // After a cancel the id is free at once (a voice agent's next utterance, after a barge-in).
    client.send(request("x", "next utterance", false)).await;
    let frames = client.recv_until_end("x").await;
    assert_eq!(types(&of(&frames, "x")), ["chunk", "done"]);
}

#[tokio::test]
async fn cancel_while_the_job_is_starting() {
    let server = start(WsConfig::default()).await;
    let mut client = Client::connect(server.addr).await;
    client.send(request("s", "stall quick cancel", true)).await;
    client.send(json!({"context_id": "s", "cancel": true})).await;
    client.send(request("t", "t", false)).await;
    let frames = client.recv_until_end("t").await;
    assert!(frames.iter().all(|v| v["context_id"] == "t"), "{frames:?}");
    server.journal.wait_for("stall quick cancel", &["events closed"], Duration::from_secs(2)).await;
}

#[tokio::test]
async fn sdk_closing_message_with_the_fallback_voice_closes_the_context() {
    let server = start(WsConfig::default()).await;
    let mut client = Client::connect(server.addr).await;
    client.send(request("c", "Some text ", true)).await;
    client.send(request("c", "and more.", true)).await;
    // Python `no_more_inputs()`: hard-coded voice, sonic-latest, the default f32 44.1 kHz format.
    client
        .send(json!({
            "context_id": "c",
            "model_id": "sonic-latest",
            "transcript": "",
            "voice": {"mode": "id", "id": "6ccbfb76-1fc6-48f7-b71d-91ac6298247b"},
            "output_format": {"container": "raw", "encoding": "pcm_f32le", "sample_rate": 44100},
            "continue": false,
        }))
        .await;
    let frames = client.recv_until_end("c").await;
    assert_eq!(types(&of(&frames, "c")), ["chunk", "chunk", "done"]);
    // Still s16le at 22.05 kHz: the closing message's format is ignored.
    assert_eq!(chunk_bytes(&frames[1]), s16_bytes("and more."));
}

#[tokio::test]
async fn closing_message_alone_is_done_at_once() {
    let server = start(WsConfig::default()).await;
    let mut client = Client::connect(server.addr).await;
    client.send(json!({"context_id": "e", "transcript": "", "continue": false, "voice": "unknown"})).await;
    let v = client.recv().await;
    assert_eq!(v, json!({"type": "done", "context_id": "e", "done": true, "status_code": 206}));
}

#[tokio::test]
async fn context_id_reused_after_done_is_a_new_context() {
    let server = start(WsConfig::default()).await;
    let mut client = Client::connect(server.addr).await;
    client.send(request("r", "first", false)).await;
    assert_eq!(types(&of(&client.recv_until_end("r").await, "r")), ["chunk", "done"]);
    // A late closing message for it is ignored...
    client.send(request("r", "", false)).await;
    // ...and a new request on the id is a new context.
    client.send(request("r", "second!", false)).await;
    let frames = client.recv_until_end("r").await;
    assert_eq!(types(&of(&frames, "r")), ["chunk", "done"]);
    assert_eq!(chunk_bytes(&frames[0]), s16_bytes("second!"));
    server.journal.wait_for("second!", &["done"], Duration::from_secs(2)).await;
}

#[tokio::test]
async fn garbage_and_binary_frames_get_errors_and_the_socket_stays_usable() {
    let server = start(WsConfig::default()).await;
    let mut client = Client::connect(server.addr).await;

    client.send_text("this is not json").await;
    let v = client.recv().await;
    assert_eq!(
        (v["type"].clone(), v["status_code"].clone(), v["done"].clone()),
        (json!("error"), json!(400), json!(true))
    );
    assert!(v.get("context_id").is_none());
    for field in ["title", "message", "request_id", "error_code"] {
        assert!(v[field].is_string(), "{field} in {v}");
    }

    client.send_text("[1, 2, 3]").await;
    assert_eq!(client.recv().await["status_code"], 422);

    client.ws.send(tokio_tungstenite::tungstenite::Message::binary(vec![1u8, 2, 3])).await.unwrap();
    let v = client.recv().await;
    assert_eq!((v["type"].clone(), v["status_code"].clone()), (json!("error"), json!(400)));

    client.send_text(r#"{"context_id": "k", "transcript": 12}"#).await;
    let v = client.recv().await;
    assert_eq!((v["context_id"].clone(), v["status_code"].clone()), (json!("k"), json!(422)));

    client.send(request("ok", "fine", false)).await;
    assert_eq!(types(&of(&client.recv_until_end("ok").await, "ok")), ["chunk", "done"]);
}

#[tokio::test]
async fn invalid_requests_get_error_events_for_their_context() {
    let server = start(WsConfig::default()).await;
    let mut client = Client::connect(server.addr).await;

    let mut bad_voice = request("v", "hi", false);
    bad_voice["voice"] = json!("no-such-voice");
    client.send(bad_voice).await;
    let v = client.recv().await;
    assert_eq!(
        (v["type"].clone(), v["context_id"].clone(), v["status_code"].clone(), v["error_code"].clone()),
        (json!("error"), json!("v"), json!(404), json!("voice_not_found"))
    );
    // The SDK may still close the failed context: that is ignored.
    client.send(request("v", "", false)).await;

    let mut mp3 = request("m", "hi", false);
    mp3["output_format"] = json!({"container": "mp3", "sample_rate": 44100, "bit_rate": 128000});
    client.send(mp3).await;
    let v = client.recv().await;
    assert_eq!((v["context_id"].clone(), v["status_code"].clone()), (json!("m"), json!(400)));

    let mut bad_model = request("n", "hi", false);
    bad_model["model_id"] = json!("sonic-9");
    client.send(bad_model).await;
    let v = client.recv().await;
    assert_eq!((v["context_id"].clone(), v["error_code"].clone()), (json!("n"), json!("model_not_found")));

    client.send(json!({"context_id": "o", "transcript": "no voice"})).await;
    let v = client.recv().await;
    assert_eq!((v["context_id"].clone(), v["status_code"].clone()), (json!("o"), json!(422)));

    client.send(request("ok", "fine", false)).await;
    let frames = client.recv_until_end("ok").await;
    assert!(frames.iter().all(|v| v["context_id"] == "ok"), "{frames:?}");
}

#[tokio::test]
async fn more_text_after_continue_false_is_an_error_for_that_context() {
    let server = start(WsConfig::default()).await;
    let mut client = Client::connect(server.addr).await;
    client.send(request("s", "stall closed", true)).await;
    client.send(request("s", "", false)).await;
    client.send(request("s", "too late", true)).await;
    let v = client.recv().await;
    assert_eq!((v["type"].clone(), v["context_id"].clone()), (json!("error"), json!("s")));
    server.journal.wait_for("stall closed", &["events closed"], Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flooding_a_context_is_an_error_for_it_alone() {
    let server = start(WsConfig::default()).await;
    let mut client = Client::connect(server.addr).await;
    // The worker of a `stall` job reads no input: the bus's input queue (256) fills up.
    client.send(request("fl", "stall flood", true)).await;
    for _ in 0..(chorus_bus::INPUT_BUFFER + 10) {
        client.send(json!({"context_id": "fl", "transcript": "x", "continue": true})).await;
    }
    let v = client.recv().await;
    assert_eq!(
        (v["type"].clone(), v["context_id"].clone(), v["status_code"].clone()),
        (json!("error"), json!("fl"), json!(429))
    );
    server.journal.wait_for("stall flood", &["events closed"], Duration::from_secs(2)).await;
    // The inputs that were still on the wire for the failed context are dropped silently.
    client.send(request("ok", "fine", false)).await;
    let frames = client.recv_until_end("ok").await;
    assert!(frames.iter().all(|v| v["context_id"] == "ok"), "{frames:?}");
    // After the grace period the id is free again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    client.send(request("fl", "again", false)).await;
    assert_eq!(types(&of(&client.recv_until_end("fl").await, "fl")), ["chunk", "done"]);
}

#[tokio::test]
async fn contexts_per_socket_are_limited() {
    let config = WsConfig { max_contexts: 2, ..WsConfig::default() };
    let server = start(config).await;
    let mut client = Client::connect(server.addr).await;
    client.send(request("s1", "stall one", true)).await;
    client.send(request("s2", "stall two", true)).await;
    client.send(request("s3", "three", false)).await;
    let v = client.recv().await;
    assert_eq!(
        (v["type"].clone(), v["context_id"].clone(), v["status_code"].clone(), v["error_code"].clone()),
        (json!("error"), json!("s3"), json!(429), json!("concurrency_limited"))
    );
    client.send(json!({"context_id": "s1", "cancel": true})).await;
    client.send(request("s4", "four", false)).await;
    assert_eq!(types(&of(&client.recv_until_end("s4").await, "s4")), ["chunk", "done"]);
}

#[tokio::test]
async fn oversized_message_closes_with_1009() {
    let config = WsConfig { max_message_bytes: 4096, ..WsConfig::default() };
    let server = start(config).await;
    let mut client = Client::connect(server.addr).await;
    client.send(request("big", &"a".repeat(8192), false)).await;
    let frame = client.expect_close(Duration::from_secs(5)).await.expect("a close frame");
    assert_eq!(u16::from(frame.code), 1009);
}

#[tokio::test]
async fn handshake_without_permessage_deflate_stays_uncompressed() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    let server = start(WsConfig::default()).await;
    let req = format!("ws://{}/tts/websocket", server.addr).into_client_request().unwrap();
    let (ws, response) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(response.status(), 101);
    assert!(response.headers().get("sec-websocket-extensions").is_none(), "{response:?}");
    let mut client = Client { ws };
    client.send(request("d", "plain", false)).await;
    assert_eq!(types(&of(&client.recv_until_end("d").await, "d")), ["chunk", "done"]);
}

/// A raw client that speaks permessage-deflate (as Python `websockets`, Node `ws` and browsers do): its messages are
/// compressed with its own context kept across messages; the server's come back compressed, each inflatable on its
/// own (`server_no_context_takeover`).
#[tokio::test]
async fn permessage_deflate_is_negotiated_and_used_both_ways() {
    use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let server = start(WsConfig::default()).await;
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(
        b"GET /tts/websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
          Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(tcp.read_u8().await.unwrap());
    }
    let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="), "{head}");
    assert!(
        head.contains("sec-websocket-extensions: permessage-deflate; server_no_context_takeover"),
        "{head}"
    );

    let mut deflater = Compress::new(Compression::default(), false);
    let mut send = async |tcp: &mut tokio::net::TcpStream, text: String| {
        let mut data = Vec::with_capacity(text.len() + 64);
        deflater.compress_vec(text.as_bytes(), &mut data, FlushCompress::Sync).unwrap();
        data.truncate(data.len() - 4);
        let key = [7u8, 1, 9, 3];
        let mut frame = vec![0x80 | 0x40 | 0x1];
        if data.len() < 126 {
            frame.push(0x80 | data.len() as u8);
        } else {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(data.len() as u16).to_be_bytes());
        }
        frame.extend_from_slice(&key);
        frame.extend(data.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        tcp.write_all(&frame).await.unwrap();
    };
    // Two contexts; the second message reuses the first's words (back-references into the client's context).
    send(&mut tcp, request("z1", "Compressed words arrive.", false).to_string()).await;
    send(&mut tcp, request("z2", "Compressed words arrive again.", false).to_string()).await;

    let mut messages = Vec::new();
    let mut compressed = 0;
    while messages.iter().filter(|m: &&serde_json::Value| m["type"] == "done").count() < 2 {
        let b0 = tcp.read_u8().await.unwrap();
        let b1 = tcp.read_u8().await.unwrap();
        assert_eq!(b1 & 0x80, 0, "server frames are not masked");
        let len = match b1 & 0x7f {
            126 => u64::from(tcp.read_u16().await.unwrap()),
            127 => tcp.read_u64().await.unwrap(),
            n => u64::from(n),
        };
        let mut payload = vec![0u8; len as usize];
        tcp.read_exact(&mut payload).await.unwrap();
        assert_eq!(b0 & 0x0f, 1, "text frames only");
        assert_ne!(b0 & 0x80, 0, "single-frame messages");
        let text = if b0 & 0x40 != 0 {
            compressed += 1;
            payload.extend_from_slice(&[0, 0, 0xff, 0xff]);
            // A fresh inflater per message: the server keeps no context.
            let mut inflater = Decompress::new(false);
            let mut out = Vec::with_capacity(payload.len() * 8 + 1024);
            inflater.decompress_vec(&payload, &mut out, FlushDecompress::Sync).unwrap();
            out
        } else {
            payload
        };
        messages.push(serde_json::from_slice::<serde_json::Value>(&text).unwrap());
    }
    assert_eq!(types(&of(&messages, "z1")), ["chunk", "done"]);
    assert_eq!(types(&of(&messages, "z2")), ["chunk", "done"]);
    assert_eq!(chunk_bytes(of(&messages, "z2")[0]), s16_bytes("Compressed words arrive again."));
    assert!(compressed >= 2, "the audio chunks were sent compressed ({compressed} of {})", messages.len());
}

#[tokio::test]
async fn plain_http_get_is_a_cartesia_error() {
    let server = start(WsConfig::default()).await;
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    stream.write_all(b"GET /tts/websocket HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 4"), "{response}");
    assert!(response.contains("\"error_code\""), "{response}");
}
