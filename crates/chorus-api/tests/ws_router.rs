//! `GET /tts/websocket` mounted in the full API router: authentication of the handshake, and a [`WsConfig`]
//! layered on top as `chorus serve` does.
#![allow(clippy::unwrap_used)]

mod ws_support;

use std::time::Duration;

use axum::Extension;
use chorus_api::ws::WsConfig;
use chorus_api::{ApiConfig, ApiKeys};
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use ws_support::{Client, of, request, serve, test_state_with, types};

async fn keyed_server(config: WsConfig) -> std::net::SocketAddr {
    let api = ApiConfig { api_keys: ApiKeys::new(vec!["secret".into()]), ..ApiConfig::default() };
    let (state, _journal) = test_state_with(api);
    serve(chorus_api::router(state).layer(Extension(config))).await
}

#[tokio::test]
async fn handshake_needs_a_key() {
    let addr = keyed_server(WsConfig::default()).await;
    match tokio_tungstenite::connect_async(format!("ws://{addr}/tts/websocket")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 401),
        other => panic!("handshake without a key: {other:?}"),
    }
}

#[tokio::test]
async fn key_in_the_query_or_a_bearer_header() {
    let addr = keyed_server(WsConfig::default()).await;
    // Browsers: query parameters.
    let (ws, response) = tokio_tungstenite::connect_async(format!(
        "ws://{addr}/tts/websocket?api_key=secret&cartesia_version=2026-08-14"
    ))
    .await
    .unwrap();
    assert!(response.headers().get("x-request-id").is_some());
    let mut client = Client { ws };
    client.send(request("q", "query", false)).await;
    assert_eq!(types(&of(&client.recv_until_end("q").await, "q")), ["chunk", "done"]);

    // The SDKs: headers.
    let mut req = format!("ws://{addr}/tts/websocket").into_client_request().unwrap();
    req.headers_mut().insert("authorization", "Bearer secret".parse().unwrap());
    req.headers_mut().insert("cartesia-version", "2026-08-14".parse().unwrap());
    let (ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let mut client = Client { ws };
    client.send(request("h", "header", false)).await;
    assert_eq!(types(&of(&client.recv_until_end("h").await, "h")), ["chunk", "done"]);
}

#[tokio::test]
async fn layered_config_applies() {
    let addr =
        keyed_server(WsConfig { idle_timeout: Duration::from_millis(200), ..WsConfig::default() }).await;
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/tts/websocket?access_token=secret"))
        .await
        .unwrap();
    let mut client = Client { ws };
    let frame = client.expect_close(Duration::from_secs(3)).await.expect("a close frame");
    assert_eq!(u16::from(frame.code), 1000);
}
