//! The WebSocket handshake when the client offers permessage-deflate: axum's `WebSocketUpgrade` cannot put a layer
//! under tungstenite, so this answers the handshake itself (RFC 6455 §4.2.2, plus the extension's response header)
//! and runs tungstenite over [`Deflate`], presenting the socket as axum messages to the protocol code.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::body::Body;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tungstenite::protocol::{Role, WebSocketConfig};

use super::deflate::{Deflate, Negotiated};

/// Why a request is not a valid WebSocket handshake.
#[derive(Debug)]
pub(crate) struct BadHandshake {
    pub status: StatusCode,
    pub message: &'static str,
}

/// Checks the handshake headers and returns the `Sec-WebSocket-Accept` value.
pub(crate) fn accept_key(headers: &HeaderMap) -> Result<String, BadHandshake> {
    let has_token = |name: header::HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    let bad = |message| BadHandshake { status: StatusCode::BAD_REQUEST, message };
    if !has_token(header::CONNECTION, "upgrade") {
        return Err(bad("Connection header did not include 'upgrade'"));
    }
    if !has_token(header::UPGRADE, "websocket") {
        return Err(bad("`Upgrade` header did not include 'websocket'"));
    }
    if headers.get(header::SEC_WEBSOCKET_VERSION).is_none_or(|v| v.as_bytes() != b"13") {
        return Err(bad("`Sec-WebSocket-Version` header did not include '13'"));
    }
    let key =
        headers.get(header::SEC_WEBSOCKET_KEY).ok_or_else(|| bad("`Sec-WebSocket-Key` header missing"))?;
    Ok(tungstenite::handshake::derive_accept_key(key.as_bytes()))
}

/// The `101 Switching Protocols` answer.
pub(crate) fn switching(accept: &str, negotiated: &Negotiated) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = response.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(v) = HeaderValue::from_str(accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    if let Ok(v) = HeaderValue::from_str(&negotiated.response) {
        h.insert(header::SEC_WEBSOCKET_EXTENSIONS, v);
    }
    response
}

/// tungstenite over `io` with permessage-deflate, as axum messages.
pub(crate) async fn socket<S>(io: S, negotiated: &Negotiated, max_message: usize) -> DeflatedSocket<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let config =
        WebSocketConfig::default().max_message_size(Some(max_message)).max_frame_size(Some(max_message));
    let io = Deflate::new(io, negotiated, max_message);
    DeflatedSocket(WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await)
}

/// A server socket with permessage-deflate: the same messages and errors as axum's `WebSocket`.
pub(crate) struct DeflatedSocket<S>(WebSocketStream<Deflate<S>>);

impl<S> std::fmt::Debug for DeflatedSocket<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeflatedSocket").finish_non_exhaustive()
    }
}

fn from_tungstenite(message: tungstenite::Message) -> Option<Message> {
    use tungstenite::Message as T;
    Some(match message {
        T::Text(t) => Message::Text(Utf8Bytes::try_from(bytes::Bytes::from(t)).ok()?),
        T::Binary(b) => Message::Binary(b),
        T::Ping(b) => Message::Ping(b),
        T::Pong(b) => Message::Pong(b),
        T::Close(frame) => Message::Close(
            frame.map(|f| CloseFrame { code: f.code.into(), reason: Utf8Bytes::from(f.reason.as_str()) }),
        ),
        T::Frame(_) => return None,
    })
}

fn into_tungstenite(message: Message) -> tungstenite::Message {
    use tungstenite::Message as T;
    let text = |t: Utf8Bytes| tungstenite::Utf8Bytes::try_from(bytes::Bytes::from(t)).unwrap_or_default();
    match message {
        Message::Text(t) => T::Text(text(t)),
        Message::Binary(b) => T::Binary(b),
        Message::Ping(b) => T::Ping(b),
        Message::Pong(b) => T::Pong(b),
        Message::Close(frame) => T::Close(
            frame.map(|f| tungstenite::protocol::CloseFrame { code: f.code.into(), reason: text(f.reason) }),
        ),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Stream for DeflatedSocket<S> {
    type Item = Result<Message, axum::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            match ready!(Pin::new(&mut self.0).poll_next(cx)) {
                Some(Ok(m)) => {
                    if let Some(m) = from_tungstenite(m) {
                        return Poll::Ready(Some(Ok(m)));
                    }
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(axum::Error::new(e)))),
                None => return Poll::Ready(None),
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Sink<Message> for DeflatedSocket<S> {
    type Error = axum::Error;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.0).poll_ready(cx).map_err(axum::Error::new)
    }

    fn start_send(mut self: Pin<&mut Self>, item: Message) -> Result<(), Self::Error> {
        Pin::new(&mut self.0).start_send(into_tungstenite(item)).map_err(axum::Error::new)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.0).poll_flush(cx).map_err(axum::Error::new)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.0).poll_close(cx).map_err(axum::Error::new)
    }
}
