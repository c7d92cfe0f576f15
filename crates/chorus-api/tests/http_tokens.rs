//! Access tokens (`POST /access-token`) and CORS, with a real license proxy in the process (its deployment key
//! signs the tokens): what a token opens and what it does not, expiry, tampering, a tenant key's limits and
//! revocation applied to its tokens, a token minted through one API server honoured by another, and preflights.
#![allow(clippy::unwrap_used)]

mod http_support;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use chorus_api::cors::CorsConfig;
use chorus_api::{ApiConfig, ApiKeys, LicenseGate};
use chorus_bus::{LocalBusConfig, LocalLicenseLink};
use chorus_license::keys::KeyStore;
use chorus_license::{LicenseProxy, ProxyConfig};
use chorus_proto::license::LicenseMode;
use http_support::{KEY, SLOW, TestServer, post_json, request, tts_body};
use serde_json::{Value, json};

fn raw() -> Value {
    json!({"container": "raw", "encoding": "pcm_s16le", "sample_rate": 22050})
}

fn server_with(proxy: &Arc<LicenseProxy>, config: ApiConfig) -> TestServer {
    let mut server = TestServer::build(config, 8, LocalBusConfig::default());
    let link = LocalLicenseLink::new(Arc::clone(proxy) as _);
    server.state = server.state.clone().with_license(LicenseGate::with_proxy(Arc::new(link)));
    server
}

fn server(proxy: &Arc<LicenseProxy>) -> TestServer {
    server_with(proxy, ApiConfig { api_keys: ApiKeys::new(vec![KEY.into()]), ..ApiConfig::default() })
}

fn with_key(mut req: Request<Body>, key: &str) -> Request<Body> {
    req.headers_mut().insert("authorization", format!("Bearer {key}").parse().unwrap());
    req
}

fn tts(key: &str, text: &str) -> Request<Body> {
    with_key(post_json("/tts/bytes", &tts_body(text, raw())), key)
}

async fn mint(server: &TestServer, key: &str, body: Value) -> String {
    let reply = server.fetch(with_key(post_json("/access-token", &body), key)).await;
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(reply.bytes()));
    let json = reply.json();
    assert_eq!(json.as_object().unwrap().len(), 1, "only the token: {json}");
    json["token"].as_str().unwrap().to_owned()
}

