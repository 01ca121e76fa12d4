//! Helpers for tests against the real server binary (`target/debug/wecare-rt`,
//! or `WECARE_RT_BIN`; build it with `cargo build -p wecare-cli`), started
//! by the harness the CLI's tests share ([`wecare_client::testing::server`]).
#![allow(dead_code, unreachable_pub)]

pub mod certs;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;
pub use wecare_client::testing::server::{self, PATIENCE, ServerProcess};
use wecare_client::{TokenError, TokenProvider};

pub const SECRET: &str = "test-secret-for-client-sdk";

pub fn binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("WECARE_RT_BIN") {
        return PathBuf::from(bin);
    }
    let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/debug/wecare-rt");
    assert!(bin.exists(), "{} is missing: run `cargo build -p wecare-cli` (or set WECARE_RT_BIN)", bin.display());
    bin
}

/// The real server (`wecare-rt serve`, see [`binary`]); SIGKILLed when dropped.
pub type TestServer = ServerProcess;

pub async fn start_server() -> TestServer {
    start_server_with(&[]).await
}

pub async fn start_server_with(env: &[(&str, &str)]) -> TestServer {
    ServerProcess::start(binary(), SECRET, env).await
}

pub fn mint(role: &str, user: &str) -> String {
    let out = Command::new(binary())
        .args(["token", "--role", role, "--user-id", user, "--driver-id", user, "--ttl", "3600"])
        .env("JWT_SECRET", SECRET)
        .output()
        .expect("run wecare-rt token");
    assert!(out.status.success(), "token: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8").trim().to_owned()
}

/// A provider that hands out `token` and counts its calls.
pub fn counting_provider(token: String) -> (impl TokenProvider, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let provider = move || {
        counter.fetch_add(1, Ordering::SeqCst);
        let token = token.clone();
        async move { Ok::<_, TokenError>(token) }
    };
    (provider, calls)
}

/// Every `location:updated` event in the stream, in seq order.
pub async fn all_location_events(addr: SocketAddr) -> Vec<Value> {
    let events = server::stored_events(addr, &mint("officer", "officer-1")).await;
    events.into_iter().filter(|ev| ev["type"] == "location:updated").collect()
}

/// Waits until `cond` holds for the watched value.
pub async fn wait_for<T: Clone>(
    rx: &mut tokio::sync::watch::Receiver<T>,
    what: &str,
    cond: impl FnMut(&T) -> bool,
) -> T {
    match tokio::time::timeout(PATIENCE, rx.wait_for(cond)).await {
        Ok(Ok(v)) => v.clone(),
        Ok(Err(_)) => panic!("state channel closed while waiting for {what}"),
        Err(_) => panic!("timed out waiting for {what}"),
    }
}
