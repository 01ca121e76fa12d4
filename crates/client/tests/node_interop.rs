//! The client against the official Node `socket.io` server
//! (`tests/node-echo/server.js`, version pinned in its `package-lock.json`).
//!
//! Each test starts its own server on a port the OS picks. `npm ci` runs once
//! when `node_modules` is missing; the tests are skipped, with a message,
//! only when `node` itself is not installed.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use futures_util::future::{join, join_all};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::timeout;
use wecare_client::{ClientError, ConnectOptions, EventMode, ServerEvent, SocketClient};

/// Upper bound for anything that should happen promptly; it only exists to
/// fail a hung test.
const PATIENCE: Duration = Duration::from_secs(10);

/// Serializes `npm ci` across the tests of this binary.
static NPM_INSTALL: Mutex<()> = Mutex::new(());

fn echo_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node-echo")
}

fn node_installed() -> bool {
    Command::new("node").arg("--version").output().is_ok_and(|out| out.status.success())
}

fn ensure_node_modules() {
    let _guard = NPM_INSTALL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = echo_dir();
    if dir.join("node_modules/socket.io/package.json").exists() {
        return;
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&dir)
        .status()
        .expect("node is installed but npm could not be run");
    assert!(status.success(), "npm ci failed in {}", dir.display());
}

/// A running echo server; killed when dropped.
struct NodeServer {
    child: Child,
    url: String,
}

impl NodeServer {
    /// Starts a server with the default heartbeat; `None` when node is missing.
    async fn start() -> Option<Self> {
        Self::start_with_heartbeat(25_000, 20_000).await
    }

