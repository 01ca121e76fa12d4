//! Shared by the CLI's integration tests: the real `wecare-rt serve`
//! ([`wecare_client::testing::server`], the SDK's tests use it too), tokens
//! signed with this suite's secret, the stream read back; for
//! the cluster tests ([`cluster`]) nodes on one PostgreSQL database, a
//! round-robin TCP balancer and a watcher that checks what the server sends.
#![allow(dead_code, unreachable_pub, unused_imports, clippy::unwrap_used)]

pub mod balancer;
pub mod cluster;
pub mod strict_watcher;

use std::net::SocketAddr;

use serde_json::{Value, json};
pub use wecare_client::testing::server::{self, PATIENCE, ServerProcess, get, post, wait_until};

pub const SECRET: &str = "cli-faults-secret";

pub fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// A token signed with [`SECRET`], valid for `ttl` seconds.
pub fn token(role: &str, subject: &str, ttl: u64) -> String {
    let now = now_secs();
    let mut claims = json!({ "id": subject, "role": role, "iat": now, "exp": now + ttl });
    if role == "driver" {
        claims["driver_id"] = json!(subject);
    }
    wecare_server::dev_token(SECRET, &claims)
}

/// The real server process (shared with the SDK's tests).
pub type Server = ServerProcess;

/// `wecare-rt serve` (this crate's binary) signed with [`SECRET`], `env` added.
pub async fn start_server(env: &[(&str, &str)]) -> Server {
    ServerProcess::start(env!("CARGO_BIN_EXE_wecare-rt"), SECRET, env).await
}

/// Every `location:updated` the server stored, in `seq` order, read as a
/// watcher through `GET /api/realtime/events` pages.
pub async fn stored_locations(addr: SocketAddr) -> Vec<Value> {
    stored_events(addr).await.into_iter().filter(|ev| ev["type"] == "location:updated").collect()
}

/// Every event of the stream (`{type, seq, ...}`), in `seq` order, read as
/// a watcher through `GET /api/realtime/events` pages.
pub async fn stored_events(addr: SocketAddr) -> Vec<Value> {
    server::stored_events(addr, &token("officer", "auditor", 600)).await
}
