//! The calibration of the durable-maximum benchmark (issue 17): the
//! thinnest socketioxide server the bench can drive — `/locations`, no
//! storage, no token check, no validation. A socket whose token says
//! `officer` or `admin` joins the watchers' room and gets an empty
//! `drivers:snapshot`; a `location:update` is acked with the next `seq` and
//! broadcast to the room as `{seq, id, driverId, lat, lng}`.
//! `scripts/bench-durable-max.sh` runs the same open-loop steps against it
//! and against `wecare-rt serve`, and prints the ratio.
//!
//! ```sh
//! cargo run --release -p wecare-server --example bare_fanout -- 127.0.0.1:3200
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};
use socketioxide::SocketIo;
use socketioxide::extract::{AckSender, Data, SocketRef, State};

const WATCHERS: &str = "watchers";

/// The role claim of a JWT, read without checking it (no checks here).
fn role(auth: &Value) -> Option<String> {
    use base64::Engine as _;
    let token = auth.get("token")?.as_str()?;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("role")?.as_str().map(str::to_owned)
}

async fn on_connect(s: SocketRef, Data(auth): Data<Value>) {
    if matches!(role(&auth).as_deref(), Some("officer" | "admin")) {
        s.join(WATCHERS);
        let _ = s.emit("drivers:snapshot", &json!({"seq": 0, "drivers": []}));
        return;
    }
    s.on("location:update", on_fix);
}

async fn on_fix(s: SocketRef, Data(fix): Data<Value>, State(seq): State<Arc<AtomicU64>>, ack: AckSender) {
    let n = seq.fetch_add(1, Ordering::Relaxed) + 1;
    // The contract's ack shape (the bench reads it typed); the time is fixed:
    // the calibration is the fan-out stack's cost, not a clock's.
    let timestamp = "1970-01-01T00:00:00.000Z";
    let _ = ack.send(&json!({"status": "ok", "id": fix["id"], "seq": n, "timestamp": timestamp, "duplicate": false}));
    let update = json!({"seq": n, "id": fix["id"], "driverId": "bare", "lat": fix["lat"], "lng": fix["lng"]});
    let _ = s.broadcast().to(WATCHERS).emit("location:updated", &update).await;
}

#[tokio::main]
async fn main() {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:3200".into());
    let seq = Arc::new(AtomicU64::new(0));
    let (layer, io) = SocketIo::builder().with_state(seq).build_layer();
    io.ns("/locations", on_connect);
    let app = axum::Router::new().layer(layer);
    let listener = tokio::net::TcpListener::bind(&addr).await.expect("binding the address");
    eprintln!("bare fan-out listening on {addr}");
    axum::serve(listener, app).await.expect("serving");
}
