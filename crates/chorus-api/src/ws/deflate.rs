//! permessage-deflate (RFC 7692) under tungstenite, which implements no extension: a byte-stream layer between the
//! upgraded connection and tungstenite that rewrites frames.
//!
//! - **In** (client to server): a message whose first frame has RSV1 set is gathered (fragments included, at most
//!   the socket's message limit), inflated (raw deflate, 15-bit window, the client's context kept across messages,
//!   the inflated size bounded by the same limit), and handed to tungstenite as one masked frame without RSV1.
//!   Uncompressed messages and control frames pass through untouched, as they arrive.
//! - **Out** (server to client): each single-frame text or binary message is deflated (fast level, a fresh context
//!   per message: `server_no_context_takeover`) and sent with RSV1; control frames and fragmented messages pass
//!   through. If the client limited the server's window below 15 bits, messages are sent uncompressed (allowed:
//!   RSV1 is per message).
//!
//! Negotiation ([`negotiate`]): the first `permessage-deflate` offer whose parameters are valid is accepted with
//! `server_no_context_takeover` (plus `server_max_window_bits` when the client asked for one).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::http::HeaderMap;
use bytes::{Buf, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What was agreed with the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Negotiated {
    /// The `Sec-WebSocket-Extensions` value of the response.
    pub response: String,
    /// Whether the server may compress (its window may be 15 bits).
    pub compress: bool,
}

/// Reads the client's offers; `None` when it offers no acceptable permessage-deflate.
pub(crate) fn negotiate(headers: &HeaderMap) -> Option<Negotiated> {
    let offers = headers
        .get_all(axum::http::header::SEC_WEBSOCKET_EXTENSIONS)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim);
    'offers: for offer in offers {
        let mut params = offer.split(';').map(str::trim);
        if !params.next().is_some_and(|name| name.eq_ignore_ascii_case("permessage-deflate")) {
            continue;
        }
        let mut server_bits: Option<u8> = None;
        let mut seen: Vec<String> = Vec::new();
        for param in params {
            let (name, value) = match param.split_once('=') {
                Some((n, v)) => (n.trim().to_ascii_lowercase(), Some(v.trim().trim_matches('"'))),
                None => (param.to_ascii_lowercase(), None),
            };
            if seen.contains(&name) {
                continue 'offers; // a parameter twice: invalid offer
            }
            seen.push(name.clone());
            match (name.as_str(), value) {
                ("server_no_context_takeover" | "client_no_context_takeover", None) => {}
                // The client may take any window we name; we name none, so it uses 15 bits (ours to inflate).
                ("client_max_window_bits", None) => {}
                ("client_max_window_bits", Some(v)) if window_bits(v).is_some() => {}
                ("server_max_window_bits", Some(v)) => match window_bits(v) {
                    Some(bits) => server_bits = Some(bits),
                    None => continue 'offers,
                },
                _ => continue 'offers,
            }
        }
        let mut response = String::from("permessage-deflate; server_no_context_takeover");
        if let Some(bits) = server_bits {
            response.push_str(&format!("; server_max_window_bits={bits}"));
        }
        return Some(Negotiated { response, compress: server_bits.is_none_or(|b| b >= 15) });
    }
    None
}

fn window_bits(v: &str) -> Option<u8> {
    v.parse::<u8>().ok().filter(|b| (8..=15).contains(b))
}

/// Messages this small are sent as they are: deflate would save little.
const MIN_COMPRESS: usize = 64;
/// Bytes read from the connection at a time.
const READ_CHUNK: usize = 16 * 1024;
/// Bytes waiting to be written beyond which writes wait for the connection.
const HIGH_WATER: usize = 256 * 1024;

const FIN: u8 = 0x80;
const RSV1: u8 = 0x40;
const MASKED: u8 = 0x80;
/// The empty deflate block that ends every compressed message (RFC 7692 §7.2.1), removed by the sender.
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// A frame header, parsed.
#[derive(Debug, Clone, Copy)]
struct Header {
    fin: bool,
    rsv1: bool,
    opcode: u8,
    mask: Option<[u8; 4]>,
    header_len: usize,
    payload_len: u64,
}

