//! Issue 14 against `chorus serve` as a process (the real voice, the real accept loop, loopback sockets): idle,
//! abandoned, slow and abusive clients never hold what others need.
//!
//! Settings are given through the environment (`CHORUS_*`), so that a build without them runs the same test with
//! its defaults (and fails it on behaviour, not on an unknown flag).
#![allow(clippy::unwrap_used)]
#![allow(clippy::print_stderr)] // timings, for whoever reads the test log

mod abuse_support;
mod cluster_support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use abuse_support::{Next, Ws, bytes_body, closed_within, generation, post_head, start_serve};
use cluster_support::{MODEL, audit_records, http_get, poll, serial, tts_bytes};
use serde_json::json;

/// A short request: about 4 s of audio.
const SHORT: &str = "The quick brown fox jumps over the lazy dog, and then it runs away into the forest.";

/// Three contexts with no text put no load on a worker of capacity 3, and everyone else is served at once; a
/// context that has spoken its text and then waits is closed after the context idle time with a `timeout` error,
/// and so are the empty ones; the slots are free again.
#[test]
fn empty_and_idle_websocket_contexts_hold_no_slot() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let serve =
        start_serve(dir.path(), &["--capacity", "3"], &[("CHORUS_WS_CONTEXT_IDLE_TIMEOUT", "2")], None);
    let mut ws = Ws::connect(serve.api, None);
    for id in ["hold1", "hold2", "hold3"] {
        ws.send(&generation(id, "", true));
    }
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(serve.load(), 0.0, "empty contexts hold worker slots");
    // Everybody else is served, now, not after a 30 s wait and a 429.
    let other = tts_bytes(serve.api, SHORT);
    other.assert_complete(3.0, "a request while three empty contexts are open");
    assert!(other.elapsed < Duration::from_secs(20), "the request took {:?}", other.elapsed);

    // A context that has spoken and waits for more text holds its slot only for the idle time; the empty ones
    // are closed too (they may be already).
    ws.send(&generation("talker", "Hello there, this is a short sentence.", true));
    let mut errors = std::collections::BTreeMap::new();
    let mut last_audio: Option<Instant> = None;
    while errors.len() < 4 {
        match ws.next(Duration::from_secs(20)) {
            Next::Frame(v) if v["type"] == "error" => {
                errors.insert(v["context_id"].as_str().unwrap().to_owned(), (v, Instant::now()));
            }
            Next::Frame(v) if v["type"] == "chunk" => last_audio = Some(Instant::now()),
            other @ (Next::Frame(_) | Next::Closed(_) | Next::Nothing) => {
                panic!("expected timeout errors for the idle contexts, got {other:?} ({errors:?})")
            }
        }
    }
    let last_audio = last_audio.expect("the talker spoke");
    let (_, talker_closed) = &errors["talker"];
    let idle_for = talker_closed.duration_since(last_audio);
    eprintln!("the talker was closed {:.1} s after its last audio", idle_for.as_secs_f64());
    assert!(idle_for >= Duration::from_millis(1800), "closed {idle_for:?} after its last audio");
    let errors: std::collections::BTreeMap<String, serde_json::Value> =
        errors.into_iter().map(|(k, (v, _))| (k, v)).collect();
    for (id, e) in &errors {
        assert_eq!(
            (e["error_code"].as_str(), e["status_code"].as_u64()),
            (Some("timeout"), Some(408)),
            "{id}: {e}"
        );
    }
    let free = poll(Duration::from_secs(3), || (serve.load() == 0.0).then_some(()));
    assert!(free.is_some(), "the idle context's slot was not freed");
    // The socket itself stays open and usable.
    ws.send(&generation("after", "Still here.", false));
    let frames = ws.until_end("after", Duration::from_secs(20));
    assert_eq!(frames.last().unwrap()["type"], "done", "{frames:?}");
}

