//! Issue 14 in cluster mode: a real `nats-server`, `chorus api` and two `chorus worker` processes. A client that
//! goes away frees its worker at once, through the bus (also after a frozen worker thaws, and after a NATS
//! restart); a client that does not read is held to a bounded buffer on the API and dropped after the stall
//! timeout; a tenant key's limits and revocation hold for every context of a WebSocket, across API servers.
//!
//! Settings are given through the environment (`CHORUS_*`), so that a build without them runs the same test with
//! its defaults (and fails it on behaviour, not on an unknown flag).
#![allow(clippy::unwrap_used)]
#![allow(clippy::print_stderr)] // timings, for whoever reads the test log

mod abuse_support;
mod cluster_support;

use std::io::Read;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use abuse_support::{Next, Ws, bytes_body, generation, post_head, reset, rss};
use cluster_support::{Cluster, WorkerOpts, audit_records, long_text, poll, serial, tts_bytes};
use serde_json::json;

const SHORT: &str = "The quick brown fox jumps over the lazy dog, and then it runs away into the forest.";

fn cluster(api_env: &[(&str, &str)], capacity: u32) -> Cluster {
    let mut c = Cluster::new();
    let opts = WorkerOpts::with_capacity(capacity);
    c.spawn_worker("w1", opts);
    c.spawn_worker("w2", opts);
    c.start_api_env(&[], api_env);
    c.wait_worker(0);
    c.wait_worker(1);
    c.wait_apis_see_workers();
    c
}

fn total_load(c: &Cluster) -> f64 {
    c.workers.iter().map(|w| w.scrape().value("inferno_worker_load", &[]).unwrap_or(-1.0)).sum()
}

fn jobs(c: &Cluster, outcome: &str) -> f64 {
    c.workers
        .iter()
        .map(|w| w.scrape().value("chorus_worker_jobs_total", &[("outcome", outcome)]).unwrap_or(0.0))
        .sum()
}

/// Waits until the workers' load is 0; how long it took, or panics after `limit`.
fn load_drops_to_zero(c: &Cluster, limit: Duration, what: &str) -> Duration {
    let started = Instant::now();
    let done = poll(limit, || (total_load(c) == 0.0).then_some(()));
    assert!(done.is_some(), "{what}: worker load still {} after {limit:?}", total_load(c));
    let took = started.elapsed();
    eprintln!("{what}: worker load back to 0 in {:.2} s", took.as_secs_f64());
    took
}

/// A `/tts/bytes` of `text` whose first audio bytes have arrived; the connection is the caller's.
fn streaming_bytes(api: SocketAddr, text: &str) -> std::net::TcpStream {
    let raw = json!({"container": "raw", "encoding": "pcm_s16le", "sample_rate": 22050});
    let (status, mut s) = post_head(api, "/tts/bytes", &bytes_body(text, raw), &[]);
    assert_eq!(status, 200);
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).unwrap();
    assert!(n > 0, "no audio");
    s
}