/// Parses a frame header at the start of `buf`; `None` until it is all there.
fn parse_header(buf: &[u8]) -> Option<Header> {
    let (&b0, &b1) = (buf.first()?, buf.get(1)?);
    let short = u64::from(b1 & 0x7f);
    let (payload_len, mut at) = match short {
        126 => (u64::from(u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?])), 4),
        127 => (u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?), 10),
        n => (n, 2),
    };
    let mask = if b1 & MASKED != 0 {
        let key: [u8; 4] = buf.get(at..at + 4)?.try_into().ok()?;
        at += 4;
        Some(key)
    } else {
        None
    };
    Some(Header {
        fin: b0 & FIN != 0,
        rsv1: b0 & RSV1 != 0,
        opcode: b0 & 0x0f,
        mask,
        header_len: at,
        payload_len,
    })
}

/// Writes a frame header for `len` bytes of payload.
fn write_header(out: &mut BytesMut, first: u8, mask: Option<[u8; 4]>, len: usize) {
    out.extend_from_slice(&[first]);
    let m = if mask.is_some() { MASKED } else { 0 };
    match len {
        0..=125 => out.extend_from_slice(&[m | len as u8]),
        126..=0xffff => {
            out.extend_from_slice(&[m | 126]);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.extend_from_slice(&[m | 127]);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    if let Some(key) = mask {
        out.extend_from_slice(&key);
    }
}

fn apply_mask(data: &mut [u8], key: [u8; 4]) {
    for (i, b) in data.iter_mut().enumerate() {
        *b ^= key[i % 4];
    }
}

fn invalid(message: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// A compressed message being gathered.
struct Gathering {
    opcode: u8,
    mask: [u8; 4],
    payload: Vec<u8>,
}

/// The upgraded connection with permessage-deflate applied (see the module documentation).
pub(crate) struct Deflate<S> {
    inner: S,
    max_message: usize,
    compress: bool,
    // Reading.
    raw_in: BytesMut,
    plain_in: BytesMut,
    /// Bytes of an uncompressed frame's payload still to pass through.
    passthrough: u64,
    gathering: Option<Gathering>,
    inflater: Decompress,
    eof: bool,
    // Writing.
    raw_out: BytesMut,
    wire_out: BytesMut,
    deflater: Compress,
    /// Inside a fragmented outgoing message (passed through uncompressed).
    out_fragmented: bool,
}

impl<S> std::fmt::Debug for Deflate<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deflate").field("compress", &self.compress).finish_non_exhaustive()
    }
}

impl<S> Deflate<S> {
    pub(crate) fn new(inner: S, negotiated: &Negotiated, max_message: usize) -> Self {
        Self {
            inner,
            max_message,
            compress: negotiated.compress,
            raw_in: BytesMut::new(),
            plain_in: BytesMut::new(),
            passthrough: 0,
            gathering: None,
            inflater: Decompress::new(false),
            eof: false,
            raw_out: BytesMut::new(),
            wire_out: BytesMut::new(),
            deflater: Compress::new(Compression::fast(), false),
            out_fragmented: false,
        }
    }

    /// Turns what `raw_in` holds into bytes for tungstenite, as far as it goes.
    fn process_in(&mut self) -> io::Result<()> {
        loop {
            if self.passthrough > 0 {
                if self.raw_in.is_empty() {
                    return Ok(());
                }
                let n = usize::try_from(self.passthrough).unwrap_or(usize::MAX).min(self.raw_in.len());
                let chunk = self.raw_in.split_to(n);
                self.plain_in.extend_from_slice(&chunk);
                self.passthrough -= n as u64;
                continue;
            }
            let Some(h) = parse_header(&self.raw_in) else { return Ok(()) };
            let control = h.opcode & 0x08 != 0;
            if !control && h.opcode != 0 && self.gathering.is_some() {
                return Err(invalid("a new message began inside a fragmented one"));
            }
            let compressed = h.rsv1 || (h.opcode == 0 && self.gathering.is_some());
            if control || !compressed {
                if h.rsv1 {
                    return Err(invalid("RSV1 set on a frame that cannot be compressed"));
                }
                // Pass the frame through as it comes (any size: tungstenite applies its own limits).
                let header = self.raw_in.split_to(h.header_len);
                self.plain_in.extend_from_slice(&header);
                self.passthrough = h.payload_len;
                continue;
            }
            if h.opcode == 0 && h.rsv1 {
                return Err(invalid("RSV1 set on a continuation frame"));
            }
            let Some(key) = h.mask else { return Err(invalid("a client frame must be masked")) };
            let gathered = self.gathering.as_ref().map_or(0, |g| g.payload.len());
            let total = gathered as u64 + h.payload_len;
            if total > self.max_message as u64 {
                return Err(invalid("compressed message over the size limit"));
            }
            let frame_len = h.header_len + h.payload_len as usize;
            if self.raw_in.len() < frame_len {
                self.raw_in.reserve(frame_len - self.raw_in.len());
                return Ok(());
            }
            self.raw_in.advance(h.header_len);
            let mut payload = self.raw_in.split_to(h.payload_len as usize);
            apply_mask(&mut payload, key);
            let gathering = self.gathering.get_or_insert_with(|| Gathering {
                opcode: h.opcode,
                mask: key,
                payload: Vec::new(),
            });
            gathering.payload.extend_from_slice(&payload);
            if h.fin {
                let Gathering { opcode, mask, mut payload } = self
                    .gathering
                    .take()
                    .unwrap_or_else(|| Gathering { opcode: h.opcode, mask: key, payload: Vec::new() });
                payload.extend_from_slice(&TAIL);
                let mut message = self.inflate(&payload)?;
                let len = message.len();
                apply_mask(&mut message, mask);
                write_header(&mut self.plain_in, FIN | opcode, Some(mask), len);
                self.plain_in.extend_from_slice(&message);
            }
        }
    }

    /// Inflates one message (the client's context carries on to the next), at most `max_message` bytes.
    fn inflate(&mut self, input: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity((input.len() * 3).min(self.max_message) + 64);
        let mut at = 0usize;
        loop {
            if out.len() == out.capacity() {
                if out.len() >= self.max_message {
                    return Err(invalid("inflated message over the size limit"));
                }
                out.reserve(out.len().max(1024).min(self.max_message + 1 - out.len()));
            }
            let (before_in, before_out) = (self.inflater.total_in(), out.len());
            self.inflater
                .decompress_vec(&input[at..], &mut out, FlushDecompress::Sync)
                .map_err(|_| invalid("invalid deflate data"))?;
            at += (self.inflater.total_in() - before_in) as usize;
            if out.len() > self.max_message {
                return Err(invalid("inflated message over the size limit"));
            }
            if at >= input.len() && out.len() < out.capacity() {
                return Ok(out);
            }
            if self.inflater.total_in() == before_in && out.len() == before_out && out.len() < out.capacity()
            {
                return Err(invalid("truncated deflate data"));
            }
        }
    }

    /// Turns the complete frames tungstenite wrote into wire bytes.
    fn process_out(&mut self) -> io::Result<()> {
        while let Some(h) = parse_header(&self.raw_out) {
            let frame_len =
                h.header_len + usize::try_from(h.payload_len).map_err(|_| invalid("frame too long"))?;
            if self.raw_out.len() < frame_len {
                return Ok(());
            }
            let frame = self.raw_out.split_to(frame_len);
            let data = h.opcode & 0x08 == 0;
            let single = data && h.opcode != 0 && h.fin && !self.out_fragmented;
            if data {
                if h.opcode != 0 && !h.fin {
                    self.out_fragmented = true;
                } else if h.opcode == 0 && h.fin {
                    self.out_fragmented = false;
                }
            }
            let payload = &frame[h.header_len..];
            if !(single && self.compress && payload.len() >= MIN_COMPRESS && h.mask.is_none() && !h.rsv1) {
                self.wire_out.extend_from_slice(&frame);
                continue;
            }
            let compressed = self.deflate(payload)?;
            write_header(&mut self.wire_out, FIN | RSV1 | h.opcode, None, compressed.len());
            self.wire_out.extend_from_slice(&compressed);
        }
        Ok(())
    }

    /// Deflates one message in a fresh context and drops the final empty block.
    fn deflate(&mut self, input: &[u8]) -> io::Result<Vec<u8>> {
        self.deflater.reset();
        let mut out = Vec::with_capacity(input.len() / 2 + 64);
        let mut at = 0usize;
        loop {
            if out.len() == out.capacity() {
                out.reserve(out.capacity().max(1024));
            }
            let before_in = self.deflater.total_in();
            self.deflater
                .compress_vec(&input[at..], &mut out, FlushCompress::Sync)
                .map_err(|_| invalid("deflate failed"))?;
            at += (self.deflater.total_in() - before_in) as usize;
            if at >= input.len() && out.len() < out.capacity() {
                break;
            }
        }
        if out.ends_with(&TAIL) {
            out.truncate(out.len() - TAIL.len());
        }
        Ok(out)
    }
}

impl<S: AsyncWrite + Unpin> Deflate<S> {
    /// Writes `wire_out` to the connection as far as it takes it.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.wire_out.is_empty() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.wire_out))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.wire_out.advance(n);
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Deflate<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.plain_in.is_empty() {
                let n = this.plain_in.len().min(buf.remaining());
                buf.put_slice(&this.plain_in[..n]);
                this.plain_in.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                // Whatever partial frame is left cannot complete.
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; READ_CHUNK];
            let mut read = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                this.eof = true;
                continue;
            }
            this.raw_in.extend_from_slice(read.filled());
            this.process_in()?;
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Deflate<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.wire_out.len() >= HIGH_WATER {
            ready!(this.poll_drain(cx))?;
        }
        this.raw_out.extend_from_slice(buf);
        this.process_out()?;
        // Start sending; what the connection does not take now goes on the next call or flush.
        if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn offer(v: &str) -> Option<Negotiated> {
        let mut h = HeaderMap::new();
        h.insert(axum::http::header::SEC_WEBSOCKET_EXTENSIONS, HeaderValue::from_str(v).unwrap());
        negotiate(&h)
    }

    #[test]
    fn offers() {
        let n = offer("permessage-deflate; client_max_window_bits").unwrap();
        assert_eq!(n.response, "permessage-deflate; server_no_context_takeover");
        assert!(n.compress);
        let n = offer("permessage-deflate; server_max_window_bits=10; client_no_context_takeover").unwrap();
        assert_eq!(n.response, "permessage-deflate; server_no_context_takeover; server_max_window_bits=10");
        assert!(!n.compress);
        // The first valid offer wins; invalid ones are skipped.
        let n = offer("permessage-deflate; server_max_window_bits=99, permessage-deflate").unwrap();
        assert_eq!(n.response, "permessage-deflate; server_no_context_takeover");
        assert!(offer("x-webkit-deflate-frame").is_none());
        assert!(offer("permessage-deflate; unknown_param").is_none());
        assert!(
            offer("permessage-deflate; server_no_context_takeover; server_no_context_takeover").is_none()
        );
    }

    /// A client frame: masked, compressed when `deflate` (with the client's own context).
    fn client_frame(
        compressor: &mut Compress,
        opcode: u8,
        fin: bool,
        payload: &[u8],
        deflate: bool,
    ) -> Vec<u8> {
        let mut data = if deflate {
            let mut out = Vec::with_capacity(payload.len() + 64);
            compressor.compress_vec(payload, &mut out, FlushCompress::Sync).unwrap();
            assert!(out.ends_with(&TAIL));
            out.truncate(out.len() - 4);
            out
        } else {
            payload.to_vec()
        };
        let key = [1, 2, 3, 4];
        apply_mask(&mut data, key);
        let mut frame = BytesMut::new();
        write_header(
            &mut frame,
            (if fin { FIN } else { 0 }) | (if deflate && opcode != 0 { RSV1 } else { 0 }) | opcode,
            Some(key),
            data.len(),
        );
        frame.extend_from_slice(&data);
        frame.to_vec()
    }

    #[tokio::test]
    async fn frames_are_inflated_in_and_deflated_out() {
        let negotiated = offer("permessage-deflate").unwrap();
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let mut layer = Deflate::new(server, &negotiated, 1 << 20);
        let mut comp = Compress::new(Compression::default(), false);
        let text = br#"{"transcript": "Hello there, hello there, hello there.", "continue": true}"#;
        let mut wire = client_frame(&mut comp, 1, true, text, true);
        // The same text again: the client's context carries over (a back-reference), still inflated right.
        wire.extend(client_frame(&mut comp, 1, true, text, true));
        // A fragmented compressed message with a ping between its fragments, and an uncompressed message.
        let big: Vec<u8> = (0..5000).map(|i| b"abcdefghij"[i % 10]).collect();
        let mut all = Vec::with_capacity(big.len());
        comp.compress_vec(&big, &mut all, FlushCompress::Sync).unwrap();
        all.truncate(all.len() - 4);
        let (a, b) = all.split_at(all.len() / 2);
        let mk = |first: u8, part: &[u8]| {
            let mut p = part.to_vec();
            apply_mask(&mut p, [9, 9, 9, 9]);
            let mut f = BytesMut::new();
            write_header(&mut f, first, Some([9, 9, 9, 9]), p.len());
            f.extend_from_slice(&p);
            f.to_vec()
        };
        wire.extend(mk(RSV1 | 2, a));
        wire.extend(client_frame(&mut comp, 9, true, b"ping", false));
        wire.extend(mk(FIN, b));
        wire.extend(client_frame(&mut comp, 1, true, b"plain", false));
        // Byte by byte, to exercise partial frames.
        for b in &wire {
            client.write_all(&[*b]).await.unwrap();
        }
        drop(client.shutdown().await);
        let mut seen = Vec::new();
        layer.read_to_end(&mut seen).await.unwrap();
        // What tungstenite reads: masked, RSV1 clear, one frame per message.
        let mut at = 0;
        let mut messages = Vec::new();
        while at < seen.len() {
            let h = parse_header(&seen[at..]).unwrap();
            assert!(!h.rsv1 && h.fin);
            let mut p = seen[at + h.header_len..at + h.header_len + h.payload_len as usize].to_vec();
            apply_mask(&mut p, h.mask.unwrap());
            messages.push((h.opcode, p));
            at += h.header_len + h.payload_len as usize;
        }
        assert_eq!(messages.len(), 5);
        assert_eq!(messages[0], (1, text.to_vec()));
        assert_eq!(messages[1], (1, text.to_vec()));
        assert_eq!(messages[2], (9, b"ping".to_vec()));
        assert_eq!(messages[3], (2, big.clone()));
        assert_eq!(messages[4], (1, b"plain".to_vec()));

        // Out: a big text frame from tungstenite leaves compressed (RSV1), a small one and a close as they are.
        let (mut peer, server) = tokio::io::duplex(1 << 20);
        let mut layer = Deflate::new(server, &negotiated, 1 << 20);
        let mut out = BytesMut::new();
        let body =
            r#"{"type":"chunk","data":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}"#
                .repeat(20);
        write_header(&mut out, FIN | 1, None, body.len());
        out.extend_from_slice(body.as_bytes());
        write_header(&mut out, FIN | 1, None, 2);
        out.extend_from_slice(b"{}");
        write_header(&mut out, FIN | 8, None, 2);
        out.extend_from_slice(&1000u16.to_be_bytes());
        layer.write_all(&out).await.unwrap();
        layer.flush().await.unwrap();
        drop(layer);
        let mut wire = Vec::new();
        peer.read_to_end(&mut wire).await.unwrap();
        let h = parse_header(&wire).unwrap();
        assert!(h.rsv1 && h.fin && h.opcode == 1 && h.mask.is_none());
        assert!((h.payload_len as usize) < body.len() / 4, "{} bytes compressed", h.payload_len);
        let mut inflater = Decompress::new(false);
        let mut payload = wire[h.header_len..h.header_len + h.payload_len as usize].to_vec();
        payload.extend_from_slice(&TAIL);
        let mut plain = Vec::with_capacity(body.len() + 16);
        inflater.decompress_vec(&payload, &mut plain, FlushDecompress::Sync).unwrap();
        assert_eq!(plain, body.as_bytes());
        let rest = &wire[h.header_len + h.payload_len as usize..];
        let h2 = parse_header(rest).unwrap();
        assert!(!h2.rsv1 && h2.opcode == 1 && h2.payload_len == 2);
        let h3 = parse_header(&rest[h2.header_len + 2..]).unwrap();
        assert!(!h3.rsv1 && h3.opcode == 8);
    }

    #[tokio::test]
    async fn a_deflate_bomb_is_refused() {
        let negotiated = offer("permessage-deflate").unwrap();
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let mut layer = Deflate::new(server, &negotiated, 64 * 1024);
        let mut comp = Compress::new(Compression::best(), false);
        let zeros = vec![0u8; 1 << 20];
        let wire = client_frame(&mut comp, 1, true, &zeros, true);
        assert!(wire.len() < 64 * 1024, "the compressed bomb fits the limit: {}", wire.len());
        client.write_all(&wire).await.unwrap();
        drop(client.shutdown().await);
        let mut seen = Vec::new();
        let err = layer.read_to_end(&mut seen).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
