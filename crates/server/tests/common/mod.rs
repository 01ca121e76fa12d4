//! Test harness: a real server on an ephemeral loopback port with its own
//! temporary store, driven through the real client SDK and raw HTTP.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use wecare_client::{ConnectOptions, ServerEvent, SocketClient};
use wecare_server::ServerConfig;

pub const SECRET: &str = "test-secret";
/// Upper bound of every wait: only there to fail a hung test.
pub const WAIT: Duration = Duration::from_secs(10);

pub struct TestServer {
    pub addr: SocketAddr,
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    shutdown: CancellationToken,
    handle: tokio::task::JoinHandle<()>,
}

pub fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

pub fn token(claims: Value) -> String {
    wecare_server::dev_token(SECRET, &claims)
}

pub fn driver_token(driver: &str) -> String {
    token(json!({"id": format!("u-{driver}"), "email": format!("{driver}@wecare.test"), "role": "driver",
                 "driver_id": driver, "exp": now_secs() + 3600}))
}

pub fn officer_token() -> String {
    token(json!({"id": "officer-1", "email": "o@wecare.test", "role": "officer", "exp": now_secs() + 3600}))
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut ServerConfig)) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let mut s = Self::start_in(&dir, tweak).await;
        s._tmp = Some(tmp);
        s
    }

    /// Starts on an existing data folder (restart tests).
    pub async fn start_in(dir: &Path, tweak: impl FnOnce(&mut ServerConfig)) -> Self {
        let mut config = ServerConfig {
            data_dir: dir.to_path_buf(),
            jwt_secret: SECRET.as_bytes().to_vec(),
            ..ServerConfig::default()
        };
        tweak(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let handle = tokio::spawn(async move {
            wecare_server::serve(listener, config, token).await.expect("server runs");
        });
        Self { addr, dir: dir.to_path_buf(), _tmp: None, shutdown, handle }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Graceful stop; returns the temp dir so the store can be reopened.
    pub async fn stop(mut self) -> Option<tempfile::TempDir> {
        self.shutdown.cancel();
        tokio::time::timeout(WAIT, &mut self.handle).await.expect("server stops in time").unwrap();
        self._tmp.take()
    }

    pub async fn connect(&self, auth: Value) -> (SocketClient, Events) {
        let (client, rx) =
            tokio::time::timeout(WAIT, SocketClient::connect(ConnectOptions::locations(self.url(), auth)))
                .await
                .expect("connect in time")
                .expect("connects");
        (client, Events(rx))
    }

    pub async fn driver(&self, driver: &str) -> (SocketClient, Events) {
        self.connect(json!({ "token": driver_token(driver) })).await
    }

    pub async fn watcher(&self) -> (SocketClient, Events) {
        self.connect(json!({ "token": officer_token() })).await
    }

    pub async fn http(&self, method: &str, path: &str, bearer: Option<&str>, body: Option<&str>) -> (u16, Value) {
        http(self.addr, method, path, bearer, body).await
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The events a socket received, with waits that fail instead of hanging.
pub struct Events(pub mpsc::Receiver<ServerEvent>);

impl Events {
    /// The next event named `name` (others are skipped).
    pub async fn next_named(&mut self, name: &str) -> Value {
        loop {
            match self.next().await {
                (n, data) if n == name => return data,
                _ => continue,
            }
        }
    }

    pub async fn next(&mut self) -> (String, Value) {
        match tokio::time::timeout(WAIT, self.0.recv()).await.expect("event in time") {
            Some(ServerEvent::Event { name, data }) => (name, data),
            Some(ServerEvent::Disconnected { reason }) => ("__disconnected".into(), Value::String(reason)),
            Some(other) => panic!("unexpected {other:?}"),
            None => ("__closed".into(), Value::Null),
        }
    }

    /// Stream events (those with a `seq`) until `count` were received.
    pub async fn stream_events(&mut self, count: usize) -> Vec<Value> {
        let mut out = Vec::with_capacity(count);
        while out.len() < count {
            let (name, data) = self.next().await;
            assert!(!name.starts_with("__"), "socket ended after {} events: {data}", out.len());
            if data.get("seq").is_some() && name != "drivers:snapshot" {
                out.push(data);
            }
        }
        out
    }
}

pub fn fix(id: &str, lat: f64, lng: f64) -> Value {
    json!({ "id": id, "lat": lat, "lng": lng, "recordedAt": now_ms() })
}

/// One HTTP/1.1 request (one per connection): (status, JSON body, or the
/// body as a JSON string when it is not JSON).
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<&str>,
) -> (u16, Value) {
    wecare_client::testing::server::http(addr, method, path, bearer, body).await.expect("an HTTP answer in time")
}

/// Polls `cond` until it holds (for conditions no event announces).
pub async fn wait_until(mut cond: impl FnMut() -> bool) {
    tokio::time::timeout(WAIT, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("condition met in time");
}