/// Slowloris on both ports: a silent connection, headers at a byte every 300 ms, a body that stops, and an idle
/// keep-alive are all closed within their timeouts (2 s here); a `Content-Length` of 10^12 is 413 at once.
#[test]
fn slow_and_silent_connections_are_closed_on_both_ports() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let env = [("CHORUS_HEADER_TIMEOUT", "2"), ("CHORUS_BODY_TIMEOUT", "2"), ("CHORUS_IDLE_TIMEOUT", "2")];
    let serve = start_serve(dir.path(), &[], &env, None);
    let limit = Duration::from_millis(4500);
    let checks: Vec<(String, std::thread::JoinHandle<Option<Duration>>)> = [serve.api, serve.metrics]
        .into_iter()
        .enumerate()
        .flat_map(|(i, addr)| {
            let port = if i == 0 { "api" } else { "metrics" };
            let mut v: Vec<(String, std::thread::JoinHandle<Option<Duration>>)> = vec![
                (format!("{port}: silent"), std::thread::spawn(move || silent(addr, limit))),
                (format!("{port}: slow headers"), std::thread::spawn(move || slow_headers(addr, limit))),
                (format!("{port}: idle keep-alive"), {
                    let path = if i == 0 { "/status" } else { "/ready" };
                    std::thread::spawn(move || idle_keep_alive(addr, path, limit))
                }),
            ];
            if i == 0 {
                v.push((format!("{port}: slow body"), std::thread::spawn(move || slow_body(addr, limit))));
            }
            v
        })
        .collect();
    // 413 from the header alone.
    let started = Instant::now();
    let mut s = TcpStream::connect(serve.api).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "POST /tts/bytes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000000000000\r\n\r\n{{")
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = s.read(&mut buf).unwrap_or(0);
    let answer = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(answer.starts_with("HTTP/1.1 413"), "a 10^12-byte Content-Length: {answer:?}");
    assert!(started.elapsed() < Duration::from_secs(2), "413 took {:?}", started.elapsed());
    for (what, check) in checks {
        let closed = check.join().unwrap();
        let after = closed.unwrap_or_else(|| panic!("{what}: still open after {limit:?}"));
        eprintln!("{what}: closed after {:.2} s", after.as_secs_f64());
        assert!(after >= Duration::from_millis(1500), "{what}: closed too early ({after:?})");
    }
    // And the server serves.
    assert_eq!(http_get(serve.api, "/status").unwrap().0, 200);
}

fn silent(addr: SocketAddr, limit: Duration) -> Option<Duration> {
    let mut s = TcpStream::connect(addr).unwrap();
    closed_within(&mut s, limit)
}

fn slow_headers(addr: SocketAddr, limit: Duration) -> Option<Duration> {
    let mut s = TcpStream::connect(addr).unwrap();
    let started = Instant::now();
    let head = b"GET /status HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    for b in head {
        if s.write_all(&[*b]).is_err() {
            return Some(started.elapsed());
        }
        if started.elapsed() > limit {
            return None;
        }
        // Between two bytes: has the server given up?
        if closed_within(&mut s, Duration::from_millis(300)).is_some() {
            return Some(started.elapsed());
        }
    }
    None
}

fn slow_body(addr: SocketAddr, limit: Duration) -> Option<Duration> {
    let mut s = TcpStream::connect(addr).unwrap();
    let started = Instant::now();
    write!(s, "POST /tts/bytes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{{\"model_id\"")
        .unwrap();
    closed_within(&mut s, limit).map(|_| started.elapsed())
}

fn idle_keep_alive(addr: SocketAddr, path: &str, limit: Duration) -> Option<Duration> {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    // Read the response (it is small), then stay idle.
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 8192];
    let n = s.read(&mut buf).unwrap();
    assert!(n > 0, "no response");
    closed_within(&mut s, limit)
}

