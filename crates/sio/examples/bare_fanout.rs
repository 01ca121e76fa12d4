//! The calibration of the durable-maximum benchmark (issue 17): the
//! thinnest server the bench can drive on our own Socket.IO layer —
//! `/locations`, no storage, no token check, no validation. A socket whose
//! token says `officer` or `admin` is a watcher and gets an empty
//! `drivers:snapshot`; a `location:update` is acked with the next `seq` and
//! sent to every watcher as `{seq, id, driverId, lat, lng}`, encoded once.
//! `scripts/bench-durable-max.sh` runs the same open-loop steps against it
//! and against `wecare-rt serve`, and prints the ratio.
//!
//! ```sh
//! cargo run --release -p wecare-sio --example bare_fanout -- 127.0.0.1:3200
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/serve.rs"]
mod serve;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use wecare_sio::{Config, Connected, DisconnectReason, Handshake, Incoming, Namespace, Refusal, Socket};

/// The role claim of a JWT, read without checking it (no checks here).
fn role(auth: &Value) -> Option<String> {
    use base64::Engine as _;
    let token = auth.get("token")?.as_str()?;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("role")?.as_str().map(str::to_owned)
}

/// The allocator `wecare-rt` runs on, so the calibration differs from it
/// only in what it leaves out.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Default)]
struct Bare {
    seq: AtomicU64,
    watchers: Mutex<Vec<Socket<bool>>>,
}

impl Namespace for Bare {
    /// Whether the socket is a watcher.
    type Data = bool;

    #[allow(clippy::manual_async_fn)]
    fn connect(
        &self,
        _socket: Socket<bool>,
        handshake: Handshake,
    ) -> impl Future<Output = Result<Connected<bool>, Refusal>> + Send + 'static {
        async move {
            let auth: Value = handshake.auth.and_then(|a| serde_json::from_str(a.get()).ok()).unwrap_or(Value::Null);
            let watcher = matches!(role(&auth).as_deref(), Some("officer" | "admin"));
            Ok(Connected { data: watcher, pid: None })
        }
    }

    fn joined(&self, socket: &Socket<bool>) {
        if socket.data() == Some(&true) {
            let _ = socket.emit("drivers:snapshot", &json!({"seq": 0, "drivers": []}));
            self.watchers.lock().unwrap().push(socket.clone());
        }
    }

    fn event(&self, socket: &Socket<bool>, event: Incoming<'_>) {
        if event.name != "location:update" {
            return;
        }
        let fix: Value = event.data.and_then(|d| serde_json::from_str(d).ok()).unwrap_or(Value::Null);
        let n = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(id) = event.ack_id {
            // The contract's ack shape (the bench reads it typed); the time
            // is fixed: the calibration is the stack's cost, not a clock's.
            let timestamp = "1970-01-01T00:00:00.000Z";
            let ack = json!({"status": "ok", "id": fix["id"], "seq": n, "timestamp": timestamp, "duplicate": false});
            let _ = socket.ack(id, &ack);
        }
        let update = json!({"seq": n, "id": fix["id"], "driverId": "bare", "lat": fix["lat"], "lng": fix["lng"]});
        let frame = socket.event_frame("location:updated", &update.to_string());
        for w in self.watchers.lock().unwrap().iter() {
            let _ = w.emit_frame(frame.clone());
        }
    }

    fn disconnect(&self, socket: &Socket<bool>, _reason: DisconnectReason) {
        self.watchers.lock().unwrap().retain(|w| w.id() != socket.id());
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:3200".into());
    let config = Config { namespace: "/locations".into(), ..Config::default() };
    let server = wecare_sio::Server::new(config, Arc::new(Bare::default()));
    eprintln!("bare fan-out listening on {addr}");
    serve::serve(&addr, server, || async { String::new() }).await
}