/// Client gone, worker free: a `/tts/bytes` and a WebSocket reset after the first audio of a 10,000-character
/// text; a worker frozen mid-stream (SIGSTOP), whose client gets `worker_lost` and leaves, then thawed; a NATS
/// restart under two streams. Each time the workers' load is back to 0 within 2 s of the event (of the thaw, of
/// NATS' return), the jobs are counted cancelled, and new requests are served at once.
#[test]
fn a_client_that_goes_away_frees_its_worker_through_the_bus() {
    let _serial = serial();
    let mut c = cluster(&[], 2);
    let api = c.apis[0].addr;
    let text = long_text(10_000);

    // A TCP reset under /tts/bytes.
    let s = streaming_bytes(api, &text);
    assert_eq!(total_load(&c), 1.0);
    reset(s);
    load_drops_to_zero(&c, Duration::from_secs(2), "bytes reset");

    // A TCP reset under a WebSocket context.
    let mut ws = Ws::connect(api, None);
    ws.send(&generation("long", &text, false));
    ws.first_chunk("long", Duration::from_secs(20));
    assert_eq!(total_load(&c), 1.0);
    ws.reset();
    load_drops_to_zero(&c, Duration::from_secs(2), "WebSocket reset");
    let cancelled = poll(Duration::from_secs(20), || (jobs(&c, "cancelled") >= 2.0).then_some(()));
    assert!(cancelled.is_some(), "the reset jobs were not counted cancelled");
    assert_eq!(jobs(&c, "completed"), 0.0, "a reset job was completed");

    // A frozen worker: its client gets worker_lost and leaves; once thawed, the worker drops the job.
    let mut s = streaming_bytes(api, &text);
    let frozen = (0..2).find(|&i| c.workers[i].load() == 1.0).expect("a worker serves the stream");
    c.workers[frozen].proc.signal("STOP");
    let stopped = Instant::now();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = vec![0u8; 65536];
    let broke = loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break stopped.elapsed(),
            Ok(_) => {}
        }
    };
    eprintln!("the frozen worker's client lost its stream after {:.2} s", broke.as_secs_f64());
    assert!(broke < Duration::from_secs(5), "the client waited {broke:?}");
    drop(s);
    std::thread::sleep(Duration::from_secs(2));
    c.workers[frozen].proc.signal("CONT");
    let thawed = Duration::from_secs(2);
    let back = poll(thawed + Duration::from_secs(1), || (c.workers[frozen].load() == 0.0).then_some(()));
    assert!(
        back.is_some(),
        "the thawed worker still works for a client that is gone: load {}",
        c.workers[frozen].load()
    );
    // New work is served at once.
    tts_bytes(api, SHORT).assert_complete(3.0, "a request after the thaw");

    // A NATS restart under two streams: when the bus returns, nobody works for the lost clients.
    let streams: Vec<_> = (0..2).map(|_| streaming_bytes(api, &text)).collect();
    assert_eq!(total_load(&c), 2.0);
    c.nats.kill();
    std::thread::sleep(Duration::from_secs(2));
    drop(streams);
    c.nats.restart();
    let returned = Instant::now();
    load_drops_to_zero(&c, Duration::from_secs(2), "NATS restart");
    let served = poll(Duration::from_secs(20), || {
        let o = tts_bytes(api, SHORT);
        (o.status == 200 && o.broken.is_none()).then_some(o)
    })
    .expect("no request served after the NATS restart");
    let first = served.first_byte.unwrap();
    eprintln!(
        "after NATS returned: served in {:.1} s (first audio after {:.2} s)",
        returned.elapsed().as_secs_f64(),
        first.as_secs_f64()
    );
    assert!(first < Duration::from_secs(5), "a new request waited {first:?} for its first audio");
    assert_eq!(jobs(&c, "completed"), 2.0, "only the two short requests completed, none of the lost streams");
}

/// Eight clients ask for 125 s of 48 kHz f32 audio each (120 s of it silence, which costs the worker nothing) and
/// never read: the API's memory grows by a bounded amount (under 40 MB for all, while the old bus buffered every
/// stream whole), the workers wait, and after the stall timeout (4 s here) the clients are dropped and their jobs
/// cancelled. A client that reads with pauses shorter than the stall timeout gets its whole stream.
#[test]
fn clients_that_do_not_read_are_bounded_then_dropped() {
    let _serial = serial();
    let c = cluster(&[("CHORUS_WRITE_STALL_TIMEOUT", "4")], 4);
    let api = c.apis[0].addr;
    let pid = c.apis[0].proc.pid();
    let before = rss(pid);
    let text = "Now.<break time=\"10s\"/>".repeat(12);
    let f32_48k = json!({"container": "raw", "encoding": "pcm_f32le", "sample_rate": 48000});
    let mut silent: Vec<std::net::TcpStream> = (0..8)
        .map(|_| {
            let (status, s) = post_head(api, "/tts/bytes", &bytes_body(&text, f32_48k.clone()), &[]);
            assert_eq!(status, 200);
            s
        })
        .collect();
    let started = Instant::now();
    let mut peak = before;
    while started.elapsed() < Duration::from_secs(3) {
        peak = peak.max(rss(pid));
        std::thread::sleep(Duration::from_millis(100));
    }
    let growth = peak.saturating_sub(before);
    eprintln!("API RSS {} MB before, peak {} MB with 8 non-reading streams", before >> 20, peak >> 20);
    assert!(growth < 40 << 20, "the API grew by {} MB for clients that do not read", growth >> 20);

    // A client that reads, with pauses under the stall timeout, is served whole meanwhile.
    let reader = std::thread::spawn(move || {
        let raw = json!({"container": "raw", "encoding": "pcm_s16le", "sample_rate": 22050});
        let (status, mut s) = post_head(api, "/tts/bytes", &bytes_body(SHORT, raw), &[]);
        assert_eq!(status, 200);
        let mut total = 0usize;
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match s.read(&mut buf) {
                Ok(0) => break Ok(total),
                Ok(n) => total += n,
                Err(e) => break Err(e.to_string()),
            }
            std::thread::sleep(Duration::from_millis(1500));
        }
    });

    load_drops_to_zero(&c, Duration::from_secs(10), "non-reading clients dropped");
    let cancelled = poll(Duration::from_secs(10), || (jobs(&c, "cancelled") >= 8.0).then_some(()));
    assert!(cancelled.is_some(), "cancelled jobs: {}", jobs(&c, "cancelled"));
    // Their transfers were cut, never ended as if complete.
    for s in &mut silent {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut rest = Vec::new();
        let end = s.read_to_end(&mut rest);
        let clean = end.is_ok() && rest.ends_with(b"0\r\n\r\n");
        assert!(!clean, "a dropped client's transfer ended cleanly ({} bytes)", rest.len());
    }
    let got = reader.join().unwrap().expect("the slow reader's stream broke");
    assert!(got > 100_000, "the slow reader got {got} bytes");
    assert_eq!(jobs(&c, "completed"), 1.0, "the slow reader's job completed");
}