/// With 256 file descriptors, 300 connections from one address that send half a request and stop, then 80 more
/// from each of three other addresses: the server never runs out of descriptors, `/status` from another address
/// is served while one address holds its share, and is answered or refused at once (never left waiting) while
/// every connection slot is taken; the half requests are closed at the header timeout, and `/status` answers 200
/// again.
#[test]
fn partial_requests_cannot_exhaust_the_descriptors() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let serve = start_serve(dir.path(), &[], &[("CHORUS_HEADER_TIMEOUT", "3")], Some(256));
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let api = serve.api;
    // Opens `n` half requests from `source`; the sockets stay open until dropped.
    let open = |source: [u8; 4], n: usize| -> Vec<tokio::net::TcpStream> {
        runtime.block_on(async move {
            let mut sockets = Vec::new();
            for _ in 0..n {
                let socket = tokio::net::TcpSocket::new_v4().unwrap();
                socket.bind(SocketAddr::from((source, 0))).unwrap();
                let Ok(Ok(mut s)) = tokio::time::timeout(Duration::from_secs(2), socket.connect(api)).await
                else {
                    continue;
                };
                let _ =
                    tokio::io::AsyncWriteExt::write_all(&mut s, b"GET /status HTTP/1.1\r\nHost: x\r\nX-Half")
                        .await;
                sockets.push(s);
            }
            sockets
        })
    };
    let status_now = || {
        let started = Instant::now();
        let got = cluster_support::request(api, "GET", "/status", None).map(|mut r| {
            let _ = r.read_all();
            r.status
        });
        (got, started.elapsed())
    };
    let mut held = open([127, 0, 0, 2], 300);
    let (got, took) = status_now();
    assert_eq!(got.as_ref().ok(), Some(&200), "/status while one address holds 300 half requests: {got:?}");
    assert!(took < Duration::from_secs(1), "/status took {took:?}");
    for last in 3..=5u8 {
        held.extend(open([127, 0, 0, last], 80));
        // With every slot held, a new connection is answered 503 and closed at once; the close can overtake the
        // answer (a reset), but it never waits.
        let (got, took) = status_now();
        if let Ok(status) = got {
            assert!(status == 200 || status == 503, "/status answered {status}");
        }
        assert!(took < Duration::from_secs(1), "/status took {took:?} ({got:?})");
    }
    eprintln!("{} half requests held", held.len());
    // The header timeout closes them; the server serves again.
    let served = poll(Duration::from_secs(8), || (status_now().0.ok() == Some(200)).then_some(()));
    assert!(served.is_some(), "/status never answered 200 again");
    // Every half request is closed within the header timeout of its opening (the last ones opened last).
    let total = held.len();
    let closed = runtime.block_on(async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(6);
        let mut open: Vec<tokio::net::TcpStream> = held;
        while !open.is_empty() && tokio::time::Instant::now() < deadline {
            let mut still = Vec::new();
            for mut s in open {
                let mut buf = [0u8; 512];
                let read = tokio::io::AsyncReadExt::read(&mut s, &mut buf);
                match tokio::time::timeout(Duration::from_millis(5), read).await {
                    // A 503 answer, a close or a reset: closed by the server (an answer is followed by the close,
                    // seen on a later pass).
                    Ok(Ok(0) | Err(_)) => {}
                    Ok(Ok(_)) | Err(_) => still.push(s),
                }
            }
            open = still;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        total - open.len()
    });
    let held_len = total;
    assert_eq!(closed, held_len, "half requests still open after the header timeout");
    let log = serve.proc.log_text();
    assert!(!log.contains("Too many open files"), "the server ran out of descriptors:\n{log}");
    assert!(!log.contains("Cannot accept a connection"), "accept failed:\n{log}");
}

