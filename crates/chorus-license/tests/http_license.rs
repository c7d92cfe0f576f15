//! `POST /license` and `GET /license` of a real proxy on a scratch data directory: what is accepted, what is
//! refused and why, which license wins, and what survives a restart.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chorus_license::license::{KeyPair, License};
use chorus_license::{LicenseProxy, ProxyConfig};
use chorus_proto::license::{LicenseMode, Verdict};
use serde_json::Value;
use tower::ServiceExt as _;

fn license(licensee: &str, issued_at: &str, expires_at: &str) -> License {
    License {
        id: format!("{licensee}-{issued_at}"),
        licensee: licensee.into(),
        issued_at: issued_at.into(),
        expires_at: expires_at.into(),
        max_concurrent_streams: Some(8),
        models: None,
    }
}

fn start(dir: &Path, vendor: &KeyPair, seed: Option<&Path>) -> Arc<LicenseProxy> {
    let mut config = ProxyConfig::new(dir.to_owned(), LicenseMode::AirGapped);
    config.trusted_keys = vec![vendor.public_base64()];
    config.seed_license = seed.map(Path::to_owned);
    LicenseProxy::start(config).unwrap()
}

async fn call(proxy: &Arc<LicenseProxy>, req: Request<Body>) -> (StatusCode, Value) {
    let response = chorus_license::http::router(Arc::clone(proxy), None).oneshot(req).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

async fn post(proxy: &Arc<LicenseProxy>, body: impl Into<Body>) -> (StatusCode, Value) {
    call(proxy, Request::post("/license").body(body.into()).unwrap()).await
}

async fn active_licensee(proxy: &Arc<LicenseProxy>) -> Option<String> {
    let (status, body) = call(proxy, Request::get("/license").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    body["license"]["licensee"].as_str().map(str::to_owned)
}

#[tokio::test]
async fn a_signed_license_is_accepted_and_every_bad_one_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let vendor = KeyPair::generate().unwrap();
    let proxy = start(dir.path(), &vendor, None);
    assert_eq!(proxy.current().verdict, Verdict::Grace, "air-gapped without a license: in grace");

    let good = vendor.sign_license(&license("Acme", "2026-01-01T00:00:00Z", "2099-01-01T00:00:00Z")).unwrap();
    let (status, body) = post(&proxy, good.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["active"], true);
    assert_eq!(active_licensee(&proxy).await.as_deref(), Some("Acme"));
    assert_eq!(proxy.current().verdict, Verdict::Serving);

    // An edited license: the signature no longer covers it.
    let edited = String::from_utf8(good)
        .unwrap()
        .replace("\"max_concurrent_streams\": 8", "\"max_concurrent_streams\": 800");
    let (status, body) = post(&proxy, edited).await;
    assert_eq!(
        (status, body["error_code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("bad_signature")),
        "{body}"
    );

    // Signed by a key the deployment does not trust.
    let stranger = KeyPair::generate().unwrap();
    let foreign =
        stranger.sign_license(&license("Mallory", "2026-06-01T00:00:00Z", "2099-01-01T00:00:00Z")).unwrap();
    let (status, body) = post(&proxy, foreign).await;
    assert_eq!(
        (status, body["error_code"].as_str()),
        (StatusCode::FORBIDDEN, Some("unknown_signer")),
        "{body}"
    );

    // Genuine but expired.
    let expired =
        vendor.sign_license(&license("Acme", "2020-01-01T00:00:00Z", "2021-01-01T00:00:00Z")).unwrap();
    let (status, body) = post(&proxy, expired).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error_code"], "license_expired");
    assert!(body["message"].as_str().unwrap().contains("2021-01-01T00:00:00Z"), "{body}");

    // Not JSON.
    let (status, body) = post(&proxy, "{\"license\": ").await;
    assert_eq!(
        (status, body["error_code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("malformed_license")),
        "{body}"
    );

    // 1 MB: refused before it is read whole.
    let (status, body) = post(&proxy, vec![b' '; 1024 * 1024]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert!(body["message"].as_str().unwrap().contains("at most"), "{body}");

    // None of the refused documents replaced the good one, and only it is stored.
    assert_eq!(active_licensee(&proxy).await.as_deref(), Some("Acme"));
    assert_eq!(std::fs::read_dir(dir.path().join("licenses")).unwrap().count(), 1);
}

#[tokio::test]
async fn the_latest_issued_at_wins_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let vendor = KeyPair::generate().unwrap();
    let proxy = start(dir.path(), &vendor, None);
    let newer =
        vendor.sign_license(&license("Newer", "2026-06-01T00:00:00Z", "2099-01-01T00:00:00Z")).unwrap();
    let older =
        vendor.sign_license(&license("Older", "2026-01-01T00:00:00Z", "2099-06-01T00:00:00Z")).unwrap();
    assert_eq!(post(&proxy, newer).await.0, StatusCode::OK);
    let (status, body) = post(&proxy, older).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["active"], false, "stored, but an older issued_at does not take over: {body}");
    assert_eq!(active_licensee(&proxy).await.as_deref(), Some("Newer"));
    drop(proxy);

    let proxy = start(dir.path(), &vendor, None);
    assert_eq!(active_licensee(&proxy).await.as_deref(), Some("Newer"), "persisted across a restart");
    assert_eq!(proxy.current().verdict, Verdict::Serving);
    let newest =
        vendor.sign_license(&license("Newest", "2026-09-01T00:00:00Z", "2098-01-01T00:00:00Z")).unwrap();
    assert_eq!(post(&proxy, newest).await.0, StatusCode::OK);
    assert_eq!(active_licensee(&proxy).await.as_deref(), Some("Newest"), "rotation: post the new license");
}

#[tokio::test]
async fn a_seed_license_is_used_only_when_none_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let vendor = KeyPair::generate().unwrap();
    let seed_path = scratch.path().join("seed.json");
    // The seed is even issued later than the uploaded license: it still must not replace it.
    let seed =
        vendor.sign_license(&license("Seeded", "2026-12-01T00:00:00Z", "2099-01-01T00:00:00Z")).unwrap();
    std::fs::write(&seed_path, seed).unwrap();

    // First boot: nothing stored, the seed is used (and stored).
    let proxy = start(dir.path(), &vendor, Some(&seed_path));
    assert_eq!(active_licensee(&proxy).await.as_deref(), Some("Seeded"));
    drop(proxy);

    // A data directory that already has a license: the seed is ignored.
    let other = tempfile::tempdir().unwrap();
    let proxy = start(other.path(), &vendor, None);
    let uploaded =
        vendor.sign_license(&license("Uploaded", "2026-02-01T00:00:00Z", "2099-01-01T00:00:00Z")).unwrap();
    assert_eq!(post(&proxy, uploaded).await.0, StatusCode::OK);
    drop(proxy);
    let proxy = start(other.path(), &vendor, Some(&seed_path));
    assert_eq!(active_licensee(&proxy).await.as_deref(), Some("Uploaded"), "the seed never overwrites");
    assert_eq!(
        std::fs::read_dir(other.path().join("licenses")).unwrap().count(),
        1,
        "the seed was not stored"
    );
}

#[tokio::test]
async fn audit_needs_an_admin_key() {
    let dir = tempfile::tempdir().unwrap();
    let vendor = KeyPair::generate().unwrap();
    let mut config = ProxyConfig::new(dir.path().to_owned(), LicenseMode::Open);
    config.trusted_keys = vec![vendor.public_base64()];
    config.admin_keys = vec!["admin-secret".into()];
    let proxy = LicenseProxy::start(config).unwrap();
    let tenant = chorus_license::keys::KeyStore::new(dir.path()).add("team-a", None, None, false).unwrap();
    let get = |key: Option<&str>| {
        let mut req = Request::get("/audit");
        if let Some(k) = key {
            req = req.header("authorization", format!("Bearer {k}"));
        }
        req.body(Body::empty()).unwrap()
    };
    let router = chorus_license::http::router(Arc::clone(&proxy), None);
    assert_eq!(router.clone().oneshot(get(None)).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_eq!(router.clone().oneshot(get(Some("wrong"))).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_eq!(router.clone().oneshot(get(Some(&tenant))).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    let ok = router.oneshot(get(Some("admin-secret"))).await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(ok.headers()["content-type"], "application/x-tar");
    let tar = axum::body::to_bytes(ok.into_body(), usize::MAX).await.unwrap();
    assert!(chorus_license::audit::verify(&tar, Some(&proxy.deployment_key().public_base64())).ok());
}

#[tokio::test]
async fn one_proxy_per_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let vendor = KeyPair::generate().unwrap();
    let _first = start(dir.path(), &vendor, None);
    let second = LicenseProxy::start(ProxyConfig::new(dir.path().to_owned(), LicenseMode::Open));
    assert!(matches!(second, Err(chorus_license::ProxyError::Locked(_))), "{second:?}");
}
