//! The real `wecare-rt serve`, for integration tests: a child process on a
//! free loopback port with a data folder of its own, killed with SIGKILL
//! or stopped with SIGTERM, started again on the same port and data; and
//! the raw HTTP reads the tests check it with. One harness for the SDK's
//! and the CLI's tests.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Upper bound for anything that should happen promptly; only fails a hung test.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A running (or stopped) `wecare-rt serve`; SIGKILLed when dropped.
#[derive(Debug)]
pub struct ServerProcess {
    child: Option<Child>,
    /// Where it listens (127.0.0.1, a port that was free at the start).
    pub addr: SocketAddr,
    /// `http://` + [`ServerProcess::addr`].
    pub url: String,
    /// Its `DATA_DIR`, kept across restarts, removed when dropped.
    pub data_dir: tempfile::TempDir,
    bin: PathBuf,
    env: Vec<(String, String)>,
}

impl ServerProcess {
    /// Starts `bin serve` with `JWT_SECRET=secret` and `env` (which may
    /// override anything), and waits until `/healthz` answers.
    ///
    /// # Panics
    /// No free port or temporary folder, the binary does not start, or it
    /// is not healthy within [`PATIENCE`].
    pub async fn start(bin: impl Into<PathBuf>, secret: &str, env: &[(&str, &str)]) -> Self {
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut all = vec![("JWT_SECRET".to_owned(), secret.to_owned())];
        all.extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let mut server = Self {
            child: None,
            addr,
            url: format!("http://{addr}"),
            data_dir: tempfile::tempdir().expect("a temporary data folder"),
            bin: bin.into(),
            env: all,
        };
        server.spawn().await;
        server
    }

    async fn spawn(&mut self) {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("serve")
            .env("PORT", self.addr.port().to_string())
            .env("HOST", "127.0.0.1")
            .env("DATA_DIR", self.data_dir.path())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap_or_else(|e| panic!("starting {}: {e}", self.bin.display()));
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            // Ours, not another process on a port that was free a moment ago.
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("the server exited before it was healthy ({status}); is port {} taken?", self.addr.port());
            }
            if let Some((200, _)) = get(self.addr, "/healthz", "-").await {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "the server did not become healthy");
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
    ///
    /// # Panics
    /// The signal cannot be sent, or the process is still running
    /// [`PATIENCE`] later.
    pub async fn terminate(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let sent = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -TERM");
        let exited = tokio::task::spawn_blocking(move || {
            let deadline = std::time::Instant::now() + PATIENCE;
            // A child's exit has no async event in std: poll it.
            while std::time::Instant::now() < deadline {
                if child.try_wait().is_ok_and(|status| status.is_some()) {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
            false
        });
        assert!(exited.await.unwrap_or(false), "the server did not stop within {PATIENCE:?} of SIGTERM");
    }

    /// Starts a stopped server again (same port, data folder and settings).
    ///
    /// # Panics
    /// It is still running.
    pub async fn start_again(&mut self) {
        assert!(self.child.is_none(), "the server is still running");
        self.spawn().await;
    }

    /// Not killed or terminated.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One GET over loopback: (status, body; see [`http`]).
pub async fn get(addr: SocketAddr, path: &str, bearer: &str) -> Option<(u16, Value)> {
    http(addr, "GET", path, Some(bearer), None).await
}

/// One POST of a JSON body over loopback: (status, body; see [`http`]).
pub async fn post(addr: SocketAddr, path: &str, bearer: &str, body: &Value) -> Option<(u16, Value)> {
    http(addr, "POST", path, Some(bearer), Some(&body.to_string())).await
}

/// One HTTP/1.1 request over loopback, on a connection of its own:
/// (status, the body as JSON — or as a JSON string when it is not JSON,
/// `Null` when empty). `None` when no answer came within [`PATIENCE`].
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<&str>,
) -> Option<(u16, Value)> {
    let body = body.unwrap_or("");
    let auth = bearer.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(req.as_bytes()).await.ok()?;
    // `Connection: close`: the answer ends where the connection does.
    let mut raw = Vec::new();
    tokio::time::timeout(PATIENCE, s.read_to_end(&mut raw)).await.ok()?.ok()?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let (head, rest) = (String::from_utf8_lossy(&raw[..split]), &raw[split + 4..]);
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
    // Chunks are counted in bytes and may split a character: join them first.
    let body = if chunked { dechunk(rest) } else { rest.to_vec() };
    let body = String::from_utf8_lossy(&body).into_owned();
    let value = match serde_json::from_str(&body) {
        Ok(v) => v,
        Err(_) if body.is_empty() => Value::Null,
        Err(_) => Value::String(body),
    };
    Some((code, value))
}

fn dechunk(mut s: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = s.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&s[..eol]).ok().and_then(|h| usize::from_str_radix(h.trim(), 16).ok());
        let rest = &s[eol + 2..];
        let Some(n) = size.filter(|&n| n > 0 && rest.len() >= n) else { break };
        out.extend_from_slice(&rest[..n]);
        s = rest[n..].strip_prefix(b"\r\n").unwrap_or(&rest[n..]);
    }
    out
}

/// Every event of the stream (`{type, seq, ...}`), in `seq` order, read
/// as a watcher (`bearer`) through `GET /api/realtime/events` pages.
///
/// # Panics
/// A page cannot be read.
pub async fn stored_events(addr: SocketAddr, bearer: &str) -> Vec<Value> {
    let mut since = 0u64;
    let mut out = Vec::new();
    loop {
        let path = format!("/api/realtime/events?since={since}&limit=1000");
        let (status, page) = get(addr, &path, bearer).await.expect("an events page");
        assert_eq!(status, 200, "{page}");
        let events = page["events"].as_array().cloned().unwrap_or_default();
        if events.is_empty() {
            return out;
        }
        for ev in events {
            since = ev["seq"].as_u64().expect("every event has a seq");
            out.push(ev);
        }
    }
}

/// Polls `cond` until it holds, for conditions no event announces (another
/// process's state).
///
/// # Panics
/// It does not hold within `limit`.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunked_body_is_joined_also_where_a_chunk_splits_a_character() {
        assert_eq!(dechunk(b"4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n"), b"{\"a\":1}");
        let thai = "\"ก\"".as_bytes(); // 5 bytes: the character is 3
        let mut body = b"2\r\n".to_vec();
        body.extend_from_slice(&thai[..2]);
        body.extend_from_slice(b"\r\n3\r\n");
        body.extend_from_slice(&thai[2..]);
        body.extend_from_slice(b"\r\n0\r\n\r\n");
        assert_eq!(dechunk(&body), thai);
    }
}
