//! A namespace that echoes, for the layer's black-box tests with the
//! official `socket.io-client` (`tests/interop/test/sio-layer.test.mjs`):
//!
//! * join with `auth.token == "good"`, else `connect_error` "Invalid token";
//!   the CONNECT reply carries `pid` "echo-pid"; `auth.early` is emitted as
//!   `early` before the reply;
//! * `echo` → the ack carries the data (without an ack id: emitted back);
//! * `burst {n}` → `tick` 0..n, each encoded once and shared; with `pad`,
//!   each tick is `{ i, pad: "x" × pad }` (`scripts/bench-ws-retained.sh`);
//! * `bye` → the server disconnects the socket;
//! * a binary event is answered `{ "binary": true }`;
//! * `GET /stats` → `{ sessions, pending, busy, sockets, left: [reasons] }`.
//!
//! `cargo run -p wecare-sio --example echo -- PING_INTERVAL_MS PING_TIMEOUT_MS MAX_PAYLOAD CONNECT_TIMEOUT_MS [MAX_PENDING_SESSIONS [WS_WRITE_BUFFER]]`
//! prints `listening on http://ADDR` and serves until killed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
#[path = "common/serve.rs"]
mod serve;

use wecare_sio::{Config, Connected, DisconnectReason, Handshake, Incoming, Namespace, Refusal, Server, Socket};

#[derive(Debug, Default)]
struct Echo {
    left: Mutex<Vec<String>>,
    frames: std::sync::OnceLock<std::sync::Weak<Server<Echo>>>,
}

impl Namespace for Echo {
    type Data = ();

    // Not an `async fn`: the future must not borrow `self` ('static).
    #[allow(clippy::manual_async_fn)]
    fn connect(
        &self,
        socket: Socket<()>,
        handshake: Handshake,
    ) -> impl Future<Output = Result<Connected<()>, Refusal>> + Send + 'static {
        async move {
            let auth: Value = handshake.auth.and_then(|a| serde_json::from_str(a.get()).ok()).unwrap_or(Value::Null);
            if auth.get("token").and_then(Value::as_str) != Some("good") {
                return Err(Refusal { message: "Invalid token".into() });
            }
            if let Some(early) = auth.get("early") {
                let _ = socket.emit("early", early);
            }
            Ok(Connected { data: (), pid: Some("echo-pid".into()) })
        }
    }

    fn joined(&self, _socket: &Socket<()>) {}

    fn event(&self, socket: &Socket<()>, event: Incoming<'_>) {
        if event.binary {
            if let Some(id) = event.ack_id {
                let _ = socket.ack(id, &serde_json::json!({ "binary": true }));
            }
            return;
        }
        let data: Value = event.data.and_then(|d| serde_json::from_str(d).ok()).unwrap_or(Value::Null);
        match (event.name, event.ack_id) {
            ("echo", Some(id)) => {
                let _ = socket.ack(id, &data);
            }
            ("echo", None) => {
                let _ = socket.emit("echo", &data);
            }
            ("burst", _) => {
                let n = data.get("n").and_then(Value::as_u64).unwrap_or(0);
                let pad = "x".repeat(data.get("pad").and_then(Value::as_u64).unwrap_or(0).min(65_536) as usize);
                let server = self.frames.get().and_then(std::sync::Weak::upgrade);
                for i in 0..n {
                    let tick = if pad.is_empty() { i.to_string() } else { format!(r#"{{"i":{i},"pad":"{pad}"}}"#) };
                    let frame = match &server {
                        Some(s) => s.event_frame("tick", &tick),
                        None => return,
                    };
                    let _ = socket.emit_frame(frame);
                }
            }
            ("bye", _) => {
                let _ = socket.disconnect();
            }
            _ => {}
        }
    }

    fn disconnect(&self, _socket: &Socket<()>, reason: DisconnectReason) {
        self.left.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(format!("{reason:?}"));
    }
}

fn arg(n: usize, default: u64) -> u64 {
    std::env::args().nth(n).and_then(|a| a.parse().ok()).unwrap_or(default)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let config = Config {
        namespace: "/locations".into(),
        ping_interval: Duration::from_millis(arg(1, 25_000)),
        ping_timeout: Duration::from_millis(arg(2, 20_000)),
        max_payload: usize::try_from(arg(3, 1 << 20)).unwrap_or(1 << 20),
        connect_timeout: Duration::from_millis(arg(4, 45_000)),
        max_pending_sessions: usize::try_from(arg(5, 10_000)).unwrap_or(10_000),
        ws_write_buffer: usize::try_from(arg(6, 16 * 1024)).unwrap_or(16 * 1024),
        ..Config::default()
    };
    let echo = Arc::new(Echo::default());
    let server = Server::new(config, Arc::clone(&echo));
    let _ = echo.frames.set(Arc::downgrade(&server));
    let stats = {
        let (server, echo) = (Arc::clone(&server), Arc::clone(&echo));
        move || {
            let (server, echo) = (Arc::clone(&server), Arc::clone(&echo));
            async move {
                let left = echo.left.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
                serde_json::json!({
                    "sessions": server.session_count(),
                    "pending": server.pending_sessions(),
                    "busy": server.busy_refusals(),
                    "sockets": server.sockets().len(),
                    "left": left,
                })
                .to_string()
            }
        }
    };
    serve::serve("127.0.0.1:0", Arc::clone(&server), stats).await
}
