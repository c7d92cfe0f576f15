//! The router as a whole: status, authentication, request ids, version echo, 404/405, body limit.
#![allow(clippy::unwrap_used)]

mod http_support;

use axum::body::Body;
use axum::http::Request;
use http_support::{KEY, TestServer, post_json, post_raw, request, tts_body};
use serde_json::json;

fn raw_format() -> serde_json::Value {
    json!({"container": "raw", "encoding": "pcm_s16le", "sample_rate": 22050})
}

#[tokio::test]
async fn status_routes_are_open_even_with_keys() {
    let server = TestServer::with_key();
    for path in ["/", "/status"] {
        let reply = server.fetch(request("GET", path)).await;
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(reply.json(), json!({"ok": true, "version": "2026-08-14"}));
        assert!(reply.header("x-request-id").is_some());
    }
}

#[tokio::test]
async fn missing_and_wrong_keys_are_401() {
    let server = TestServer::with_key();
    let reply = server.fetch(request("GET", "/voices")).await;
    reply.assert_error(401, "unauthorized");
    assert_eq!(reply.header("www-authenticate"), Some("Bearer"));
    assert_eq!(reply.header("x-should-retry"), Some("false"));

    let wrong = Request::get("/voices").header("authorization", "Bearer nope").body(Body::empty()).unwrap();
    let body = server.fetch(wrong).await.assert_error(401, "unauthorized");
    assert!(body["message"].as_str().unwrap().contains("invalid"));

    let wrong = Request::get("/voices").header("x-api-key", "nope").body(Body::empty()).unwrap();
    server.fetch(wrong).await.assert_error(401, "unauthorized");
    server.fetch(request("GET", "/voices?api_key=nope")).await.assert_error(401, "unauthorized");

    // A POST without a key is refused before its body is even looked at.
    let reply = server.fetch(post_raw("/tts/bytes", "{not json")).await;
    reply.assert_error(401, "unauthorized");
}

#[tokio::test]
async fn every_key_form_is_accepted() {
    let server = TestServer::with_key();
    let forms = [
        Request::get("/voices").header("authorization", format!("Bearer {KEY}")).body(Body::empty()).unwrap(),
        Request::get("/voices").header("authorization", format!("bearer {KEY}")).body(Body::empty()).unwrap(),
        Request::get("/voices").header("x-api-key", KEY).body(Body::empty()).unwrap(),
        request("GET", &format!("/voices?api_key={KEY}")),
        request("GET", &format!("/voices?access_token={KEY}&limit=5")),
    ];
    for req in forms {
        let uri = req.uri().clone();
        let reply = server.fetch(req).await;
        assert_eq!(reply.status, 200, "{uri}: {:?}", reply.body);
    }
    let mut req = post_json("/tts/bytes", &tts_body("Hello.", raw_format()));
    req.headers_mut().insert("authorization", format!("Bearer {KEY}").parse().unwrap());
    assert_eq!(server.fetch(req).await.status, 200);
}

#[tokio::test]
async fn open_server_needs_no_key() {
    let server = TestServer::open();
    assert_eq!(server.fetch(request("GET", "/voices")).await.status, 200);
}

#[tokio::test]
async fn cartesia_version_is_echoed_never_rejected() {
    let server = TestServer::open();
    let req = Request::get("/voices").header("cartesia-version", "2099-01-01").body(Body::empty()).unwrap();
    let reply = server.fetch(req).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("cartesia-version"), Some("2099-01-01"));

    // The query parameter (browsers) wins over the header.
    let req = Request::get("/voices?cartesia_version=2024-06-10")
        .header("cartesia-version", "2026-08-14")
        .body(Body::empty())
        .unwrap();
    assert_eq!(server.fetch(req).await.header("cartesia-version"), Some("2024-06-10"));

    // Echoed on errors too; absent when the client sent none.
    let req = Request::get("/nope").header("cartesia-version", "2026-03-01").body(Body::empty()).unwrap();
    assert_eq!(server.fetch(req).await.header("cartesia-version"), Some("2026-03-01"));
    assert_eq!(server.fetch(request("GET", "/voices")).await.header("cartesia-version"), None);
}

#[tokio::test]
async fn request_ids_are_generated_honoured_and_carried_into_the_job() {
    let server = TestServer::open();
    let reply = server.fetch(request("GET", "/status")).await;
    let generated = reply.header("x-request-id").unwrap();
    assert!(uuid::Uuid::parse_str(generated).is_ok(), "{generated}");

    let mut req = post_json("/tts/bytes", &tts_body("Hello there.", raw_format()));
    req.headers_mut().insert("x-request-id", "client-id-123".parse().unwrap());
    let reply = server.fetch(req).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-request-id"), Some("client-id-123"));
    assert_eq!(server.record.last_job().request_id, "client-id-123");

    // An id that is not sane is replaced, and the error body carries the replacement.
    let req = Request::get("/voices/nope").header("x-request-id", "bad id!").body(Body::empty()).unwrap();
    let reply = server.fetch(req).await;
    let body = reply.assert_error(404, "voice_not_found");
    assert_ne!(body["request_id"], "bad id!");
    assert!(uuid::Uuid::parse_str(body["request_id"].as_str().unwrap()).is_ok());
}

#[tokio::test]
async fn unknown_routes_and_wrong_methods_are_json() {
    let server = TestServer::open();
    let body = server.fetch(request("GET", "/no/such/route")).await.assert_error(404, "not_found");
    assert!(body["message"].as_str().unwrap().contains("/no/such/route"));

    for (method, path) in [("GET", "/tts/bytes"), ("DELETE", "/voices"), ("PUT", "/pronunciation-dicts/x")] {
        let reply = server.fetch(request(method, path)).await;
        let body = reply.assert_error(405, "invalid_request");
        assert!(body["message"].as_str().unwrap().contains(method), "{body}");
    }
    // The WebSocket path takes GET (the handshake) only.
    server.fetch(request("POST", "/tts/websocket")).await.assert_error(405, "invalid_request");
}

#[tokio::test]
async fn oversized_bodies_are_413_json() {
    let server = TestServer::open();
    let big = json!({"model_id": "sonic-3", "transcript": "a".repeat(2 * 1024 * 1024)});
    let body = server.fetch(post_json("/tts/bytes", &big)).await.assert_error(413, "invalid_request");
    assert!(body["message"].as_str().unwrap().contains("larger"));
}
