//! Connected mode against an upstream license server on loopback (plain HTTP here; HTTPS in production): the
//! license comes from upstream, usage is reported once, and an unreachable server stops new requests after the
//! grace period, until it answers again.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use chorus_bus::LicenseService as _;
use chorus_license::license::{KeyPair, License};
use chorus_license::{LicenseProxy, ProxyConfig};
use chorus_proto::license::{LicenseMode, UsageRecord, Verdict};

#[derive(Default)]
struct Upstream {
    license: Mutex<Option<Vec<u8>>>,
    down: AtomicBool,
    reported: Mutex<Vec<u64>>,
    deployments: Mutex<Vec<String>>,
}

async fn license(State(up): State<Arc<Upstream>>, uri: axum::http::Uri) -> axum::response::Response {
    if up.down.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    up.deployments.lock().unwrap().push(uri.query().unwrap_or_default().to_owned());
    match up.license.lock().unwrap().clone() {
        Some(doc) => (StatusCode::OK, doc).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    }
}

async fn usage(State(up): State<Arc<Upstream>>, body: Bytes) -> StatusCode {
    if up.down.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let mut reported = up.reported.lock().unwrap();
    for r in v["records"].as_array().unwrap() {
        assert!(r["record"].get("transcript").is_none());
        reported.push(r["seq"].as_u64().unwrap());
    }
    StatusCode::NO_CONTENT
}

fn record(i: u32) -> UsageRecord {
    UsageRecord {
        id: format!("rec-{i}"),
        time_ms: 1,
        key_name: None,
        model: "sonic-3".into(),
        voice_id: "v".into(),
        route: "bytes".into(),
        characters: 5,
        audio_seconds: 0.5,
        ttfa_ms: None,
        status: "completed".into(),
    }
}

async fn until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_license_comes_from_upstream_usage_goes_there_once_and_silence_ends_in_refusal() {
    let up = Arc::new(Upstream::default());
    let vendor = KeyPair::generate().unwrap();
    let doc = vendor
        .sign_license(&License {
            id: "up-1".into(),
            licensee: "Upstream Co".into(),
            issued_at: "2026-01-01T00:00:00Z".into(),
            expires_at: "2099-01-01T00:00:00Z".into(),
            max_concurrent_streams: None,
            models: None,
        })
        .unwrap();
    *up.license.lock().unwrap() = Some(doc);
    let app = Router::new()
        .route("/v1/license", get(license))
        .route("/v1/usage", post(usage))
        .with_state(Arc::clone(&up));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let mut config = ProxyConfig::new(dir.path().to_owned(), LicenseMode::Connected);
    config.trusted_keys = vec![vendor.public_base64()];
    config.upstream = Some(format!("http://{addr}/v1"));
    config.refresh = Duration::from_millis(200);
    config.grace = Duration::from_secs(2);
    let proxy = LicenseProxy::start(config).unwrap();

    // The license arrives from upstream.
    assert!(
        until(Duration::from_secs(3), || proxy.current().licensee.as_deref() == Some("Upstream Co")).await,
        "{:?}",
        proxy.current()
    );
    assert_eq!(proxy.current().verdict, Verdict::Serving);
    let key =
        proxy.deployment_key().public_base64().replace('+', "%2B").replace('/', "%2F").replace('=', "%3D");
    assert!(up.deployments.lock().unwrap().iter().any(|q| q == &format!("deployment={key}")));

    // Usage is reported, each ledger entry once, even across many contacts.
    proxy.record((0..30).map(record).collect()).await.unwrap();
    assert!(until(Duration::from_secs(3), || up.reported.lock().unwrap().len() >= 30).await);
    proxy.record((30..40).map(record).collect()).await.unwrap();
    assert!(until(Duration::from_secs(3), || up.reported.lock().unwrap().len() >= 40).await);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut seqs = up.reported.lock().unwrap().clone();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=40).collect::<Vec<u64>>(), "every entry exactly once");

    // The server goes silent: after the grace period, refusal with a clear message; back: serving again.
    up.down.store(true, Ordering::SeqCst);
    assert!(
        until(Duration::from_secs(8), || proxy.current().verdict_at(chorus_license::license::now_secs())
            == Verdict::Refusing)
        .await,
        "{:?}",
        proxy.current()
    );
    let state = proxy.current();
    let refusal = state.refusal.clone().unwrap();
    assert!(refusal.contains("has not been reached since"), "{refusal}");
    up.down.store(false, Ordering::SeqCst);
    assert!(until(Duration::from_secs(3), || proxy.current().verdict == Verdict::Serving).await);
}
