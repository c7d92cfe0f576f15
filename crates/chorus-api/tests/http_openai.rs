//! The OpenAI-compatible endpoints: `/v1/audio/speech` and `/v1/models`.
#![allow(clippy::unwrap_used)]

mod http_support;

use axum::body::Body;
use axum::http::Request;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use http_support::{
    DE_VOICE, EN_RATE, EN_VOICE, FAIL_EARLY, KEY, TestServer, post_json, post_raw, request, resampled_len,
    sentence_samples,
};
use serde_json::{Value, json};

fn speech(extra: Value) -> Value {
    let mut body = json!({"model": "tts-1", "input": "Hello there. How are you?", "voice": "alloy"});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

#[tokio::test]
async fn mp3_by_default_and_openai_voices_map_to_the_default_voice() {
    let server = TestServer::open();
    let reply = server.fetch(post_json("/v1/audio/speech", &speech(json!({})))).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.header("content-type"), Some("audio/mpeg"));
    assert_eq!(reply.bytes()[0], 0xFF);
    // The default voice: the first built-in English voice.
    assert_eq!(server.record.last_job().model, EN_VOICE);

    for voice in ["echo", "Nova", "shimmer", "ash", "coral", "sage", "onyx", "fable"] {
        let reply = server.fetch(post_json("/v1/audio/speech", &speech(json!({"voice": voice})))).await;
        assert_eq!(reply.status, 200, "{voice}");
    }
    // Our own voice ids work too, as a string or {id}.
    for voice in [json!(DE_VOICE), json!({"id": DE_VOICE})] {
        let body = speech(json!({"voice": voice, "input": "Guten Tag."}));
        assert_eq!(server.fetch(post_json("/v1/audio/speech", &body)).await.status, 200);
        assert_eq!(server.record.last_job().model, DE_VOICE);
    }
}

#[tokio::test]
async fn pcm_is_raw_s16le_at_24_khz_and_wav_has_a_header() {
    let server = TestServer::open();
    let body = speech(json!({"response_format": "pcm", "speed": 1.5, "instructions": "Speak calmly."}));
    let reply = server.fetch(post_json("/v1/audio/speech", &body)).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("audio/pcm"));
    let expected = resampled_len(2 * sentence_samples(EN_RATE), EN_RATE, 24_000) * 2;
    assert!(reply.bytes().len().abs_diff(expected) <= 4, "{} vs {expected}", reply.bytes().len());
    assert!((server.record.last_job().params.speed - 1.5).abs() < 1e-6);

    let reply = server.fetch(post_json("/v1/audio/speech", &speech(json!({"response_format": "wav"})))).await;
    assert_eq!(reply.header("content-type"), Some("audio/wav"));
    let bytes = reply.bytes();
    assert_eq!(&bytes[0..4], b"RIFF");
    assert_eq!(u32::from_le_bytes([bytes[24], bytes[25], bytes[26], bytes[27]]), 24_000);
}

#[tokio::test]
async fn opus_is_ogg_and_flac_is_flac_at_24_khz() {
    let server = TestServer::open();
    let reply =
        server.fetch(post_json("/v1/audio/speech", &speech(json!({"response_format": "opus"})))).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("audio/ogg"));
    let bytes = reply.bytes();
    assert_eq!(&bytes[0..4], b"OggS");
    assert_eq!(&bytes[28..36], b"OpusHead");
    assert_eq!(u32::from_le_bytes([bytes[40], bytes[41], bytes[42], bytes[43]]), 24_000, "input rate");

    let reply =
        server.fetch(post_json("/v1/audio/speech", &speech(json!({"response_format": "flac"})))).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("audio/flac"));
    let bytes = reply.bytes();
    assert_eq!(&bytes[0..4], b"fLaC");
    // STREAMINFO: the 20-bit sample rate at bytes 18-20.
    let rate = (u32::from(bytes[18]) << 12) | (u32::from(bytes[19]) << 4) | (u32::from(bytes[20]) >> 4);
    assert_eq!(rate, 24_000);
}

