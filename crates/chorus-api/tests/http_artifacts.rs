//! Two in-process API servers over one artifact store directory: what one writes, the other serves after a sync;
//! versions (`ETag`, `If-Match`, 409); malformed and deleted documents; the dictionary a job carries.
#![allow(clippy::unwrap_used)]

mod http_support;

use axum::body::Body;
use axum::http::{Request, header};
use chorus_artifacts::ArtifactStore;
use http_support::{EN_VOICE, TestServer, post_json, request, tts_body};
use serde_json::{Value, json};

fn server(dir: &tempfile::TempDir) -> TestServer {
    let mut server = TestServer::open();
    let store = ArtifactStore::open(dir.path().to_str().unwrap()).unwrap();
    server.state = server.state.clone().with_artifact_store(store);
    server
}

fn with_if_match(method: &str, uri: &str, etag: &str, body: Option<&Value>) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::IF_MATCH, etag)
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .unwrap()
}

#[tokio::test]
async fn two_servers_one_directory() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (server(&dir), server(&dir));

    let created = a
        .fetch(post_json(
            "/pronunciation-dicts/",
            &json!({"name": "n", "items": [{"text": "SQL", "alias": "sequel"}]}),
        ))
        .await;
    assert_eq!(created.status, 200);
    let id = created.json()["id"].as_str().unwrap().to_owned();
    let etag = created.header("etag").unwrap().to_owned();
    let uri = format!("/pronunciation-dicts/{id}");
    assert_eq!(b.fetch(request("GET", &uri)).await.status, 404, "B has not synced yet");
    assert!(b.state.artifacts.sync().await);
    let got = b.fetch(request("GET", &uri)).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.header("etag"), Some(etag.as_str()), "one version, one tag, on both servers");

    // A changes it; B's write from the old version is refused, as is a delete.
    let patched = a.fetch(with_if_match(
        "PATCH",
        &uri,
        &etag,
        Some(&json!({"items": [{"text": "SQL", "alias": "S Q L"}]})),
    ));
    let patched = patched.await;
    assert_eq!(patched.status, 200);
    let stale = b.fetch(with_if_match("PATCH", &uri, &etag, Some(&json!({"name": "B's"})))).await;
    let body = stale.assert_error(409, "conflict");
    assert!(body["message"].as_str().unwrap().contains("changed"), "{body}");
    b.fetch(with_if_match("DELETE", &uri, &etag, None)).await.assert_error(409, "conflict");

    // B serves the new version once synced, and a job carries its items.
    assert!(b.state.artifacts.sync().await);
    let mut req =
        tts_body("SQL is fun.", json!({"container": "wav", "encoding": "pcm_s16le", "sample_rate": 22050}));
    req["pronunciation_dict_id"] = json!(id);
    assert_eq!(b.fetch(post_json("/tts/bytes", &req)).await.status, 200);
    assert_eq!(b.record.last_job().pronunciations[0].alias, "S Q L");

    // A malformed version on disk: the loaded one stays; a malformed new document is not listed.
    std::fs::write(dir.path().join(format!("pronunciation-dicts/{id}.json")), "{\"name\": ").unwrap();
    std::fs::write(dir.path().join("voices/bad.json"), json!({"name": "no model"}).to_string()).unwrap();
    assert!(b.state.artifacts.sync().await, "malformed documents are not store errors");
    assert_eq!(b.fetch(request("GET", &uri)).await.json()["items"][0]["alias"], "S Q L");
    assert_eq!(b.fetch(request("GET", "/voices/bad")).await.status, 404);

    // Deleted on disk: gone after a sync.
    std::fs::remove_file(dir.path().join(format!("pronunciation-dicts/{id}.json"))).unwrap();
    assert!(b.state.artifacts.sync().await);
    assert_eq!(b.fetch(request("GET", &uri)).await.status, 404);
}

#[tokio::test]
async fn voice_presets_round_trip_through_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (server(&dir), server(&dir));
    let reply = a
        .fetch(post_json("/voices", &json!({"name": "Slow", "base_voice_id": EN_VOICE, "speed": 0.8})))
        .await;
    assert_eq!(reply.status, 200);
    let id = reply.json()["id"].as_str().unwrap().to_owned();
    let stored: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join(format!("voices/{id}.json"))).unwrap())
            .unwrap();
    assert_eq!(stored["model"], EN_VOICE);
    assert!(stored.get("builtin").is_none(), "built-in is never stored: {stored}");

    // B updates it without If-Match (it reads the current version itself) even before its cache has it.
    let reply = b.fetch(http_support::patch_json(&format!("/voices/{id}"), &json!({"name": "Slower"}))).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert!(a.state.artifacts.sync().await);
    assert_eq!(a.fetch(request("GET", &format!("/voices/{id}"))).await.json()["name"], "Slower");
    // Built-in voices stay read-only and unstored.
    assert_eq!(b.fetch(request("DELETE", &format!("/voices/{EN_VOICE}"))).await.status, 403);
    assert!(!dir.path().join(format!("voices/{EN_VOICE}.json")).exists());
}