fn message(reply: &http_support::Reply, status: u16) -> String {
    reply.assert_error(status, if status == 401 { "unauthorized" } else { "invalid_request" })["message"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_opens_synthesis_only_expires_and_cannot_be_forged() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = LicenseProxy::start(ProxyConfig::new(dir.path().to_owned(), LicenseMode::Open)).unwrap();
    let server = server(&proxy);
    // The proxy's first state (with its public key) reaches the gate at once in one process.
    let token = mint(&server, KEY, json!({"expires_in": 60, "grants": {"tts": true}})).await;
    assert!(token.starts_with("eyJ") && token.matches('.').count() == 2, "a JWT: {token}");

    // Synthesis, by header or query (a browser's WebSocket handshake sends the query).
    assert_eq!(server.fetch(tts(&token, "Hello with a token.")).await.status, 200);
    let by_query = post_json(&format!("/tts/bytes?access_token={token}"), &tts_body("By query.", raw()));
    assert_eq!(server.fetch(by_query).await.status, 200);
    let speech =
        json!({"model": "tts-1", "voice": "alloy", "input": "OpenAI too.", "response_format": "pcm"});
    assert_eq!(server.fetch(with_key(post_json("/v1/audio/speech", &speech), &token)).await.status, 200);

    // Nothing else: not the voices, not minting another token.
    let voices = server.fetch(with_key(request("GET", "/voices"), &token)).await;
    assert!(message(&voices, 401).contains("text to speech only"));
    let again = server.fetch(with_key(post_json("/access-token", &json!({})), &token)).await;
    assert_eq!(again.status, 401);

    // A tampered token (another expiry in the claims, the old signature) is refused.
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let claims = base64_decode(&parts[1]);
    let mut claims: Value = serde_json::from_slice(&claims).unwrap();
    claims["exp"] = json!(claims["exp"].as_u64().unwrap() + 3600);
    parts[1] = base64_encode(&serde_json::to_vec(&claims).unwrap());
    let forged = parts.join(".");
    let reply = server.fetch(tts(&forged, "Forged.")).await;
    assert_eq!(message(&reply, 401), "invalid access token");
    // Nor is one signed by another deployment.
    let other_dir = tempfile::tempdir().unwrap();
    let other =
        LicenseProxy::start(ProxyConfig::new(other_dir.path().to_owned(), LicenseMode::Open)).unwrap();
    let foreign = mint(
        &server_with(&other, ApiConfig { api_keys: ApiKeys::new(vec![KEY.into()]), ..ApiConfig::default() }),
        KEY,
        json!({}),
    )
    .await;
    assert_eq!(message(&server.fetch(tts(&foreign, "Foreign.")).await, 401), "invalid access token");

    // Expiry: a one-second token works, then is refused.
    let short = mint(&server, KEY, json!({"expires_in": 1})).await;
    assert_eq!(server.fetch(tts(&short, "Quick.")).await.status, 200);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert!(message(&server.fetch(tts(&short, "Too late.")).await, 401).contains("expired"));

    // Bad requests.
    for body in [json!({"expires_in": 0}), json!({"expires_in": 3601}), json!({"grants": {"tts": false}})] {
        let reply = server.fetch(with_key(post_json("/access-token", &body), KEY)).await;
        reply.assert_error(400, "invalid_request");
    }
    assert_eq!(server.fetch(with_key(post_json("/access-token", &json!({})), "wrong")).await.status, 401);
    // An empty body takes the defaults.
    let empty = with_key(http_support::post_raw("/access-token", ""), KEY);
    assert_eq!(server.fetch(empty).await.status, 200);

    // A server whose static keys do not include the minting key refuses its tokens.
    let elsewhere = server_with(
        &proxy,
        ApiConfig { api_keys: ApiKeys::new(vec!["other-key".into()]), ..ApiConfig::default() },
    );
    assert!(message(&elsewhere.fetch(tts(&token, "Elsewhere.")).await, 401).contains("not accepted here"));
    // A second API server with the same key and the same proxy honours it: nothing is kept by the minting server.
    let replica =
        server_with(&proxy, ApiConfig { api_keys: ApiKeys::new(vec![KEY.into()]), ..ApiConfig::default() });
    assert_eq!(replica.fetch(tts(&token, "On a replica.")).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_keys_limits_and_revocation_apply_to_its_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let keys = KeyStore::new(dir.path());
    let solo = keys.add("solo", Some(1), None, false).unwrap();
    let proxy = LicenseProxy::start(ProxyConfig::new(dir.path().to_owned(), LicenseMode::Open)).unwrap();
    let server = server(&proxy);
    let token = mint(&server, &solo, json!({"expires_in": 600})).await;

    // The key's only slot is taken by the key itself: its token is refused, and the other way round.
    let held = server.call(tts(&solo, SLOW)).await;
    assert_eq!(held.status(), 200);
    server.fetch(tts(&token, "Second.")).await.assert_error(429, "concurrency_limited");
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let by_token = server.call(tts(&token, SLOW)).await;
    assert_eq!(by_token.status(), 200);
    server.fetch(tts(&solo, "Second.")).await.assert_error(429, "concurrency_limited");
    drop(by_token);

    // Usage is the key's.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(server.fetch(tts(&token, "Counted.")).await.status, 200);

    // Revoking the key ends its tokens.
    let mut state = proxy.subscribe_state();
    keys.revoke("solo", &[]).unwrap();
    tokio::time::timeout(Duration::from_secs(3), async {
        while !state.borrow().keys.iter().any(|k| k.name == "solo" && k.revoked) {
            state.changed().await.unwrap();
        }
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(message(&server.fetch(tts(&token, "Revoked.")).await, 401).contains("revoked"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_license_proxy_minting_is_a_501() {
    let server = TestServer::with_key();
    let reply = server.fetch(with_key(post_json("/access-token", &json!({})), KEY)).await;
    let body = reply.assert_error(501, "invalid_request");
    assert!(body["message"].as_str().unwrap().contains("license proxy"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_preflights_need_no_key_and_every_answer_names_the_origin() {
    let origin = "http://127.0.0.1:8123";
    let config = ApiConfig {
        api_keys: ApiKeys::new(vec![KEY.into()]),
        cors: CorsConfig { origins: vec![origin.into()] },
        ..ApiConfig::default()
    };
    let server = TestServer::build(config, 8, LocalBusConfig::default());
    let preflight = |origin: &str| {
        Request::builder()
            .method("OPTIONS")
            .uri("/tts/bytes")
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type,cartesia-version,x-stainless-os,x-stainless-retry-count",
            )
            .body(Body::empty())
            .unwrap()
    };
    let reply = server.fetch(preflight(origin)).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("access-control-allow-origin"), Some(origin));
    let allowed = reply.header("access-control-allow-headers").unwrap().to_ascii_lowercase();
    for h in ["authorization", "content-type", "cartesia-version", "x-stainless-os"] {
        assert!(allowed.contains(h), "{h} not allowed: {allowed}");
    }
    assert!(reply.header("access-control-allow-methods").unwrap().contains("POST"));
    assert!(reply.header("access-control-max-age").is_some());

    // Another origin gets no CORS grant.
    let reply = server.fetch(preflight("https://evil.example")).await;
    assert_eq!(reply.header("access-control-allow-origin"), None);

    // Real requests: a 401 and a 200 both carry the grant, and expose the request id.
    let mut req = tts("wrong-key", "Hello.");
    req.headers_mut().insert("origin", origin.parse().unwrap());
    let reply = server.fetch(req).await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.header("access-control-allow-origin"), Some(origin));
    let mut req = tts(KEY, "Hello.");
    req.headers_mut().insert("origin", origin.parse().unwrap());
    let reply = server.fetch(req).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("access-control-allow-origin"), Some(origin));
    assert!(reply.header("access-control-expose-headers").unwrap().contains("x-request-id"));

    // Without origins configured, nothing changes: no CORS headers.
    let plain = TestServer::with_key();
    assert_eq!(plain.fetch(preflight(origin)).await.header("access-control-allow-origin"), None);
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s).unwrap()
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}
