//! The license proxy as a real process on a real `nats-server`: usage records stream in over NATS while the proxy is
//! SIGKILLed and restarted; afterwards the audit export holds every acknowledged record exactly once, its chain
//! verifies with `chorus audit verify`, and one flipped byte makes that command fail.
#![allow(clippy::unwrap_used)]
#![allow(clippy::print_stderr)] // the shared cluster support prints process logs after a failure

mod cluster_support;

use std::collections::HashSet;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chorus_bus::{LicenseLink, NatsLicenseLink};
use chorus_proto::license::UsageRecord;
use cluster_support::{
    Cluster, audit, audit_records, free_port, loopback, poll, request, request_with, serial,
};

const RECORDS: usize = 10_000;
const BATCH: usize = 50;
const SENDERS: usize = 4;
const ADMIN: &str = "admin-test-key";

fn record(i: usize) -> UsageRecord {
    UsageRecord {
        id: uuid_like(i),
        time_ms: 1_795_000_000_000 + i as u64,
        key_name: Some(format!("tenant-{}", i % 7)),
        model: "sonic-3".into(),
        voice_id: "en_US-joe-medium".into(),
        route: "bytes".into(),
        characters: 10 + (i % 90) as u64,
        audio_seconds: 1.25,
        ttfa_ms: Some(80.0),
        status: "completed".into(),
    }
}

fn uuid_like(i: usize) -> String {
    format!("00000000-0000-4000-8000-{i:012}")
}

