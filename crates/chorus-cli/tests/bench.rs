//! `chorus bench --url` end to end against a real `chorus serve` (run `scripts/setup` first): both levels of a
//! closed-loop run over `/tts/bytes` and the WebSocket, the JSON contract, and a plot of the results.
#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed
#![allow(clippy::print_stderr)] // the cluster support prints the logs of a failed test

mod cluster_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use cluster_support::free_port;
use serde_json::Value;

fn chorus() -> Command {
    let mut cmd = cluster_support::cli();
    cmd.env_remove("CHORUS_BENCH_API_KEY");
    cmd
}

/// `chorus serve` on free ports, killed on drop.
struct Serve {
    child: Child,
    port: u16,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ready(metrics: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", metrics)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /ready HTTP/1.0\r\nHost: localhost\r\n\r\n").is_err() {
        return false;
    }
    let mut head = [0u8; 16];
    let n = s.read(&mut head).unwrap_or(0);
    String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 200")
        || String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.0 200")
}

fn serve() -> Serve {
    let (port, metrics) = (free_port(), free_port());
    let child = chorus()
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--metrics-listen",
            &format!("127.0.0.1:{metrics}"),
        ])
        .args(["--sessions", "2", "--threads", "1", "--no-license-proxy"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut server = Serve { child, port };
    let t0 = Instant::now();
    while !ready(metrics) {
        assert!(server.child.try_wait().unwrap().is_none(), "chorus serve exited");
        assert!(t0.elapsed() < Duration::from_secs(60), "chorus serve was not ready within 60 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    server
}

fn bench(args: &[&str]) -> Output {
    let out = chorus().arg("bench").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "chorus bench {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    out
}

fn levels(path: &Path) -> Vec<Value> {
    serde_json::from_str::<Value>(&std::fs::read_to_string(path).unwrap())
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn closed_loop_levels_over_bytes_and_websocket() {
    let server = serve();
    let url = format!("http://127.0.0.1:{}", server.port);
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for protocol in ["bytes", "ws", "sse"] {
        let json = dir.path().join(format!("{protocol}.json"));
        let out = bench(&[
            "--url",
            &url,
            "--protocol",
            protocol,
            "--concurrency",
            "1,2",
            "--requests",
            "4",
            "--json",
            json.to_str().unwrap(),
        ]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("| concurrency | requests | errors | TTFA p50 (ms) |"), "{stdout}");
        let levels = levels(&json);
        assert_eq!(levels.len(), 2, "{protocol}: {levels:?}");
        for (level, concurrency) in levels.iter().zip([1, 2]) {
            let f = |k: &str| level[k].as_f64().unwrap_or_else(|| panic!("{protocol}: {k} in {level}"));
            assert_eq!(level["concurrency"], concurrency, "{protocol}: {level}");
            assert_eq!(level["requests"], 4, "{protocol}: {level}");
            assert_eq!(level["errors"], 0, "{protocol}: {level}");
            assert!(f("ttfa_p50_ms") > 0.0 && f("ttfa_p50_ms") <= f("ttfa_p95_ms"), "{protocol}: {level}");
            assert!(
                f("ttfa_p95_ms") <= f("ttfa_p99_ms") && f("ttfa_p99_ms") < 30_000.0,
                "{protocol}: {level}"
            );
            assert!(f("rtf_p50") > 0.0 && f("rtf_p50") <= f("rtf_p95"), "{protocol}: {level}");
            assert!(f("audio_s_per_s") > 0.0 && f("chars_per_s") > 0.0, "{protocol}: {level}");
            assert!(
                f("worst_underrun_ms") >= 0.0 && level["underruns"].as_u64().is_some(),
                "{protocol}: {level}"
            );
            assert_eq!(level["protocol"], protocol);
        }
        files.push(json);
    }

    // The two results in one plot and one report.
    let svg = dir.path().join("plot.svg");
    let out = bench(&[
        "--from",
        files[0].to_str().unwrap(),
        "--from",
        files[1].to_str().unwrap(),
        "--plot",
        svg.to_str().unwrap(),
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).matches("| concurrency |").count(), 2);
    let svg = std::fs::read_to_string(svg).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains(&format!("ws {url}")), "{svg}");
    assert_eq!(svg.matches("<polyline").count(), 6);
}

#[test]
fn load_flags_without_url_or_with_several_urls_are_refused() {
    let out = chorus().args(["bench", "--concurrency", "1"]).output().unwrap();
    assert!(!out.status.success());
    let out = chorus()
        .args(["bench", "--url", "http://127.0.0.1:9", "--url", "http://127.0.0.1:9", "--protocol", "ws"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("one request at a time"));
}