/// Cost limits: 44 kB of `<break time="10s"/>` is refused before any audio; a dictionary cannot inflate a
/// transcript past the limit; the usage record counts the audio produced (silence included). The queue timeout
/// says what happened. A client that closes its socket mid-context is recorded as `client_closed`.
#[test]
fn cost_limits_usage_and_queue_timeout() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("chorus.toml");
    std::fs::write(&config, "queue_timeout_seconds = 2\n").unwrap();
    let serve = start_serve(
        dir.path(),
        &["--capacity", "1", "--config", config.to_str().unwrap()],
        &[("CHORUS_ADMIN_KEYS", "admin-key")],
        None,
    );
    let raw = json!({"container": "raw", "encoding": "pcm_s16le", "sample_rate": 22050});

    // 2000 breaks of 10 s: refused, not 20,000 s of audio.
    let breaks = "A<break time=\"10s\"/>".repeat(2000);
    let (status, mut s) = post_head(serve.api, "/tts/bytes", &bytes_body(&breaks, raw.clone()), &[]);
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    assert_eq!(status, 400, "a request for 20,000 s of silence: {}", &body[..body.len().min(300)]);
    assert!(body.contains("silence"), "{body}");

    // A dictionary that turns every "a" into 499 characters cannot make 49,990 characters into millions.
    let alias = "b".repeat(499);
    let dict = json!({"name": "inflate", "items": [{"text": "a", "alias": alias}]});
    let (code, created, _) =
        cluster_support::json_call(serve.api, "POST", "/pronunciation-dicts", &[], Some(dict));
    assert_eq!(code, 200, "{created}");
    let transcript = "a ".repeat(24_995);
    let request = json!({"model_id": "sonic-3", "transcript": transcript, "voice": {"mode": "id", "id": MODEL},
        "output_format": raw, "pronunciation_dict_id": created["id"]});
    let (status, mut s) = post_head(serve.api, "/tts/bytes", &request.to_string(), &[]);
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    assert_eq!(status, 400, "{}", &body[..body.len().min(300)]);
    assert!(body.contains("text_too_long") && body.contains("dictionary"), "{body}");

    // Breaks within the limit are produced, and billed as the audio they are.
    let paused = "One.<break time=\"2s\"/>Two.<break time=\"2s\"/>Three.<break time=\"2s\"/>";
    let outcome = tts_bytes(serve.api, paused);
    outcome.assert_complete(6.0, "a request with 6 s of breaks");
    let produced = outcome.audio_seconds();

    // The queue timeout (2 s here): a context holds the only slot, the next request waits 2 s and is told so.
    let mut holder = Ws::connect(serve.api, None);
    holder.send(&generation("hold", "This context holds the only slot for a while.", true));
    holder.first_chunk("hold", Duration::from_secs(20));
    let started = Instant::now();
    let (status, mut s) = post_head(serve.api, "/tts/bytes", &bytes_body(SHORT, raw.clone()), &[]);
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    let waited = started.elapsed();
    assert_eq!(status, 429, "{body}");
    assert!(waited >= Duration::from_millis(1800) && waited < Duration::from_secs(10), "waited {waited:?}");
    assert!(body.contains("queue timeout") && !body.contains("queue is full"), "{body}");
    // The client drops the socket mid-context.
    holder.reset();

    let records = poll(Duration::from_secs(10), || {
        let records = audit_records(serve.metrics, "admin-key")?;
        (records.iter().any(|r| r.status == "client_closed")
            && records.iter().any(|r| r.status == "completed"))
        .then_some(records)
    })
    .unwrap_or_else(|| {
        panic!("no completed and client_closed records: {:?}", audit_records(serve.metrics, "admin-key"))
    });
    let paused_record = records.iter().find(|r| r.status == "completed").unwrap();
    eprintln!("produced {produced:.3} s; billed {:.3} s", paused_record.audio_seconds);
    assert!(
        (paused_record.audio_seconds - produced).abs() < 0.05,
        "billed {:.3} s for {produced:.3} s of audio",
        paused_record.audio_seconds
    );
    let closed = records.iter().find(|r| r.status == "client_closed").unwrap();
    assert_eq!(closed.route, "websocket");
    assert!(!records.iter().any(|r| r.status == "worker_lost"), "{records:?}");
}