/// A tenant key limited to one request at a time and three a minute, over two API servers: a second context on
/// the same socket, and a request on the other server, are refused while one context runs; three contexts in all
/// start within the minute. A revoked key's open sockets (one with a running context, one idle, on both servers)
/// get an `error` frame and are closed within seconds.
#[test]
fn tenant_limits_and_revocation_hold_for_every_websocket_context() {
    let _serial = serial();
    let mut c = Cluster::new();
    let data = c.dir().join("license-data");
    let keys = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_chorus"))
            .args(["keys"])
            .args(args)
            .arg("--data")
            .arg(&data)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let limited = keys(&["add", "limited", "--max-concurrent", "1", "--rpm", "3"]);
    let victim = keys(&["add", "victim"]);
    let listen = cluster_support::loopback(cluster_support::free_port());
    let _proxy = c.spawn_license_proxy("proxy", listen, &data, &["--admin-key", "admin"]);
    let opts = WorkerOpts::with_capacity(4);
    c.spawn_worker("w1", opts);
    c.spawn_worker("w2", opts);
    let a = c.start_api_with(&["--license-proxy"]);
    let b = c.start_api_with(&["--license-proxy"]);
    c.wait_worker(0);
    c.wait_worker(1);
    c.wait_apis_see_workers();
    let (a, b) = (c.apis[a].addr, c.apis[b].addr);
    let known = poll(Duration::from_secs(10), || {
        (cluster_support::http_get(a, "/voices").is_ok()
            && Ws::try_connect(a, &victim)
            && Ws::try_connect(b, &victim))
        .then_some(())
    });
    assert!(known.is_some(), "the APIs never learned the tenant keys");

    // One at a time: a running context on A holds the key's only slot.
    let mut ws = Ws::connect(a, Some(&limited));
    ws.send(&generation("c1", "The first context holds the only slot.", true));
    ws.first_chunk("c1", Duration::from_secs(20));
    ws.send(&generation("c2", "A second one at the same time.", false));
    let refused = error_of(&mut ws, "c2");
    assert_eq!(refused["error_code"], "concurrency_limited", "{refused}");
    // ...across servers, within a second or so of the context's start.
    let body = cluster_support::tts_body("Limits are shared.", false);
    let other = poll(Duration::from_secs(3), || {
        let mut r =
            cluster_support::request(b, "POST", &format!("/tts/bytes?api_key={limited}"), Some(&body))
                .ok()?;
        let status = r.status;
        let text = String::from_utf8_lossy(&r.read_all().ok()?).into_owned();
        (status == 429).then_some(text)
    });
    let other = other.expect("B served the key while A's context held its only slot");
    assert!(other.contains("concurrency_limited"), "{other}");
    let mut on_b = Ws::connect(b, Some(&limited));
    on_b.send(&generation("b1", "On the other server.", false));
    assert_eq!(error_of(&mut on_b, "b1")["error_code"], "concurrency_limited");

    // Three a minute, contexts included: c1 was the first; two more, then no more.
    ws.send(&json!({"context_id": "c1", "transcript": "", "continue": false}));
    assert_eq!(ws.until_end("c1", Duration::from_secs(30)).last().unwrap()["type"], "done");
    std::thread::sleep(Duration::from_millis(1200)); // the peers hear that the slot is free
    for id in ["c3", "c4"] {
        ws.send(&generation(id, "Short.", false));
        let end = ws.until_end(id, Duration::from_secs(30));
        assert_eq!(end.last().unwrap()["type"], "done", "{id}: {end:?}");
    }
    ws.send(&generation("c5", "One too many.", false));
    let limited_out = error_of(&mut ws, "c5");
    assert_eq!(limited_out["error_code"], "rate_limited", "{limited_out}");

    // Revocation: a socket with a running context on A, an idle one on B, and a context closed by its client.
    let mut closing = Ws::connect(a, Some(&victim));
    closing.send(&generation("gone", "This client will vanish.", true));
    closing.first_chunk("gone", Duration::from_secs(20));
    closing.reset();
    let mut running = Ws::connect(a, Some(&victim));
    running.send(&generation("r", "Running while the key is revoked.", true));
    running.first_chunk("r", Duration::from_secs(20));
    let mut idle = Ws::connect(b, Some(&victim));
    keys(&["revoke", "victim"]);
    let revoked = Instant::now();
    for (name, socket, context) in [("running on A", &mut running, Some("r")), ("idle on B", &mut idle, None)]
    {
        let mut error = None;
        let code = loop {
            match socket.next(Duration::from_secs(6)) {
                Next::Frame(v) if v["type"] == "error" => error = Some(v),
                Next::Frame(_) => {}
                Next::Closed(code) => break code,
                Next::Nothing => {
                    panic!("{name}: still open {:.1} s after the revocation", revoked.elapsed().as_secs_f64())
                }
            }
        };
        let error = error.unwrap_or_else(|| panic!("{name}: closed without an error frame"));
        assert_eq!(error["error_code"], "unauthorized", "{name}: {error}");
        assert_eq!(error.get("context_id").and_then(|v| v.as_str()), context, "{name}: {error}");
        assert_eq!(code, Some(1008), "{name}");
        eprintln!("{name}: closed {:.2} s after the revocation", revoked.elapsed().as_secs_f64());
    }
    assert!(revoked.elapsed() < Duration::from_secs(6));

    // The usage ledger: the vanished client is client_closed, the revoked context unauthorized.
    let records = poll(Duration::from_secs(10), || {
        let records = audit_records(listen, "admin")?;
        let statuses: Vec<&str> = records.iter().map(|r| r.status.as_str()).collect();
        (statuses.contains(&"client_closed") && statuses.contains(&"unauthorized")).then_some(records)
    });
    let records = records.unwrap_or_else(|| panic!("ledger: {:?}", audit_records(listen, "admin")));
    assert!(!records.iter().any(|r| r.status == "worker_lost"), "{records:?}");
}

impl Ws {
    /// True when a socket with `key` opens (the API knows the key).
    fn try_connect(addr: SocketAddr, key: &str) -> bool {
        let Ok(stream) = std::net::TcpStream::connect(addr) else { return false };
        let url = format!("ws://{addr}/tts/websocket?api_key={key}");
        tokio_tungstenite::tungstenite::client(url.as_str(), stream).is_ok()
    }
}

/// The `error` frame of `context_id` (other frames skipped); panics if it ends otherwise.
fn error_of(ws: &mut Ws, context_id: &str) -> serde_json::Value {
    let frames = ws.until_end(context_id, Duration::from_secs(20));
    let last = frames.last().unwrap().clone();
    let types: Vec<&str> = frames.iter().filter_map(|f| f["type"].as_str()).collect();
    assert_eq!(last["type"], "error", "{context_id} was served: {types:?}");
    last
}
