//! The API server with a real license proxy in the same process (as `chorus serve` runs it): entitlement and its
//! grace period, tenant keys with their limits, revocation, and usage records (metadata only, never text).
#![allow(clippy::unwrap_used)]

mod http_support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use chorus_api::{ApiConfig, ApiKeys, LicenseGate};
use chorus_bus::{LocalBusConfig, LocalLicenseLink};
use chorus_license::keys::KeyStore;
use chorus_license::license::{KeyPair, License};
use chorus_license::{LicenseProxy, ProxyConfig};
use chorus_proto::license::{LicenseMode, UsageRecord};
use futures_util::StreamExt as _;
use http_support::{KEY, SLOW, TestServer, post_json, tts_body};
use serde_json::{Value, json};

fn raw() -> Value {
    json!({"container": "raw", "encoding": "pcm_s16le", "sample_rate": 22050})
}

/// A test server following a proxy on `dir`, with the static key [`KEY`] configured too.
fn server(proxy: &Arc<LicenseProxy>) -> TestServer {
    let config = ApiConfig { api_keys: ApiKeys::new(vec![KEY.into()]), ..ApiConfig::default() };
    let mut server = TestServer::build(config, 8, LocalBusConfig::default());
    let link = LocalLicenseLink::new(Arc::clone(proxy) as _);
    server.state = server.state.clone().with_license(LicenseGate::with_proxy(Arc::new(link)));
    server
}

fn start_proxy(dir: &Path, mode: LicenseMode, grace: Duration, vendor: &KeyPair) -> Arc<LicenseProxy> {
    let mut config = ProxyConfig::new(dir.to_owned(), mode);
    config.grace = grace;
    config.trusted_keys = vec![vendor.public_base64()];
    LicenseProxy::start(config).unwrap()
}

fn with_key(mut req: Request<Body>, key: &str) -> Request<Body> {
    req.headers_mut().insert("authorization", format!("Bearer {key}").parse().unwrap());
    req
}

fn tts(key: &str, text: &str) -> Request<Body> {
    with_key(post_json("/tts/bytes", &tts_body(text, raw())), key)
}

