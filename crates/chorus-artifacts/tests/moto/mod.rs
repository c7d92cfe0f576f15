//! A local S3 emulator for tests: `moto` in server mode (installed into .venv by `scripts/setup --dev`), started on
//! a free port and killed on drop. An emulator, not AWS: it speaks the S3 wire protocol, conditional writes
//! (`If-None-Match: *`, `If-Match`) and listings included. Shared by the S3 tests of chorus-artifacts and chorus-cli
//! (the latter includes this file with `#[path]`); std only, so either crate can.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `moto_server` on a free port.
pub struct Moto {
    child: Child,
    pub port: u16,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moto {
    /// Starts the emulator of the checkout at `repo_root` and waits until it answers.
    pub fn start(repo_root: &Path) -> Self {
        let bin = repo_root.join(".venv/bin/moto_server");
        assert!(
            bin.exists(),
            "{} is missing: run scripts/setup --dev (it installs moto[server])",
            bin.display()
        );
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let moto = Moto { child, port };
        let t0 = Instant::now();
        while moto.request("GET", "/", "").is_err() {
            assert!(t0.elapsed() < Duration::from_secs(30), "moto_server did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }

    /// The emulator's endpoint URL.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A raw HTTP/1.1 request: status and the whole response. The emulator does not check signatures but refuses
    /// anonymous deletes, so a (fake) `Authorization` header makes every request look signed.
    pub fn request(&self, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
        const AUTH: &str = "Authorization: AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/s3/aws4_request, \
                            SignedHeaders=host, Signature=0\r\n";
        let port = self.port;
        let mut s = TcpStream::connect(("127.0.0.1", port))?;
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n{AUTH}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        let status = out.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        Ok((status, out))
    }
}