fn audit_verify(tar: &std::path::Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_chorus")).args(["audit", "verify"]).arg(tar).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[test]
fn ten_thousand_records_survive_a_sigkilled_proxy_once_each_and_the_chain_verifies() {
    let _serial = serial();
    let cluster = Cluster::new();
    let data = cluster.dir().join("license-data");
    let config = cluster.dir().join("proxy.toml");
    // Small segments, so the export spans several (rotation by size).
    std::fs::write(&config, "[license]\nsegment_bytes = 262144\n").unwrap();
    let listen = loopback(free_port());
    let config_arg = config.to_string_lossy().into_owned();
    let args = ["--admin-key", ADMIN, "--config", &config_arg];
    let mut proxy = Some(cluster.spawn_license_proxy("proxy-1", listen, &data, &args));

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let acked = Arc::new(AtomicUsize::new(0));
    let retries = Arc::new(AtomicUsize::new(0));
    let url = cluster.nats.url();
    let senders = {
        let (acked, retries) = (Arc::clone(&acked), Arc::clone(&retries));
        runtime.spawn(async move {
            let client = async_nats::connect(url).await.unwrap();
            let link = Arc::new(NatsLicenseLink::start(client).await.unwrap());
            let mut tasks = Vec::new();
            for s in 0..SENDERS {
                let (link, acked, retries) = (Arc::clone(&link), Arc::clone(&acked), Arc::clone(&retries));
                tasks.push(tokio::spawn(async move {
                    let mut acked_ids = Vec::new();
                    let batches: Vec<Vec<UsageRecord>> = (0..RECORDS)
                        .filter(|i| (i / BATCH) % SENDERS == s)
                        .map(record)
                        .collect::<Vec<_>>()
                        .chunks(BATCH)
                        .map(<[UsageRecord]>::to_vec)
                        .collect();
                    for batch in batches {
                        // Sent again until acknowledged: what the API servers' reporter does.
                        loop {
                            match link.report(batch.clone()).await {
                                Ok(()) => break,
                                Err(_) => {
                                    retries.fetch_add(1, Ordering::Relaxed);
                                    tokio::time::sleep(Duration::from_millis(50)).await;
                                }
                            }
                        }
                        acked.fetch_add(batch.len(), Ordering::Relaxed);
                        acked_ids.extend(batch.into_iter().map(|r| r.id));
                    }
                    acked_ids
                }));
            }
            let mut all = Vec::new();
            for t in tasks {
                all.extend(t.await.unwrap());
            }
            all
        })
    };

    // Midway: SIGKILL the proxy (records are in flight), then start it again on the same data directory.
    let midway =
        poll(Duration::from_secs(60), || (acked.load(Ordering::Relaxed) >= RECORDS / 3).then_some(()));
    assert!(midway.is_some(), "records flow to the proxy");
    proxy.take().unwrap().kill();
    let acked_at_kill = acked.load(Ordering::Relaxed);
    assert!(acked_at_kill < RECORDS, "killed midway, not after the end");
    std::thread::sleep(Duration::from_millis(300));
    let _proxy = cluster.spawn_license_proxy("proxy-2", listen, &data, &args);

    let acked_ids = runtime.block_on(senders).unwrap();
    assert_eq!(acked_ids.len(), RECORDS);
    assert!(retries.load(Ordering::Relaxed) > 0, "some batches went unacknowledged while the proxy was down");

    // The audit export (admin key required): every acknowledged record once, the chain intact.
    let tar_path = cluster.dir().join("audit.tar");
    let (head, tar) = audit(listen, ADMIN).unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    std::fs::write(&tar_path, &tar).unwrap();
    assert_eq!(request(listen, "GET", "/audit", None).unwrap().status, 401, "no key, no audit");

    let records = chorus_license::audit::records(&tar).unwrap();
    let ids: HashSet<&str> = records.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids.len(), records.len(), "no record is stored twice");
    let missing: Vec<&String> = acked_ids.iter().filter(|id| !ids.contains(id.as_str())).collect();
    assert!(missing.is_empty(), "{} acknowledged records lost, e.g. {:?}", missing.len(), missing.first());
    assert_eq!(records.len(), RECORDS);
    let report = chorus_license::audit::verify(&tar, None);
    assert!(report.manifest.as_ref().unwrap().segments.len() > 2, "rotated into several segments");

    let (ok, out) = audit_verify(&tar_path);
    assert!(ok, "{out}");
    assert!(out.contains(&format!("{RECORDS} entries")), "{out}");

    // One byte flipped inside a segment (a digit of a character count): detected.
    let mut flipped = tar.clone();
    let needle = b"\"characters\":";
    let at = flipped.windows(needle.len()).position(|w| w == needle).unwrap() + needle.len();
    flipped[at] = if flipped[at] == b'9' { b'8' } else { flipped[at] + 1 };
    let flipped_path = cluster.dir().join("audit-flipped.tar");
    std::fs::write(&flipped_path, &flipped).unwrap();
    let (ok, out) = audit_verify(&flipped_path);
    assert!(!ok, "a flipped byte must fail verification:\n{out}");
    assert!(out.contains("PROBLEM") && out.contains("edited"), "{out}");

    // A segment removed from the archive: a gap.
    let mut archive = tar::Archive::new(&tar[..]);
    let mut rebuilt = tar::Builder::new(Vec::new());
    let mut dropped = false;
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        if !dropped && path.starts_with("segments/") && path != "segments/segment-00000001.log" {
            dropped = true;
            continue;
        }
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
        let mut header = entry.header().clone();
        rebuilt.append_data(&mut header, &path, &data[..]).unwrap();
    }
    let gap_path = cluster.dir().join("audit-gap.tar");
    std::fs::write(&gap_path, rebuilt.into_inner().unwrap()).unwrap();
    let (ok, out) = audit_verify(&gap_path);
    assert!(!ok && out.contains("missing") && out.contains("gap"), "{out}");
}

/// `chorus keys …` on a data directory; stdout.
/// `chorus keys add ARGS`: the new tenant key.
fn add_key(args: &[&str], data: &std::path::Path) -> String {
    keys(&[&["add"], args].concat(), data).trim().to_owned()
}

/// A license proxy on a free port over `data`, with the admin key: its address and process.
fn start_proxy(cluster: &Cluster, data: &std::path::Path) -> (std::net::SocketAddr, cluster_support::Proc) {
    let listen = loopback(free_port());
    (listen, cluster.spawn_license_proxy("proxy", listen, data, &["--admin-key", ADMIN]))
}