/// SIGTERM with WebSocket contexts open: a context may go on for the whole drain time (14 s here, 30 s by
/// default) and ends with `done`; one still open at the end gets an `error`; then the socket closes with 1001.
#[test]
fn sigterm_lets_websocket_contexts_finish_each_with_done_or_error() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    // Two contexts are open at once whatever this machine measures at warm-up (a loaded one may declare 1).
    let serve = start_serve(dir.path(), &["--capacity", "4"], &[("CHORUS_WS_DRAIN_TIMEOUT", "14")], None);
    let mut ws = Ws::connect(serve.api, None);
    ws.send(&generation("finishing", "The first part.", true));
    ws.first_chunk("finishing", Duration::from_secs(20));
    ws.send(&generation("abandoned", "Another context.", true));
    ws.first_chunk("abandoned", Duration::from_secs(20));
    serve.proc.signal("TERM");
    let termed = Instant::now();
    // Well past the old 10 s, but within the drain time: more text, then the end.
    let mut seen = Vec::new();
    while termed.elapsed() < Duration::from_secs(12) {
        match ws.next(Duration::from_millis(200)) {
            Next::Frame(v) => seen.push(v),
            Next::Nothing => {}
            Next::Closed(code) => {
                panic!("closed ({code:?}) {:.1} s after SIGTERM", termed.elapsed().as_secs_f64())
            }
        }
    }
    ws.send(&json!({"context_id": "finishing", "transcript": " And the end.", "continue": false}));
    let mut ends = std::collections::BTreeMap::new();
    let close = loop {
        match ws.next(Duration::from_secs(10)) {
            Next::Frame(v) => {
                if v["type"] == "done" || v["type"] == "error" {
                    ends.insert(v["context_id"].as_str().unwrap().to_owned(), (v.clone(), termed.elapsed()));
                }
                seen.push(v);
            }
            Next::Closed(code) => break (code, termed.elapsed()),
            Next::Nothing => panic!("nothing for 10 s after the end of the drain"),
        }
    };
    let (done, done_at) = &ends["finishing"];
    assert_eq!(done["type"], "done", "{done}");
    let (error, error_at) = &ends["abandoned"];
    assert_eq!(
        (error["type"].as_str(), error["error_code"].as_str()),
        (Some("error"), Some("unserviceable")),
        "{error}"
    );
    eprintln!(
        "done at {:.1} s, error at {:.1} s, close {:?} at {:.1} s after SIGTERM",
        done_at.as_secs_f64(),
        error_at.as_secs_f64(),
        close.0,
        close.1.as_secs_f64()
    );
    assert!(*error_at >= Duration::from_secs(13), "the abandoned context was cut at {error_at:?}");
    assert_eq!(close.0, Some(1001));
}

/// `chorus serve` refuses a metrics port beyond loopback (it carries `POST /license`) without --allow-open; a
/// worker says loudly that its metrics port is reachable.
#[test]
fn a_public_metrics_port_is_refused_or_warned_about() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let port = cluster_support::free_port();
    let mut cmd = cluster_support::chorus("info");
    cmd.args(["serve", "--listen", &format!("127.0.0.1:{}", cluster_support::free_port())])
        .args(["--metrics-listen", &format!("0.0.0.0:{port}")])
        .arg("--license-data")
        .arg(dir.path().join("license"));
    let mut serve = cluster_support::Proc::spawn("serve", cmd, dir.path().join("serve.log"));
    let exit = serve.wait_exit(Duration::from_secs(20));
    let log = serve.log_text();
    let status = exit.unwrap_or_else(|| panic!("chorus serve kept running with /license on 0.0.0.0:\n{log}"));
    assert!(!status.success());
    assert!(log.contains("refusing to put the metrics port on 0.0.0.0"), "{log}");

    let mut cmd = cluster_support::chorus("info");
    cmd.args(["worker", "--nats", "nats://127.0.0.1:1", "--model", MODEL])
        .args(["--metrics-listen", &format!("0.0.0.0:{}", cluster_support::free_port())]);
    let worker = cluster_support::Proc::spawn("worker", cmd, dir.path().join("worker.log"));
    let warned =
        poll(Duration::from_secs(10), || worker.log_text().contains("WARNING: /metrics").then_some(()));
    assert!(warned.is_some(), "no warning:\n{}", worker.log_text());
}
