//! The TTS WebSocket with a license proxy in the same process: a tenant key on the handshake, one usage record per
//! context (continuations counted), and new contexts refused once the grace period ends while the socket stays.
#![allow(clippy::unwrap_used)]

mod ws_support;

use std::sync::Arc;
use std::time::Duration;

use chorus_api::LicenseGate;
use chorus_bus::LocalLicenseLink;
use chorus_license::keys::KeyStore;
use chorus_license::license::KeyPair;
use chorus_license::{LicenseProxy, ProxyConfig};
use chorus_proto::license::{LicenseMode, UsageRecord};
use ws_support::{Client, request, serve, test_state};

async fn start(proxy: &Arc<LicenseProxy>) -> std::net::SocketAddr {
    let (state, _journal) = test_state();
    let link = LocalLicenseLink::new(Arc::clone(proxy) as _);
    let state = state.with_license(LicenseGate::with_proxy(Arc::new(link)));
    serve(chorus_api::router(state)).await
}

async fn connect(addr: std::net::SocketAddr, key: &str) -> Client {
    let url = format!("ws://{addr}/tts/websocket?api_key={key}");
    let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    Client { ws }
}

async fn records(proxy: &LicenseProxy, n: usize) -> Vec<UsageRecord> {
    for _ in 0..100 {
        let snapshot = proxy.ledger().snapshot().await.unwrap();
        let tar = chorus_license::audit::export(&snapshot, proxy.deployment_key(), None).unwrap();
        let records = chorus_license::audit::records(&tar).unwrap();
        if records.len() >= n {
            return records;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("fewer than {n} usage records");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_context_is_one_usage_record_with_its_continuations_counted() {
    let dir = tempfile::tempdir().unwrap();
    let key = KeyStore::new(dir.path()).add("team-ws", None, None, false).unwrap();
    let proxy = LicenseProxy::start(ProxyConfig::new(dir.path().to_owned(), LicenseMode::Open)).unwrap();
    let addr = start(&proxy).await;

    let refused =
        tokio_tungstenite::connect_async(format!("ws://{addr}/tts/websocket?api_key=chk_nope")).await;
    assert!(refused.is_err(), "a wrong key fails the handshake");

    let mut client = connect(addr, &key).await;
    client.send(request("a", "Hello there.", true)).await;
    client.send(request("a", " And more words.", false)).await;
    let frames = client.recv_until_end("a").await;
    assert_eq!(frames.last().unwrap()["type"], "done", "{frames:?}");
    client.send(request("b", "Short.", false)).await;
    assert_eq!(client.recv_until_end("b").await.last().unwrap()["type"], "done");

    let records = records(&proxy, 2).await;
    assert_eq!(records.len(), 2, "{records:?}");
    for r in &records {
        assert_eq!(
            (r.route.as_str(), r.key_name.as_deref(), r.status.as_str()),
            ("websocket", Some("team-ws"), "completed")
        );
        assert!(r.audio_seconds > 0.0 && r.ttfa_ms.is_some(), "{r:?}");
    }
    let chars: Vec<u64> = records.iter().map(|r| r.characters).collect();
    let expected = ("Hello there.".len() + " And more words.".len()) as u64;
    assert!(chars.contains(&expected) && chars.contains(&6), "{chars:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_grace_period_a_new_context_is_refused_on_an_open_socket() {
    let dir = tempfile::tempdir().unwrap();
    let key = KeyStore::new(dir.path()).add("team-ws", None, None, false).unwrap();
    let mut config = ProxyConfig::new(dir.path().to_owned(), LicenseMode::AirGapped);
    config.grace = Duration::from_secs(1);
    config.trusted_keys = vec![KeyPair::generate().unwrap().public_base64()];
    let proxy = LicenseProxy::start(config).unwrap();
    let addr = start(&proxy).await;

    let mut client = connect(addr, &key).await;
    client.send(request("early", "In the grace period.", false)).await;
    assert_eq!(client.recv_until_end("early").await.last().unwrap()["type"], "done");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    client.send(request("late", "After it.", false)).await;
    let frames = client.recv_until_end("late").await;
    let last = frames.last().unwrap();
    assert_eq!(
        (last["type"].as_str(), last["error_code"].as_str()),
        (Some("error"), Some("license_inactive")),
        "{last}"
    );
    assert_eq!(last["status_code"], 403);
}
