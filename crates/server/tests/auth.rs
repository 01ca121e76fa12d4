//! Tokens at the handshake and for the life of a socket.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use serde_json::json;
use std::time::Duration;
use wecare_client::{ClientError, ConnectOptions, SocketClient};

async fn refused(server: &TestServer, auth: serde_json::Value) -> String {
    match SocketClient::connect(ConnectOptions::locations(server.url(), auth)).await {
        Err(ClientError::ConnectRefused { message }) => message,
        Err(other) => panic!("unexpected error {other:?}"),
        Ok(_) => panic!("connection was accepted"),
    }
}

#[tokio::test]
async fn handshake_refusals_use_the_contract_messages() {
    let server = TestServer::start().await;
    assert_eq!(refused(&server, json!({})).await, "Authentication required");
    assert_eq!(refused(&server, json!({"token": "not.a.jwt"})).await, "Invalid token");
    let expired = token(json!({"id": 1, "role": "officer", "exp": now_secs() - 1}));
    assert_eq!(refused(&server, json!({ "token": expired })).await, "Token expired");
    let patient = token(json!({"id": 1, "role": "patient", "exp": now_secs() + 60}));
    assert_eq!(refused(&server, json!({ "token": patient })).await, "Forbidden");
    let other_key = wecare_server::dev_token("other", &json!({"id": 1, "role": "officer", "exp": now_secs() + 60}));
    assert_eq!(refused(&server, json!({ "token": other_key })).await, "Invalid token");
}

#[tokio::test]
async fn token_in_query_string_is_accepted() {
    let server = TestServer::start().await;
    let mut opts = ConnectOptions::locations(server.url(), json!({}));
    opts.query.push(("token".into(), officer_token()));
    let (_c, rx) = SocketClient::connect(opts).await.expect("query token accepted");
    assert_eq!(Events(rx).next().await.0, "drivers:snapshot");
}

#[tokio::test]
async fn socket_is_warned_then_closed_at_expiry_without_refresh() {
    let server = TestServer::start_with(|c| c.auth_expiry_warning = Duration::from_millis(1500)).await;
    let short = token(json!({"id": "o", "role": "officer", "exp": now_secs() + 2}));
    let (_c, mut ev) = server.connect(json!({ "token": short })).await;
    assert!(ev.next_named("auth:expiring").await["expiresAt"].is_string());
    assert!(ev.next_named("auth:expired").await["expiredAt"].is_string());
    assert_eq!(ev.next_named("__disconnected").await, "io server disconnect");
}

#[tokio::test]
async fn refresh_moves_expiry_and_keeps_the_socket() {
    let server = TestServer::start_with(|c| c.auth_expiry_warning = Duration::from_millis(1500)).await;
    let old_exp = now_secs() + 2;
    let (driver, mut ev) = server.connect(json!({ "token": driver_token_with_exp("amb-1", old_exp) })).await;
    ev.next_named("auth:expiring").await;
    let fresh = driver_token_with_exp("amb-1", now_secs() + 3600);
    let ack = driver.emit_with_ack("auth:refresh", &json!({ "token": fresh }), WAIT).await.unwrap();
    assert_eq!(ack["status"], "ok");
    assert!(ack["expiresAt"].is_string());
    let other = token(json!({"id": "someone-else", "role": "driver", "exp": now_secs() + 3600}));
    let refused = driver.emit_with_ack("auth:refresh", &json!({ "token": other }), WAIT).await.unwrap();
    assert_eq!(refused["code"], "FORBIDDEN", "another identity may not take over the socket");
    // No event marks "the old expiry has passed": poll the clock.
    wait_until(|| now_secs() > old_exp + 1).await;
    let ack = driver.emit_with_ack("location:update", &fix("after-old-exp", 1.0, 1.0), WAIT).await.unwrap();
    assert_eq!(ack["status"], "ok", "{ack}");
    assert!(driver.is_connected());
}

fn driver_token_with_exp(driver: &str, exp: u64) -> String {
    token(json!({"id": format!("u-{driver}"), "role": "driver", "driver_id": driver, "exp": exp}))
}

#[tokio::test]
async fn a_sixth_socket_of_one_user_closes_the_oldest() {
    let server = TestServer::start().await;
    let (_first, mut first_events) = server.watcher().await;
    first_events.next_named("drivers:snapshot").await;
    let mut others = Vec::new();
    for _ in 0..5 {
        others.push(server.watcher().await);
    }
    assert_eq!(first_events.next_named("__disconnected").await, "io server disconnect");
    for (client, _) in &others {
        assert!(client.is_connected(), "only the oldest socket is closed");
    }
}

/// A connection that never joins the namespace is closed after the
/// handshake timeout (raw Engine.IO over websocket: the SDK always joins).
#[tokio::test]
async fn a_connection_that_never_joins_is_closed_after_the_handshake_timeout() {
    use futures_util::StreamExt;
    let server = TestServer::start_with(|c| c.handshake_timeout = Duration::from_millis(300)).await;
    let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", server.addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let open = ws.next().await.unwrap().unwrap();
    assert!(open.to_text().unwrap().starts_with('0'), "Engine.IO open packet: {open}");
    let started = std::time::Instant::now();
    let closed = tokio::time::timeout(WAIT, async {
        while let Some(Ok(msg)) = ws.next().await {
            if msg.is_close() {
                break;
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the idle connection was not closed");
    assert!(started.elapsed() < Duration::from_secs(5));
}