fn keys(args: &[&str], data: &std::path::Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_chorus"))
        .arg("keys")
        .args(args)
        .arg("--data")
        .arg(data)
        .output()
        .unwrap();
    assert!(out.status.success(), "chorus keys {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_cluster_api_takes_tenant_keys_from_the_proxy_over_nats_refuses_a_revoked_one_and_reports_usage() {
    let _serial = serial();
    let mut cluster = Cluster::new();
    let data = cluster.dir().join("license-data");
    let key = add_key(&["team-a"], &data);
    assert!(key.starts_with("chk_") && key.len() > 40, "a fresh high-entropy key");
    assert!(
        !std::fs::read_to_string(data.join("keys.json")).unwrap().contains(&key),
        "only its hash is stored"
    );
    let (listen, _proxy) = start_proxy(&cluster, &data);
    cluster.start_worker("w1", cluster_support::WorkerOpts::default());
    // No static key: the API takes its keys from the proxy.
    let api = cluster.start_api_with(&["--license-proxy"]);
    cluster.wait_apis_see_workers();
    let addr = cluster.apis[api].addr;
    let with_key = |k: &str, text: &str| {
        let mut r = request(
            addr,
            "POST",
            &format!("/tts/bytes?api_key={k}"),
            Some(&cluster_support::tts_body(text, false)),
        )
        .unwrap();
        let status = r.status;
        let body = r.read_all().map_err(|(e, _)| e).unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    };

    let text = "Tenant keys travel as hashes only.";
    let served = poll(Duration::from_secs(10), || (with_key(&key, text).0 == 200).then_some(()));
    assert!(served.is_some(), "the tenant key is accepted once the API has the proxy's state");
    assert_eq!(
        request(addr, "POST", "/tts/bytes", Some(&cluster_support::tts_body(text, false))).unwrap().status,
        401
    );
    assert_eq!(with_key("chk_wrong", text).0, 401);

    // Revoked with the CLI while everything runs: refused within a couple of seconds, with a clear message.
    keys(&["revoke", "team-a"], &data);
    let refused = poll(Duration::from_secs(5), || {
        let (status, body) = with_key(&key, "Still here?");
        (status == 401).then_some(body)
    });
    let body = refused.expect("the revoked key is refused");
    assert!(body.contains("revoked"), "{body}");
    let listing = keys(&["list"], &data);
    assert!(listing.contains("team-a") && listing.contains("true"), "{listing}");

    // The served request is in the ledger: key name, route, characters; never the text.
    let records = poll(Duration::from_secs(5), || {
        let records = audit_records(listen, ADMIN)?;
        records.iter().any(|r| r.key_name.as_deref() == Some("team-a")).then_some(records)
    })
    .expect("the request's usage record reaches the ledger");
    let r = records.iter().find(|r| r.key_name.as_deref() == Some("team-a")).unwrap();
    assert_eq!((r.route.as_str(), r.status.as_str(), r.model.as_str()), ("bytes", "completed", "sonic-3"));
    assert_eq!(r.characters, text.chars().count() as u64);
    assert!(r.audio_seconds > 0.5 && r.ttfa_ms.is_some(), "{r:?}");
    for file in walk(&data) {
        let content = std::fs::read(&file).unwrap();
        for needle in [text.as_bytes(), key.as_bytes()] {
            assert!(!content.windows(needle.len()).any(|w| w == needle), "found in {}", file.display());
        }
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() { out.extend(walk(&path)) } else { out.push(path) }
    }
    out
}

#[test]
fn chorus_serve_runs_the_proxy_in_process_on_its_metrics_port() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("license");
    let key = add_key(&["serve-tenant", "--rpm", "100"], &data);
    let (api, metrics) = (loopback(free_port()), loopback(free_port()));
    let mut cmd = cluster_support::chorus("info");
    cmd.args(["serve", "--listen", &api.to_string(), "--metrics-listen", &metrics.to_string()])
        .args(["--sessions", "1", "--threads", "1", "--admin-key", ADMIN])
        .arg("--license-data")
        .arg(&data);
    let mut serve = cluster_support::Proc::spawn("serve", cmd, dir.path().join("serve.log"));
    let ready = poll(Duration::from_secs(60), || {
        assert!(serve.try_wait().is_none(), "chorus serve exited:\n{}", serve.log_text());
        cluster_support::http_get(metrics, "/ready").is_ok_and(|(s, _)| s == 200).then_some(())
    });
    assert!(ready.is_some(), "chorus serve not ready:\n{}", serve.log_text());

    let (status, body) = cluster_support::http_get(metrics, "/license").unwrap();
    assert_eq!(status, 200, "{body}");
    let state: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (state["mode"].as_str(), state["verdict"].as_str()),
        (Some("open"), Some("serving")),
        "{state}"
    );
    assert_eq!(state["tenant_keys"], 1);
    assert_eq!(cluster_support::http_get(metrics, "/healthz").unwrap().0, 200);

    // Open on loopback, and the tenant key is required once one exists.
    let body = cluster_support::tts_body("Served in one process.", false);
    assert_eq!(request(api, "POST", "/tts/bytes", Some(&body)).unwrap().status, 401);
    let mut r = request(api, "POST", &format!("/tts/bytes?api_key={key}"), Some(&body)).unwrap();
    assert_eq!(r.status, 200);
    r.read_all().map_err(|(e, _)| e).unwrap();

    let records = poll(Duration::from_secs(5), || {
        let records = audit_records(metrics, ADMIN)?;
        (!records.is_empty()).then_some(records)
    })
    .expect("the request is in the ledger");
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].key_name.as_deref(), Some("serve-tenant"));
    let (_, text) = cluster_support::http_get(metrics, "/metrics").unwrap();
    assert!(text.contains("chorus_license_mode{mode=\"open\"} 1"), "{text}");
    assert!(text.contains("chorus_license_usage_records_total{model=\"sonic-3\"} 1"), "{text}");
    serve.signal("TERM");
    assert!(serve.wait_exit(Duration::from_secs(40)).is_some_and(|s| s.success()), "{}", serve.log_text());
}

