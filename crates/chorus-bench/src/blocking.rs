//! A blocking HTTP/1.1 client over one `TcpStream` per request, for callers without an async runtime (`chorus
//! probe`) and for tests that need to tell a clean end of a streamed body (the last chunk, the full
//! `Content-Length`) from an aborted transfer. One request per connection (`Connection: close`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::client::CARTESIA_VERSION;

/// How long a connection may take to open, and each read or write once open.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    pub io: Duration,
}

impl Timeouts {
    /// The same limit for connecting and for each read or write.
    pub fn all(limit: Duration) -> Self {
        Self { connect: limit, io: limit }
    }
}

/// A response whose body is read piece by piece, so that a clean end (the last chunk of a chunked body, or the
/// full `Content-Length`) can be told from an aborted transfer.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    reader: BufReader<TcpStream>,
    framing: Framing,
    finished: bool,
}

#[derive(Debug, Clone, Copy)]
enum Framing {
    Chunked,
    Length(usize),
    Eof,
}

/// Sends one request (`Connection: close`, a JSON content type, the Cartesia version header, `headers`) and reads
/// the status line and headers; the body is read with [`Response::next_piece`].
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
    timeouts: Timeouts,
) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect_timeout(&addr, timeouts.connect)?;
    stream.set_read_timeout(Some(timeouts.io))?;
    stream.set_write_timeout(Some(timeouts.io))?;
    let body = body.unwrap_or("");
    let extra: String = headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nCartesia-Version: {CARTESIA_VERSION}\r\n\
         {extra}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP status line: {line:?}")))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(std::io::Error::other("connection closed in the headers"));
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    let header = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let framing = if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        Framing::Chunked
    } else if let Some(n) = header("content-length").and_then(|v| v.parse().ok()) {
        Framing::Length(n)
    } else {
        Framing::Eof
    };
    Ok(Response { status, headers, reader, framing, finished: false })
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The next piece of the body: `Ok(None)` at a clean end, `Err` when the transfer broke off (the connection
    /// closed or was reset before the end, or a read timed out).
    pub fn next_piece(&mut self) -> Result<Option<Vec<u8>>, String> {
        if self.finished {
            return Ok(None);
        }
        match self.framing {
            Framing::Chunked => {
                let mut line = String::new();
                let n = self.reader.read_line(&mut line).map_err(|e| format!("reading a chunk size: {e}"))?;
                if n == 0 {
                    return Err("the connection closed before the last chunk".into());
                }
                let size_text = line.trim_end().split(';').next().unwrap_or("");
                let size = usize::from_str_radix(size_text, 16)
                    .map_err(|_| format!("invalid chunk size line {line:?}"))?;
                if size == 0 {
                    // Trailers, then the blank line.
                    loop {
                        line.clear();
                        let n =
                            self.reader.read_line(&mut line).map_err(|e| format!("reading trailers: {e}"))?;
                        if n == 0 {
                            return Err("the connection closed in the trailers".into());
                        }
                        if line.trim_end().is_empty() {
                            break;
                        }
                    }
                    self.finished = true;
                    return Ok(None);
                }
                let mut data = vec![0u8; size + 2];
                self.reader.read_exact(&mut data).map_err(|e| format!("reading a chunk: {e}"))?;
                if &data[size..] != b"\r\n" {
                    return Err("a chunk does not end in CRLF".into());
                }
                data.truncate(size);
                Ok(Some(data))
            }
            Framing::Length(remaining) => {
                if remaining == 0 {
                    self.finished = true;
                    return Ok(None);
                }
                let mut data = vec![0u8; remaining.min(64 * 1024)];
                let n = self.reader.read(&mut data).map_err(|e| format!("reading the body: {e}"))?;
                if n == 0 {
                    return Err(format!("the connection closed {remaining} bytes before the end"));
                }
                data.truncate(n);
                self.framing = Framing::Length(remaining - n);
                Ok(Some(data))
            }
            Framing::Eof => {
                let mut data = vec![0u8; 64 * 1024];
                let n = self.reader.read(&mut data).map_err(|e| format!("reading the body: {e}"))?;
                if n == 0 {
                    self.finished = true;
                    return Ok(None);
                }
                data.truncate(n);
                Ok(Some(data))
            }
        }
    }

    /// The whole body, or why it broke off (with what had arrived).
    pub fn read_all(&mut self) -> Result<Vec<u8>, (String, Vec<u8>)> {
        let mut all = Vec::new();
        loop {
            match self.next_piece() {
                Ok(Some(p)) => all.extend_from_slice(&p),
                Ok(None) => return Ok(all),
                Err(e) => return Err((e, all)),
            }
        }
    }
}

/// The status code of a plain-HTTP `GET url` (`http://host:port/path`; no TLS).
pub fn get_status(url: &str, timeout: Duration) -> std::io::Result<u16> {
    let invalid = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, what);
    let rest =
        url.strip_prefix("http://").ok_or_else(|| invalid("only http:// URLs are supported".into()))?;
    let (authority, path) =
        rest.split_once('/').map_or((rest, "/".to_owned()), |(a, p)| (a, format!("/{p}")));
    let addr = authority
        .to_socket_addrs()
        .map_err(|e| invalid(format!("cannot resolve {authority}: {e}")))?
        .next()
        .ok_or_else(|| invalid(format!("no address for {authority}")))?;
    Ok(request(addr, "GET", &path, &[], None, Timeouts::all(timeout))?.status)
}