    async fn start_with_heartbeat(ping_interval_ms: u64, ping_timeout_ms: u64) -> Option<Self> {
        if !node_installed() {
            eprintln!("skipping node interop test: `node` is not installed");
            return None;
        }
        tokio::task::spawn_blocking(ensure_node_modules).await.expect("npm ci task panicked");
        let mut child = Command::new("node")
            .arg("server.js")
            .current_dir(echo_dir())
            .env("PORT", "0")
            .env("PING_INTERVAL_MS", ping_interval_ms.to_string())
            .env("PING_TIMEOUT_MS", ping_timeout_ms.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn node");
        let stdout = child.stdout.take().expect("stdout is piped");
        let first_line = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).map(|_| line)
        });
        let line = timeout(Duration::from_secs(30), first_line)
            .await
            .expect("node server did not start listening")
            .expect("reader task panicked")
            .expect("read node stdout");
        let port: u16 = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected node output {line:?}"));
        Some(Self { child, url: format!("http://127.0.0.1:{port}") })
    }

    fn options(&self, token: &str) -> ConnectOptions {
        ConnectOptions::new(&self.url, "/locations", json!({ "token": token }))
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill").args([signal, &self.child.id().to_string()]).status().expect("run kill");
        assert!(status.success(), "kill {signal} failed");
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NodeServer {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn connect(server: &NodeServer) -> (SocketClient, mpsc::Receiver<ServerEvent>) {
    timeout(PATIENCE, SocketClient::connect(server.options("good"))).await.expect("connect hung").expect("connect")
}

/// The next event named `name`, skipping others; panics on disconnect.
async fn next_named(events: &mut mpsc::Receiver<ServerEvent>, name: &str) -> Value {
    loop {
        let event = timeout(PATIENCE, events.recv())
            .await
            .unwrap_or_else(|_| panic!("no {name:?} event in time"))
            .expect("event channel closed");
        match event {
            ServerEvent::Event { name: n, data } if n == name => return data,
            ServerEvent::Disconnected { reason } => panic!("disconnected: {reason}"),
            _ => {}
        }
    }
}

/// The reason of the next `Disconnected`, skipping events.
async fn disconnect_reason(events: &mut mpsc::Receiver<ServerEvent>) -> String {
    loop {
        let event = timeout(PATIENCE, events.recv())
            .await
            .expect("no disconnect in time")
            .expect("channel closed without Disconnected");
        if let ServerEvent::Disconnected { reason } = event {
            return reason;
        }
    }
}

#[tokio::test]
async fn connect_sends_auth_query_and_headers() {
    let Some(server) = NodeServer::start().await else {
        return;
    };
    let mut opts = server.options("good");
    opts.query.push(("token".into(), "q t&x".into()));
    opts.extra_headers.push(("Origin".into(), "http://localhost:5173".into()));
    let (client, _events) = SocketClient::connect(opts).await.expect("connect");
    assert!(client.is_connected());
    assert!(!client.sid().is_empty());
    let who = client.emit_with_ack("whoami", &Value::Null, PATIENCE).await.expect("whoami ack");
    assert_eq!(who["auth"], json!({ "token": "good" }));
    assert_eq!(who["query"]["token"], "q t&x");
    assert_eq!(who["query"]["EIO"], "4");
    assert_eq!(who["headers"]["origin"], "http://localhost:5173");
    client.close().await;
    assert!(!client.is_connected());
}

#[tokio::test]
async fn rejected_handshake_reports_the_connect_error_message() {
    let Some(server) = NodeServer::start().await else {
        return;
    };
    let result = SocketClient::connect(server.options("bad")).await;
    match result {
        Err(ClientError::ConnectRefused { message }) => assert_eq!(message, "Invalid token"),
        other => panic!("expected ConnectRefused, got {other:?}"),
    }
}

#[tokio::test]
async fn concurrent_acks_are_matched_to_their_replies() {
    let Some(server) = NodeServer::start().await else {
        return;
    };
    let (client, _events) = connect(&server).await;
    let calls = (0..2000).map(|i| {
        let client = client.clone();
        async move {
            let data = json!({ "i": i, "pad": "x".repeat(i % 97) });
            let reply = client.emit_with_ack("echo", &data, PATIENCE).await;
            (data, reply)
        }
    });
    let results = timeout(PATIENCE * 3, join_all(calls)).await.expect("acks hung");
    assert_eq!(results.len(), 2000);
    for (data, reply) in results {
        assert_eq!(reply.expect("echo ack"), data);
    }
    // Raw pre-serialized payloads take the same path.
    let reply = client.emit_raw_with_ack("echo", r#"{"raw":true}"#, PATIENCE).await.expect("raw echo ack");
    assert_eq!(reply, json!({ "raw": true }));
}

#[tokio::test]
async fn server_push_is_received_parsed_and_raw() {
    let Some(server) = NodeServer::start().await else {
        return;
    };
    let (client, mut events) = connect(&server).await;
    client.emit("push", &json!({ "n": 1, "s": "é\"" })).await.expect("emit push");
    assert_eq!(next_named(&mut events, "pushed").await, json!({ "n": 1, "s": "é\"" }));

    let mut opts = server.options("good");
    opts.event_mode = EventMode::Raw;
    let (raw_client, mut raw_events) = SocketClient::connect(opts).await.expect("connect raw");
    raw_client.emit_raw("push", r#"{"id":"u-7","seq":3}"#).await.expect("emit raw push");
    let event = timeout(PATIENCE, raw_events.recv()).await.expect("no raw event in time").expect("channel open");
    let ServerEvent::Raw(raw) = event else {
        panic!("expected a raw event, got {event:?}");
    };
    assert_eq!(raw.name(), "pushed");
    #[derive(serde::Deserialize)]
    struct IdOnly<'a> {
        id: &'a str,
    }
    let IdOnly { id } = raw.parse_data().expect("id field");
    assert_eq!(id, "u-7");
}

#[tokio::test]
async fn unanswered_ack_times_out_and_the_socket_stays_usable() {
    let Some(server) = NodeServer::start().await else {
        return;
    };
    let (client, _events) = connect(&server).await;
    let result = client.emit_with_ack("no-reply", &json!(1), Duration::from_millis(300)).await;
    assert!(matches!(result, Err(ClientError::Timeout)), "{result:?}");
    let reply = client.emit_with_ack("echo", &json!("still here"), PATIENCE).await.expect("echo after timeout");
    assert_eq!(reply, json!("still here"));
}

#[tokio::test]
async fn killed_server_disconnects_and_fails_pending_acks() {
    let Some(mut server) = NodeServer::start().await else {
        return;
    };
    let (client, mut events) = connect(&server).await;
    let pending = join_all((0..50).map(|_| {
        let client = client.clone();
        async move { client.emit_with_ack("no-reply", &Value::Null, Duration::from_secs(60)).await }
    }));
    let kill = async {
        // Frames leave in order: once this echo is answered, the server has
        // read every `no-reply` emitted before it.
        client.emit_with_ack("echo", &Value::Null, PATIENCE).await.expect("echo before kill");
        server.kill();
    };
    let (results, ()) = timeout(PATIENCE, join(pending, kill)).await.expect("pending acks were not failed");
    for result in results {
        assert!(matches!(result, Err(ClientError::Closed)), "{result:?}");
    }
    let reason = disconnect_reason(&mut events).await;
    assert!(reason == "transport close" || reason == "transport error", "{reason}");
    assert!(!client.is_connected());
    let after = client.emit("echo", &Value::Null).await;
    assert!(matches!(after, Err(ClientError::Closed)), "{after:?}");
    assert!(timeout(PATIENCE, events.recv()).await.expect("channel closes").is_none());
}

#[tokio::test]
async fn heartbeat_is_answered_and_a_frozen_server_is_detected() {
    let Some(server) = NodeServer::start_with_heartbeat(400, 800).await else {
        return;
    };
    let (client, mut events) = connect(&server).await;
    // The server counts our pongs: three of them prove pings are answered.
    for expected in 1..=3 {
        assert_eq!(next_named(&mut events, "pong-seen").await, json!(expected));
    }
    let pending = client.emit_with_ack("no-reply", &Value::Null, Duration::from_secs(60));
    server.signal("-STOP");
    let (result, reason) =
        timeout(PATIENCE, join(pending, disconnect_reason(&mut events))).await.expect("frozen server not detected");
    server.signal("-CONT");
    assert_eq!(reason, "ping timeout");
    assert!(matches!(result, Err(ClientError::Closed)), "{result:?}");
}

#[tokio::test]
async fn server_namespace_disconnect_is_reported() {
    let Some(server) = NodeServer::start().await else {
        return;
    };
    let (client, mut events) = connect(&server).await;
    client.emit("kick", &Value::Null).await.expect("emit kick");
    assert_eq!(disconnect_reason(&mut events).await, "io server disconnect");
    assert!(!client.is_connected());
}

#[tokio::test]
async fn close_reports_a_client_disconnect() {
    let Some(server) = NodeServer::start().await else {
        return;
    };
    let (client, mut events) = connect(&server).await;
    let other = client.clone();
    client.close().await;
    assert!(!other.is_connected());
    assert_eq!(disconnect_reason(&mut events).await, "io client disconnect");
    let after = other.emit_with_ack("echo", &Value::Null, PATIENCE).await;
    assert!(matches!(after, Err(ClientError::Closed)), "{after:?}");
    // Closing again returns at once.
    timeout(PATIENCE, other.close()).await.expect("second close");
}

#[tokio::test]
async fn full_event_channel_holds_back_acks_but_not_close() {
    let Some(server) = NodeServer::start().await else {
        return;
    };
    let mut opts = server.options("good");
    opts.event_buffer = 1;
    let (client, mut events) = SocketClient::connect(opts).await.expect("connect");
    for n in 0..3 {
        client.emit("push", &json!(n)).await.expect("emit push");
    }
    // The reader is parked on the full channel, so the echo's ack (queued
    // behind the pushes) cannot be read: backpressure, not buffering.
    let held = client.emit_with_ack("echo", &Value::Null, Duration::from_millis(500)).await;
    assert!(matches!(held, Err(ClientError::Timeout)), "{held:?}");
    timeout(PATIENCE, client.close()).await.expect("close hung behind a full event channel");
    assert_eq!(next_named(&mut events, "pushed").await, json!(0));
    assert_eq!(disconnect_reason(&mut events).await, "io client disconnect");
}
