//! Helpers for tests against the real server binary (`target/debug/wecare-rt`,
//! or `WECARE_RT_BIN`; build it with `cargo build -p wecare-cli`).
#![allow(dead_code, unreachable_pub)]

pub mod certs;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::Value;
use wecare_client::{TokenError, TokenProvider};

/// Upper bound for anything that should happen promptly; only fails a hung test.
pub const PATIENCE: Duration = Duration::from_secs(20);
pub const SECRET: &str = "test-secret-for-client-sdk";

pub fn binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("WECARE_RT_BIN") {
        return PathBuf::from(bin);
    }
    let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/debug/wecare-rt");
    assert!(bin.exists(), "{} is missing: run `cargo build -p wecare-cli` (or set WECARE_RT_BIN)", bin.display());
    bin
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// A running `wecare-rt serve`; SIGKILLed when dropped.
pub struct TestServer {
    child: Option<Child>,
    pub port: u16,
    pub url: String,
    pub data_dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    pub async fn start_with(env: &[(&str, &str)]) -> Self {
        let port = free_port();
        let mut server = TestServer {
            child: None,
            port,
            url: format!("http://127.0.0.1:{port}"),
            data_dir: tempfile::tempdir().expect("tempdir"),
            env: env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        };
        server.spawn().await;
        server
    }

    async fn spawn(&mut self) {
        let mut cmd = Command::new(binary());
        cmd.arg("serve")
            .env("PORT", self.port.to_string())
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
        self.child = Some(cmd.spawn().expect("spawn wecare-rt"));
        let url = self.url.clone();
        let ready = tokio::task::spawn_blocking(move || {
            let deadline = std::time::Instant::now() + PATIENCE;
            while std::time::Instant::now() < deadline {
                if http_get(&url, "/healthz", None).is_ok_and(|(status, _)| status == 200) {
                    return true;
                }
                // Polling for readiness: the process has no event to await.
                std::thread::sleep(Duration::from_millis(20));
            }
            false
        })
        .await
        .expect("readiness task");
        assert!(ready, "server did not become healthy");
    }

    /// SIGKILL: no graceful shutdown, no flush.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and data dir.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    pub fn token(&self, role: &str, user: &str) -> String {
        mint(role, user)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill();
    }
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

/// A blocking GET over loopback; (status, body).
pub fn http_get(url: &str, path: &str, token: Option<&str>) -> std::io::Result<(u16, Value)> {
    let addr = url.trim_start_matches("http://");
    let mut tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(PATIENCE))?;
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(tcp, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}\r\n")?;
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
    let body = if chunked { dechunk(body) } else { body.to_owned() };
    Ok((status, serde_json::from_str(&body).unwrap_or(Value::Null)))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Every `location:updated` event in the stream, in seq order.
pub async fn all_location_events(url: &str) -> Vec<Value> {
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || {
        let token = mint("officer", "officer-1");
        let mut since = 0;
        let mut out = Vec::new();
        loop {
            let (status, page) =
                http_get(&url, &format!("/api/realtime/events?since={since}&limit=1000"), Some(&token))
                    .expect("events");
            assert_eq!(status, 200, "{page}");
            let events = page["events"].as_array().cloned().unwrap_or_default();
            if events.is_empty() {
                return out;
            }
            for ev in events {
                since = ev["seq"].as_u64().expect("seq");
                if ev["type"] == "location:updated" {
                    out.push(ev);
                }
            }
        }
    })
    .await
    .expect("events task")
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