/// `POST /access-token` with `key` on `api`: the token.
fn mint_token(api: std::net::SocketAddr, key: &str) -> String {
    let (status, body, _) = cluster_support::json_call(
        api,
        "POST",
        &format!("/access-token?api_key={key}"),
        &[],
        Some(serde_json::json!({"expires_in": 300, "grants": {"tts": true}})),
    );
    assert_eq!(status, 200, "minting over NATS: {body}");
    body["token"].as_str().unwrap().to_owned()
}

/// `POST /tts/bytes` with an access token on `api`: the status and the body.
fn call_token(api: std::net::SocketAddr, token: &str) -> (u16, String) {
    let body = cluster_support::tts_body("With a token.", false);
    let mut r = cluster_support::request_with(
        api,
        "POST",
        "/tts/bytes",
        &[("Authorization", &format!("Bearer {token}"))],
        Some(&body),
    )
    .unwrap();
    let status = r.status;
    let body = r.read_all().map_err(|(e, _)| e).unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// A tenant key's limits hold across API servers: two `chorus api` processes on one NATS share their counts, so a
/// key limited to one request at a time that runs a WebSocket context on one server is refused by the other, and a key
/// limited to three requests a minute gets three in all, not three per server.
#[test]
fn tenant_key_limits_hold_across_two_api_servers() {
    use tokio_tungstenite::tungstenite;

    let _serial = serial();
    let mut cluster = Cluster::new();
    let data = cluster.dir().join("license-data");
    let single = add_key(&["one-at-a-time", "--max-concurrent", "1"], &data);
    let three = add_key(&["three-a-minute", "--rpm", "3"], &data);
    let (_, _proxy) = start_proxy(&cluster, &data);
    cluster.start_worker("w1", cluster_support::WorkerOpts::default());
    let a = cluster.start_api_with(&["--license-proxy"]);
    let b = cluster.start_api_with(&["--license-proxy"]);
    cluster.wait_apis_see_workers();
    let (a, b) = (cluster.apis[a].addr, cluster.apis[b].addr);
    let call = |addr: std::net::SocketAddr, key: &str| {
        let body = cluster_support::tts_body("Limits are shared.", false);
        let mut r = request(addr, "POST", &format!("/tts/bytes?api_key={key}"), Some(&body)).unwrap();
        let status = r.status;
        let body = r.read_all().map_err(|(e, _)| e).unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    };
    // Both servers have the proxy's keys.
    for addr in [a, b] {
        let known = poll(Duration::from_secs(10), || (call(addr, &single).0 == 200).then_some(()));
        assert!(known.is_some(), "{addr} accepts the tenant key");
    }
    let token = mint_token(b, &single);

    // One at a time: a WebSocket context running on A holds the key's only slot, so B refuses the key. (The
    // socket alone holds nothing: each context is admitted.)
    let stream = std::net::TcpStream::connect(a).unwrap();
    let url = format!("ws://{a}/tts/websocket?cartesia_version=2025-04-16&api_key={single}");
    let (mut socket, _) = tungstenite::client(url.as_str(), stream).unwrap();
    let idle_socket_free = poll(Duration::from_secs(5), || (call(b, &single).0 == 200).then_some(()));
    assert!(idle_socket_free.is_some(), "an open socket without a context holds the key's slot");
    let context = serde_json::json!({
        "context_id": "held", "model_id": "sonic-3", "transcript": "This context holds the slot.",
        "voice": {"mode": "id", "id": cluster_support::MODEL}, "continue": true,
        "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 22050},
    });
    // B's last request must be over in A's view (reports every 500 ms) before the context is admitted on A.
    std::thread::sleep(Duration::from_millis(1200));
    socket.send(tungstenite::Message::text(context.to_string())).unwrap();
    let first = socket.read().unwrap();
    assert!(first.to_text().unwrap().contains("\"chunk\""), "the context was not served: {first}");
    let refused = poll(Duration::from_secs(5), || {
        let (status, body) = call(b, &single);
        (status == 429).then_some(body)
    });
    let body = refused.expect("B refuses the key while a context on A holds its only slot");
    assert!(body.contains("concurrency_limited"), "{body}");
    // So is an access token of the key, minted on B (before): the proxy signed it over NATS, A verifies it, and
    // its requests count against the key's limits on every server.
    let (status, body) = call_token(a, &token);
    assert_eq!(status, 429, "a token of a key at its limit: {body}");
    socket.close(None).unwrap();
    let _ = socket.read();
    drop(socket);
    let freed = poll(Duration::from_secs(5), || (call(b, &single).0 == 200).then_some(()));
    assert!(freed.is_some(), "B serves the key again once A's WebSocket is closed");
    // The token minted on B is honoured on A once the key's slot is free (and one minted on A on B).
    let served = poll(Duration::from_secs(5), || (call_token(a, &token).0 == 200).then_some(()));
    assert!(served.is_some(), "A serves B's token");
    std::thread::sleep(Duration::from_millis(1200));
    let (status, body) = call_token(b, &mint_token(a, &single));
    assert_eq!(status, 200, "B serves A's token: {body}");

    // Three a minute, in all: two on A, then one on B; B's next is refused, and so is A's.
    assert_eq!(call(a, &three).0, 200);
    assert_eq!(call(a, &three).0, 200);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(call(b, &three).0, 200);
    let (status, body) = call(b, &three);
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("rate_limited"), "{body}");
    std::thread::sleep(Duration::from_millis(1500));
    let (status, body) = call(a, &three);
    assert_eq!(status, 429, "A counts B's request too: {body}");
}