#[tokio::test]
async fn sse_stream_format() {
    let server = TestServer::open();
    let body = speech(json!({"response_format": "pcm", "stream_format": "sse"}));
    let reply = server.fetch(post_json("/v1/audio/speech", &body)).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("text/event-stream"));
    let text = std::str::from_utf8(reply.bytes()).unwrap();
    let events: Vec<Value> = text
        .split("\n\n")
        .filter(|b| !b.is_empty())
        .map(|b| serde_json::from_str(b.strip_prefix("data: ").unwrap()).unwrap())
        .collect();
    let last = events.last().unwrap();
    assert_eq!(last["type"], "speech.audio.done");
    assert!(last["usage"]["total_tokens"].is_number());
    let audio: usize = events[..events.len() - 1]
        .iter()
        .map(|e| {
            assert_eq!(e["type"], "speech.audio.delta");
            BASE64.decode(e["audio"].as_str().unwrap()).unwrap().len()
        })
        .sum();
    let expected = resampled_len(2 * sentence_samples(EN_RATE), EN_RATE, 24_000) * 2;
    assert!(audio.abs_diff(expected) <= 4);
}

#[tokio::test]
async fn errors_take_the_openai_shape() {
    let server = TestServer::open();
    let cases: Vec<(Value, u16, Option<&str>)> = vec![
        (speech(json!({"response_format": "aac"})), 400, Some("response_format")),
        (speech(json!({"response_format": "ogg"})), 400, Some("response_format")),
        (speech(json!({"speed": 0.3})), 400, Some("speed")),
        (speech(json!({"speed": 4.5})), 400, Some("speed")),
        (speech(json!({"stream_format": "chunks"})), 400, Some("stream_format")),
        (speech(json!({"voice": "nobody"})), 404, Some("voice")),
        (speech(json!({"model": "gpt-4"})), 400, Some("model")),
        (speech(json!({"input": ""})), 400, Some("input")),
        (speech(json!({"input": "x".repeat(60_000)})), 400, Some("input")),
        (speech(json!({"input": 5})), 422, None),
        (json!({"model": "tts-1", "voice": "alloy"}), 422, None),
        (speech(json!({"input": FAIL_EARLY})), 500, None),
    ];
    for (body, status, param) in cases {
        let reply = server.fetch(post_json("/v1/audio/speech", &body)).await;
        let short: String = body.to_string().chars().take(100).collect();
        assert_eq!(reply.status.as_u16(), status, "{short}: {:?}", reply.body);
        let error = reply.assert_openai_error(status, param);
        let expected_type = if status >= 500 { "server_error" } else { "invalid_request_error" };
        assert_eq!(error["type"], expected_type, "{short}");
    }
    let error = server.fetch(post_json("/v1/audio/speech", &speech(json!({"speed": 0.3})))).await.json();
    assert!(error["error"]["message"].as_str().unwrap().contains("0.5"), "{error}");
    let error =
        server.fetch(post_json("/v1/audio/speech", &speech(json!({"response_format": "aac"})))).await.json();
    assert!(error["error"]["message"].as_str().unwrap().contains("not supported"));

    server.fetch(post_raw("/v1/audio/speech", "{oops")).await.assert_openai_error(400, None);
    let error = server.fetch(request("GET", "/v1/nothing")).await.assert_openai_error(404, None);
    assert_eq!(error["code"], "not_found");
    server.fetch(request("GET", "/v1/audio/speech")).await.assert_openai_error(405, None);
}

#[tokio::test]
async fn auth_errors_take_the_openai_shape() {
    let server = TestServer::with_key();
    let error =
        server.fetch(post_json("/v1/audio/speech", &speech(json!({})))).await.assert_openai_error(401, None);
    assert_eq!(error["code"], "invalid_api_key");
    let mut req = post_json("/v1/audio/speech", &speech(json!({})));
    req.headers_mut().insert("authorization", format!("Bearer {KEY}").parse().unwrap());
    assert_eq!(server.fetch(req).await.status, 200);
}

#[tokio::test]
async fn models_are_listed() {
    let server = TestServer::with_key();
    let req = Request::get("/v1/models")
        .header("authorization", format!("Bearer {KEY}"))
        .body(Body::empty())
        .unwrap();
    let reply = server.fetch(req).await;
    assert_eq!(reply.status, 200);
    let list = reply.json();
    assert_eq!(list["object"], "list");
    let ids: Vec<&str> = list["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    for id in ["chorus-piper", "tts-1", "tts-1-hd", "gpt-4o-mini-tts", "sonic-3"] {
        assert!(ids.contains(&id), "{id} in {ids:?}");
    }
    assert!(
        list["data"].as_array().unwrap().iter().all(|m| m["object"] == "model" && m["owned_by"].is_string())
    );
}
