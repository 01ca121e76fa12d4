//! Shared by the CLI's integration tests: the real `wecare-rt serve` on a
//! free loopback port with its own data folder, tokens, raw HTTP reads; for
//! the cluster tests ([`cluster`]) nodes on one PostgreSQL database, a
//! round-robin TCP balancer and a watcher that checks what the server sends.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

pub mod balancer;
pub mod cluster;
pub mod strict_watcher;

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const SECRET: &str = "cli-faults-secret";
/// Upper bound for anything that should happen promptly; only fails a hung test.
pub const PATIENCE: Duration = Duration::from_secs(30);

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

/// A running `wecare-rt serve`; SIGKILLed when dropped.
pub struct Server {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub url: String,
    pub data_dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl Server {
    pub async fn start(env: &[(&str, &str)]) -> Server {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut server = Server {
            child: None,
            addr,
            url: format!("http://{addr}"),
            data_dir: tempfile::tempdir().unwrap(),
            env: env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        };
        server.spawn().await;
        server
    }

    async fn spawn(&mut self) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wecare-rt"));
        cmd.arg("serve")
            .env("PORT", self.addr.port().to_string())
            .env("HOST", "127.0.0.1")
            .env("DATA_DIR", self.data_dir.path())
            .env("JWT_SECRET", SECRET)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().expect("spawn wecare-rt serve"));
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Some((200, _)) = get(self.addr, "/healthz", "-").await {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "server did not become healthy");
            // Readiness of another process has no event to await: poll.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL: no graceful shutdown, no flush.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGKILL, then start again on the same port and data folder.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    /// SIGTERM, then waits (bounded) for the graceful shutdown to finish.
    pub async fn terminate(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let sent = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -TERM");
        let exited = tokio::task::spawn_blocking(move || {
            let deadline = std::time::Instant::now() + PATIENCE;
            // A child's exit has no async event in std: poll it.
            while std::time::Instant::now() < deadline {
                if child.try_wait().unwrap().is_some() {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
            false
        });
        assert!(exited.await.unwrap(), "the server did not stop within {PATIENCE:?} of SIGTERM");
    }

    /// Starts a stopped server again (same port, data folder and settings).
    pub async fn start_again(&mut self) {
        assert!(self.child.is_none(), "the server is still running");
        self.spawn().await;
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One GET over loopback: (status, JSON body).
pub async fn get(addr: SocketAddr, path: &str, bearer: &str) -> Option<(u16, Value)> {
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {bearer}\r\nConnection: close\r\n\r\n");
    request(addr, req).await
}

/// One POST of a JSON body over loopback: (status, JSON body).
pub async fn post(addr: SocketAddr, path: &str, bearer: &str, body: &Value) -> Option<(u16, Value)> {
    let body = body.to_string();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {bearer}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    request(addr, req).await
}

async fn request(addr: SocketAddr, req: String) -> Option<(u16, Value)> {
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(req.as_bytes()).await.ok()?;
    let mut raw = Vec::new();
    tokio::time::timeout(PATIENCE, s.read_to_end(&mut raw)).await.ok()?.ok()?;
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, serde_json::from_str(body).unwrap_or(Value::Null)))
}

/// Every `location:updated` the server stored, in `seq` order, read as a
/// watcher through `GET /api/realtime/events` pages.
pub async fn stored_locations(addr: SocketAddr) -> Vec<Value> {
    stored_events(addr).await.into_iter().filter(|ev| ev["type"] == "location:updated").collect()
}

/// Every event of the stream (`{type, seq, ...}`), in `seq` order, read as
/// a watcher through `GET /api/realtime/events` pages.
pub async fn stored_events(addr: SocketAddr) -> Vec<Value> {
    let bearer = token("officer", "auditor", 600);
    let mut since = 0u64;
    let mut out = Vec::new();
    loop {
        let (status, page) =
            get(addr, &format!("/api/realtime/events?since={since}&limit=1000"), &bearer).await.expect("events page");
        assert_eq!(status, 200, "{page}");
        let events = page["events"].as_array().cloned().unwrap_or_default();
        if events.is_empty() {
            return out;
        }
        for ev in events {
            since = ev["seq"].as_u64().expect("seq");
            out.push(ev);
        }
    }
}

/// Polls `cond` until it holds, for conditions no event announces (another
/// process's state); fails the test after `limit`.
pub async fn wait_until<F, Fut>(what: &str, limit: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if cond().await {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