/// Polls until `f` is true (every 50 ms, up to `timeout`).
async fn eventually(timeout: Duration, mut f: impl AsyncFnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// The records in the ledger, from an audit export.
async fn ledger_records(proxy: &LicenseProxy) -> Vec<UsageRecord> {
    let snapshot = proxy.ledger().snapshot().await.unwrap();
    let tar = chorus_license::audit::export(&snapshot, proxy.deployment_key(), None).unwrap();
    assert!(chorus_license::audit::verify(&tar, None).ok());
    chorus_license::audit::records(&tar).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn air_gapped_without_a_license_refuses_after_the_grace_period_then_serves_once_one_is_posted() {
    let dir = tempfile::tempdir().unwrap();
    let vendor = KeyPair::generate().unwrap();
    let proxy = start_proxy(dir.path(), LicenseMode::AirGapped, Duration::from_secs(2), &vendor);
    let server = server(&proxy);

    // In the grace period: served. A long stream starts now and must not be cut when the grace ends.
    let reply = server.fetch(tts(KEY, "Hello there.")).await;
    assert_eq!(reply.status, 200);
    let long = server.call(tts(KEY, SLOW)).await;
    assert_eq!(long.status(), 200);
    let mut long_body = long.into_body().into_data_stream();

    // Past the grace period: new requests get a clear 403.
    let mut refused = None;
    assert!(
        eventually(Duration::from_secs(6), async || {
            let reply = server.fetch(tts(KEY, "Hello again.")).await;
            let done = reply.status == 403;
            refused = Some(reply);
            done
        })
        .await,
        "refused after the grace period"
    );
    let body = refused.unwrap().assert_error(403, "license_inactive");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("no license") && message.contains("grace period ended"), "{message}");

    // The stream that started in grace runs to its end.
    let mut received = 0;
    while let Some(chunk) = long_body.next().await {
        received += chunk.expect("the stream in flight is not cut").len();
    }
    let whole = 500 * http_support::sentence_samples(http_support::EN_RATE) * 2;
    assert_eq!(received, whole, "the whole SLOW stream (500 chunks)");

    // A license is posted: served again at once.
    let license = License {
        id: "l-1".into(),
        licensee: "Acme".into(),
        issued_at: "2026-01-01T00:00:00Z".into(),
        expires_at: "2099-01-01T00:00:00Z".into(),
        max_concurrent_streams: None,
        models: None,
    };
    proxy.post_license(&vendor.sign_license(&license).unwrap()).unwrap();
    assert!(
        eventually(Duration::from_secs(2), async || server.fetch(tts(KEY, "Back.")).await.status == 200)
            .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_keys_get_429_with_retry_after_beyond_their_limits_and_a_revoked_key_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let vendor = KeyPair::generate().unwrap();
    let keys = KeyStore::new(dir.path());
    let solo = keys.add("solo", Some(1), None, false).unwrap();
    let slow = keys.add("slow", None, Some(2), false).unwrap();
    let proxy = start_proxy(dir.path(), LicenseMode::Open, Duration::from_secs(60), &vendor);
    let server = server(&proxy);

    // Concurrency 1: a second request while the first streams is refused; once the first ends, served again.
    let first = server.call(tts(&solo, SLOW)).await;
    assert_eq!(first.status(), 200);
    let reply = server.fetch(tts(&solo, "Second.")).await;
    reply.assert_error(429, "concurrency_limited");
    assert_eq!(reply.header("retry-after"), Some("1"));
    drop(first);
    assert!(
        eventually(Duration::from_secs(2), async || server.fetch(tts(&solo, "Third.")).await.status == 200)
            .await
    );

    // 2 requests per minute: the third in the same minute is refused, told to wait under a minute.
    for _ in 0..2 {
        assert_eq!(server.fetch(tts(&slow, "Hi.")).await.status, 200);
    }
    let reply = server.fetch(tts(&slow, "Hi.")).await;
    reply.assert_error(429, "rate_limited");
    let wait: u32 = reply.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "Retry-After {wait}");
    // Other keys are not affected, nor the static key.
    assert_eq!(server.fetch(tts(KEY, "Hi.")).await.status, 200);
    assert_eq!(server.fetch(tts(&solo, "Hi.")).await.status, 200);
    server.fetch(tts("chk_not_a_key", "Hi.")).await.assert_error(401, "unauthorized");

    // Revocation: the proxy publishes the change (it watches its keys file), and the API refuses the key from
    // the first request after it.
    let mut state = proxy.subscribe_state();
    keys.revoke("solo", &[]).unwrap();
    tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            state.changed().await.unwrap();
            if state.borrow().keys.iter().any(|k| k.name == "solo" && k.revoked) {
                break;
            }
        }
    })
    .await
    .expect("the revocation is published within a second or so");
    // The API applies the pushed state as it arrives (a watch channel): the key is refused within moments of the
    // publication, without waiting for the next periodic state.
    assert!(
        eventually(Duration::from_millis(500), async || server.fetch(tts(&solo, "Hi.")).await.status == 401)
            .await,
        "the revoked key is still served half a second after the revocation was published"
    );
    let reply = server.fetch(tts(&solo, "Hi.")).await;
    let body = reply.assert_error(401, "unauthorized");
    assert!(body["message"].as_str().unwrap().contains("revoked"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_finished_request_is_one_usage_record_and_no_text_reaches_the_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let vendor = KeyPair::generate().unwrap();
    let tenant = KeyStore::new(dir.path()).add("team-a", None, None, false).unwrap();
    let proxy = start_proxy(dir.path(), LicenseMode::Open, Duration::from_secs(60), &vendor);
    let server = server(&proxy);

    let texts = ["Zanzibar quokka marmalade.", "Pellucid xylophone harbinger.", "Quixotic fjord limerick."];
    assert_eq!(server.fetch(tts(&tenant, texts[0])).await.status, 200);
    let sse = with_key(post_json("/tts/sse", &tts_body(texts[1], raw())), KEY);
    assert_eq!(server.fetch(sse).await.status, 200);
    let speech = json!({"model": "tts-1", "input": texts[2], "voice": http_support::EN_VOICE});
    assert_eq!(server.fetch(with_key(post_json("/v1/audio/speech", &speech), &tenant)).await.status, 200);
    // A client that hangs up mid-stream is accounted too (as client_closed).
    let hung = server.call(tts(&tenant, SLOW)).await;
    let mut body = hung.into_body().into_data_stream();
    body.next().await.unwrap().unwrap();
    drop(body);

    let mut records = Vec::new();
    assert!(
        eventually(Duration::from_secs(5), async || {
            records = ledger_records(&proxy).await;
            records.len() == 4
        })
        .await,
        "4 records, got {records:?}"
    );
    let by_route = |route: &str| records.iter().find(|r| r.route == route).unwrap().clone();
    let bytes = by_route("bytes");
    assert_eq!(bytes.key_name.as_deref(), Some("team-a"));
    assert_eq!((bytes.model.as_str(), bytes.status.as_str()), ("sonic-3", "completed"));
    assert_eq!(bytes.characters, texts[0].chars().count() as u64);
    assert!((bytes.audio_seconds - 0.25).abs() < 1e-3, "one sentence of 0.25 s: {bytes:?}");
    assert!(bytes.ttfa_ms.is_some());
    let sse = by_route("sse");
    assert_eq!(
        (sse.key_name.as_deref(), sse.status.as_str()),
        (None, "completed"),
        "a static key has no name"
    );
    let openai = by_route("openai_speech");
    assert_eq!((openai.model.as_str(), openai.characters), ("tts-1", texts[2].chars().count() as u64));
    let cancelled = records.iter().find(|r| r.status == "client_closed").expect("the hung-up request");
    assert!(cancelled.audio_seconds > 0.0);
    let ids: std::collections::HashSet<_> = records.iter().map(|r| r.id.clone()).collect();
    assert_eq!(ids.len(), 4);

    // No transcript text anywhere in the proxy's data directory (and no tenant key either).
    let mut needles: Vec<&str> = texts.to_vec();
    needles.extend(["Zanzibar", "xylophone", "fjord", SLOW, tenant.as_str()]);
    let mut files = 0;
    for entry in walk(dir.path()) {
        files += 1;
        let content = std::fs::read(&entry).unwrap();
        for needle in &needles {
            assert!(
                !content.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{needle:?} found in {}",
                entry.display()
            );
        }
    }
    assert!(files >= 3, "the ledger, keys and deployment key were searched");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