/// One hash of a tenant key, defined once (`chorus_proto::secret::hash_key`): `chorus keys add` stores the key
/// under it, the proxy announces it, and `chorus api` hashes the key a client presents with the same function to
/// find the tenant. The key is accepted; the stored hash itself, a near miss and no key are not.
#[test]
fn a_key_added_with_chorus_keys_add_is_accepted_by_chorus_api_through_the_shared_hash() {
    let _serial = serial();
    let mut cluster = Cluster::new();
    let data = cluster.dir().join("license-data");
    let key = add_key(&["shared-hash"], &data);
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("keys.json")).unwrap()).unwrap();
    let stored = file["keys"].as_array().unwrap().iter().find(|k| k["name"] == "shared-hash").unwrap();
    let hash = chorus_proto::secret::hash_key(&key);
    assert_eq!(stored["sha256"].as_str(), Some(hash.as_str()), "keys.json holds the shared hash of the key");

    let (_, _proxy) = start_proxy(&cluster, &data);
    let api = cluster.start_api_with(&["--license-proxy"]);
    let addr = cluster.apis[api].addr;
    let status = |headers: &[(&str, &str)]| {
        let mut r = request_with(addr, "GET", "/voices", headers, None).unwrap();
        let _ = r.read_all();
        r.status
    };
    let bearer = format!("Bearer {key}");
    let accepted =
        poll(Duration::from_secs(10), || (status(&[("Authorization", &bearer)]) == 200).then_some(()));
    assert!(accepted.is_some(), "the key is accepted once the API has the proxy's tenant keys");
    assert_eq!(status(&[("X-API-Key", &key)]), 200, "the same key as X-API-Key");
    assert_eq!(status(&[]), 401, "no key");
    assert_eq!(status(&[("X-API-Key", &hash)]), 401, "the stored hash is not a key");
    let mut near = key.clone();
    near.pop();
    near.push(if key.ends_with('A') { 'B' } else { 'A' });
    assert_eq!(status(&[("X-API-Key", &near)]), 401, "one character off");
}
