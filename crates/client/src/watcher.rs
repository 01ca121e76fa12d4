//! [`Watcher`]: the receiving side of the SDK. It hands the application a
//! snapshot, then stream events in `seq` order, each once; it persists its
//! position (`streamId`, `lastSeq`), resumes from it on every reconnect, and
//! long-polls `GET /api/realtime/events` while the socket is down.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};
use wecare_proto::event;
use wecare_proto::payload::{DriversSnapshot, EventsPage, RefreshOk, SnapshotDriver, StreamEvent, SyncComplete};

use crate::backoff::{Backoff, BackoffConfig};
use crate::http::HttpTarget;
use crate::token::TokenProvider;
use crate::{ConnectOptions, ServerEvent, SocketClient, TlsConfig, http};

/// Configuration of a [`Watcher`]. Build with [`WatcherConfig::new`] and
/// adjust the public fields.
#[derive(Clone)]
pub struct WatcherConfig {
    /// The server's base URL, `http://HOST:PORT` or `https://HOST[:PORT]`
    /// (then both the socket and the long poll use TLS).
    pub url: String,
    /// Which CAs are trusted for an `https://` URL. Defaults to
    /// [`TlsConfig::default`]: Mozilla's roots.
    pub tls: TlsConfig,
    /// Called for a token on every connect attempt, every `auth:refresh` and
    /// every HTTP request.
    pub token_provider: Arc<dyn TokenProvider>,
    /// Where the position (`streamId`, `lastSeq`) is kept across restarts (a
    /// small JSON file, replaced atomically). Defaults to none: every start
    /// begins with a snapshot.
    pub cursor_path: Option<PathBuf>,
    /// Reconnect and retry delays. Defaults to [`BackoffConfig::default`].
    pub backoff: BackoffConfig,
    /// After the socket has been down this long, events are long-polled over
    /// HTTP until it is back. Defaults to 10 s.
    pub long_poll_after: Duration,
    /// `waitMs` of one long poll (the server caps it at 30 s). Defaults to 25 s.
    pub long_poll_wait: Duration,
    /// Upper bound of one socket connect. Defaults to 10 s.
    pub connect_timeout: Duration,
    /// Upper bound of an `auth:refresh` ack. Defaults to 10 s.
    pub ack_timeout: Duration,
    /// Capacity of the event channel. When it is full the watcher waits for
    /// the application (backpressure); the server then paces or catches it
    /// up from storage, nothing is lost. Defaults to 1024.
    pub event_buffer: usize,
    /// Extra headers on the websocket upgrade. Defaults to none.
    pub socket_headers: Vec<(String, String)>,
    /// Extra headers on HTTP requests. Defaults to none.
    pub http_headers: Vec<(String, String)>,
}

impl std::fmt::Debug for WatcherConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatcherConfig")
            .field("url", &self.url)
            .field("tls", &self.tls)
            .field("cursor_path", &self.cursor_path)
            .field("backoff", &self.backoff)
            .field("long_poll_after", &self.long_poll_after)
            .finish_non_exhaustive()
    }
}

impl WatcherConfig {
    /// A configuration for `url` with the defaults documented on each field.
    pub fn new(url: impl Into<String>, token_provider: impl TokenProvider) -> Self {
        Self {
            url: url.into(),
            tls: TlsConfig::default(),
            token_provider: Arc::new(token_provider),
            cursor_path: None,
            backoff: BackoffConfig::default(),
            long_poll_after: Duration::from_secs(10),
            long_poll_wait: Duration::from_secs(25),
            connect_timeout: Duration::from_secs(10),
            ack_timeout: Duration::from_secs(10),
            event_buffer: 1024,
            socket_headers: Vec::new(),
            http_headers: Vec::new(),
        }
    }
}

/// What the watcher hands the application, in order.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
// Moved once through a channel: a Box would cost an allocation per event
// and keep applications from matching on the event inside.
#[allow(clippy::large_enum_variant)]
pub enum WatcherEvent {
    /// Replace the whole state: every known driver as of `seq`. Comes first
    /// on a fresh start, and again whenever the position cannot be resumed
    /// (another stream, a gap).
    Snapshot {
        /// The stream the position belongs to.
        stream_id: String,
        /// The position of the snapshot.
        seq: u64,
        /// Every known driver.
        drivers: Vec<SnapshotDriver>,
    },
    /// A stream event (`location:updated`, `driver:status:updated`,
    /// `driver:presence`), its `seq` the previous one + 1.
    Event(StreamEvent),
    /// A resume replayed everything missed; live events follow.
    SyncComplete {
        /// The position the resume started from.
        from_seq: u64,
        /// The position after the replay.
        to_seq: u64,
        /// How many events were replayed.
        replayed: u64,
    },
}

/// How the watcher currently receives events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatcherConnection {
    /// Not connected; waiting before the next attempt.
    Disconnected,
    /// Connect attempt `attempt` is running.
    Connecting {
        /// 1-based, counted since the last success.
        attempt: u32,
    },
    /// The socket is up.
    Connected,
    /// The socket is down; events come by long polling.
    LongPolling,
}

/// A position in the stream, as persisted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Cursor {
    stream_id: Option<String>,
    last_seq: Option<u64>,
}

/// The watcher side of the SDK: a handle to a background task that feeds the
/// channel returned by [`start`](Self::start). It stops when
/// [`shutdown`](Self::shutdown) is called, when the last handle is dropped or
/// when the application drops the receiver.
#[derive(Debug, Clone)]
pub struct Watcher {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    connection: watch::Receiver<WatcherConnection>,
    shutdown: CancellationToken,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Watcher {
    /// Loads the persisted position (if any) and starts the task.
    ///
    /// # Errors
    /// When the cursor file exists but cannot be read.
    pub async fn start(config: WatcherConfig) -> std::io::Result<(Watcher, mpsc::Receiver<WatcherEvent>)> {
        let cursor = match &config.cursor_path {
            Some(path) => load_cursor(path).await?,
            None => Cursor::default(),
        };
        let (events_tx, events_rx) = mpsc::channel(config.event_buffer.max(1));
        let (connection_tx, connection) = watch::channel(WatcherConnection::Disconnected);
        let shutdown = CancellationToken::new();
        let worker = Worker {
            backoff: Backoff::new(config.backoff),
            config,
            cursor,
            events: events_tx,
            connection: connection_tx,
            shutdown: shutdown.clone(),
            down_since: Instant::now(),
        };
        let task = tokio::spawn(worker.run());
        let inner = Inner { connection, shutdown, task: Mutex::new(Some(task)) };
        Ok((Watcher { inner: Arc::new(inner) }, events_rx))
    }

    /// A receiver of the connection state.
    pub fn connection(&self) -> watch::Receiver<WatcherConnection> {
        self.inner.connection.clone()
    }

    /// Stops the task and waits for it; the position stays persisted.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        let task = self.inner.task.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

/// Runs blocking file I/O off the runtime threads.
async fn off_runtime<T: Send + 'static>(f: impl FnOnce() -> std::io::Result<T> + Send + 'static) -> std::io::Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(std::io::Error::other)?
}

async fn load_cursor(path: &Path) -> std::io::Result<Cursor> {
    let owned = path.to_owned();
    match off_runtime(move || std::fs::read(owned)).await {
        Ok(bytes) => Ok(serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            warn!(path = %path.display(), error = %e, "unreadable watcher cursor; starting from a snapshot");
            Cursor::default()
        })),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Cursor::default()),
        Err(e) => Err(e),
    }
}

async fn save_cursor(path: &Path, cursor: &Cursor) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let (bytes, path) = (serde_json::to_vec(cursor)?, path.to_owned());
    off_runtime(move || {
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, path)
    })
    .await
}

#[derive(Debug, PartialEq, Eq)]
enum End {
    Lost,
    /// The position cannot be resumed: start over from a snapshot.
    Resnapshot,
    Shutdown,
}

struct Worker {
    config: WatcherConfig,
    cursor: Cursor,
    events: mpsc::Sender<WatcherEvent>,
    connection: watch::Sender<WatcherConnection>,
    shutdown: CancellationToken,
    backoff: Backoff,
    down_since: Instant,
}

impl Worker {
    async fn run(mut self) {
        let mut attempt = 0u32;
        while !self.shutdown.is_cancelled() {
            attempt = attempt.saturating_add(1);
            self.connection.send_replace(WatcherConnection::Connecting { attempt });
            let shutdown = self.shutdown.clone();
            let connected = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                c = self.connect() => c,
            };
            match connected {
                Ok((client, events)) => {
                    attempt = 0;
                    self.backoff.reset();
                    self.connection.send_replace(WatcherConnection::Connected);
                    let end = self.run_socket(&client, events).await;
                    client.close().await;
                    self.down_since = Instant::now();
                    self.connection.send_replace(WatcherConnection::Disconnected);
                    match end {
                        End::Shutdown => break,
                        End::Resnapshot => {
                            self.reset_cursor().await;
                            continue;
                        }
                        End::Lost => {}
                    }
                }
                Err(e) => debug!(error = %e, attempt, "watcher connect failed"),
            }
            let until = Instant::now() + self.backoff.next_delay();
            if self.down_since.elapsed() >= self.config.long_poll_after {
                self.connection.send_replace(WatcherConnection::LongPolling);
                if self.poll_until(until).await == End::Shutdown {
                    break;
                }
            } else {
                self.connection.send_replace(WatcherConnection::Disconnected);
                tokio::select! {
                    () = self.shutdown.cancelled() => break,
                    () = tokio::time::sleep_until(until) => {}
                }
            }
        }
        self.connection.send_replace(WatcherConnection::Disconnected);
    }

    async fn connect(&self) -> Result<(SocketClient, mpsc::Receiver<ServerEvent>), String> {
        let token = self.config.token_provider.token().await.map_err(|e| format!("token provider: {e}"))?;
        let mut auth = json!({ "token": token });
        if let Some(last_seq) = self.cursor.last_seq {
            auth["lastSeq"] = json!(last_seq);
            if let Some(stream_id) = &self.cursor.stream_id {
                auth["streamId"] = json!(stream_id);
            }
        }
        let mut opts = ConnectOptions::locations(&self.config.url, auth);
        opts.tls = self.config.tls.clone();
        opts.connect_timeout = self.config.connect_timeout;
        opts.extra_headers.clone_from(&self.config.socket_headers);
        SocketClient::connect(opts).await.map_err(|e| e.to_string())
    }

    async fn run_socket(&mut self, client: &SocketClient, mut events: mpsc::Receiver<ServerEvent>) -> End {
        loop {
            let ev = tokio::select! {
                biased;
                () = self.shutdown.cancelled() => return End::Shutdown,
                ev = events.recv() => ev,
            };
            let Some(ev) = ev else { return End::Lost };
            let (name, data) = match ev {
                ServerEvent::Event { name, data } => (name, data),
                ServerEvent::Raw(raw) => match raw.to_value() {
                    Ok(data) => (raw.name().to_owned(), data),
                    Err(_) => continue,
                },
                ServerEvent::Disconnected { reason } => {
                    debug!(%reason, "watcher socket disconnected");
                    return End::Lost;
                }
            };
            let step = match name.as_str() {
                event::AUTH_EXPIRING => {
                    self.refresh(client).await;
                    None
                }
                event::AUTH_EXPIRED => Some(End::Lost),
                event::DRIVERS_SNAPSHOT => self.on_snapshot(data).await,
                event::SYNC_COMPLETE => self.on_sync_complete(data).await,
                n => match StreamEvent::from_live(n, data) {
                    Ok(Some(event)) => self.on_stream_event(event).await,
                    Ok(None) => None,
                    Err(e) => {
                        warn!(event = n, error = %e, "a stream event that does not read; re-snapshotting");
                        Some(End::Resnapshot)
                    }
                },
            };
            if let Some(end) = step {
                return end;
            }
        }
    }

    async fn refresh(&self, client: &SocketClient) {
        let token = match self.config.token_provider.token().await {
            Ok(token) => token,
            Err(e) => {
                warn!(error = %e, "token provider failed; the socket will end at expiry");
                return;
            }
        };
        match client.emit_with_ack(event::AUTH_REFRESH, &json!({ "token": token }), self.config.ack_timeout).await {
            Ok(ack) if RefreshOk::deserialize(&ack).is_ok() => debug!("token refreshed"),
            Ok(ack) => warn!(%ack, "auth:refresh refused"),
            Err(e) => debug!(error = %e, "auth:refresh failed"),
        }
    }

    /// Hands `ev` to the application, then persists the position.
    async fn deliver(&mut self, ev: WatcherEvent) -> Option<End> {
        if self.events.send(ev).await.is_err() {
            return Some(End::Shutdown);
        }
        if let Some(path) = &self.config.cursor_path
            && let Err(e) = save_cursor(path, &self.cursor).await
        {
            warn!(path = %path.display(), error = %e, "could not persist the watcher position");
        }
        None
    }

    async fn on_snapshot(&mut self, data: Value) -> Option<End> {
        let snapshot: DriversSnapshot = match serde_json::from_value(data) {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "a snapshot that does not read; asking again");
                return Some(End::Resnapshot);
            }
        };
        let DriversSnapshot { stream_id, seq, drivers } = snapshot;
        self.cursor = Cursor { stream_id: Some(stream_id.clone()), last_seq: Some(seq.0) };
        self.deliver(WatcherEvent::Snapshot { stream_id, seq: seq.0, drivers }).await
    }

    async fn on_sync_complete(&mut self, data: Value) -> Option<End> {
        let Ok(done) = serde_json::from_value::<SyncComplete>(data) else {
            warn!("a sync:complete that does not read; ignored");
            return None;
        };
        if let Some(ours) = &self.cursor.stream_id
            && done.stream_id != *ours
        {
            debug!(theirs = done.stream_id, ours, "stream changed; re-snapshotting");
            return Some(End::Resnapshot);
        }
        self.cursor.stream_id = Some(done.stream_id);
        let ev =
            WatcherEvent::SyncComplete { from_seq: done.from_seq.0, to_seq: done.to_seq.0, replayed: done.replayed };
        self.deliver(ev).await
    }

    async fn on_stream_event(&mut self, event: StreamEvent) -> Option<End> {
        let seq = event.seq().0;
        match self.cursor.last_seq {
            Some(last) if seq <= last => return None,
            Some(last) if seq > last + 1 => {
                warn!(last, seq, "gap in the stream; re-snapshotting");
                return Some(End::Resnapshot);
            }
            _ => {}
        }
        self.cursor.last_seq = Some(seq);
        self.deliver(WatcherEvent::Event(event)).await
    }

    async fn reset_cursor(&mut self) {
        self.cursor = Cursor::default();
        if let Some(path) = &self.config.cursor_path
            && let Err(e) = save_cursor(path, &self.cursor).await
        {
            warn!(path = %path.display(), error = %e, "could not persist the watcher position");
        }
    }

    async fn get(&self, path: &str, timeout: Duration) -> Result<Value, String> {
        let token = self.config.token_provider.token().await.map_err(|e| format!("token provider: {e}"))?;
        let target = HttpTarget { url: &self.config.url, tls: &self.config.tls, headers: &self.config.http_headers };
        let response = http::request(target, "GET", path, &token, None, timeout).await.map_err(|e| e.to_string())?;
        if response.status != 200 {
            return Err(format!("GET {path}: status {}", response.status));
        }
        response.json().map_err(|e| e.to_string())
    }

    /// Long-polls until `until` (the next socket attempt).
    async fn poll_until(&mut self, until: Instant) -> End {
        let mut backoff = Backoff::new(self.config.backoff);
        loop {
            let now = Instant::now();
            if now >= until {
                return End::Lost;
            }
            let shutdown = self.shutdown.clone();
            let step = tokio::select! {
                biased;
                () = shutdown.cancelled() => return End::Shutdown,
                step = self.poll_once(until - now) => step,
            };
            match step {
                Ok(Some(End::Resnapshot)) => self.reset_cursor().await,
                Ok(Some(end)) => return end,
                Ok(None) => backoff.reset(),
                Err(e) => {
                    debug!(error = %e, "long poll failed");
                    let retry = (Instant::now() + backoff.next_delay()).min(until);
                    tokio::select! {
                        () = self.shutdown.cancelled() => return End::Shutdown,
                        () = tokio::time::sleep_until(retry) => {}
                    }
                }
            }
        }
    }

    async fn poll_once(&mut self, budget: Duration) -> Result<Option<End>, String> {
        let (Some(last_seq), Some(stream_id)) = (self.cursor.last_seq, self.cursor.stream_id.clone()) else {
            let latest = self.get("/api/realtime/latest", Duration::from_secs(15)).await?;
            return Ok(self.on_snapshot(latest).await);
        };
        let wait = self.config.long_poll_wait.min(budget);
        let path = format!(
            "/api/realtime/events?since={last_seq}&streamId={}&waitMs={}",
            percent_encode(&stream_id),
            wait.as_millis()
        );
        let page = self.get(&path, wait + Duration::from_secs(10)).await?;
        // Events one by one: a kind this client does not know is skipped,
        // not a reason to drop the page.
        let page: EventsPage<Vec<Value>> = serde_json::from_value(page).map_err(|e| format!("an events page: {e}"))?;
        if page.gap || page.stream_id != stream_id {
            return Ok(Some(End::Resnapshot));
        }
        for ev in page.events {
            let Ok(event) = serde_json::from_value::<StreamEvent>(ev) else {
                continue;
            };
            if let Some(end) = self.on_stream_event(event).await {
                return Ok(Some(end));
            }
        }
        Ok(None)
    }
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn cursor_round_trips_through_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cursor.json");
        assert_eq!(load_cursor(&path).await.unwrap(), Cursor::default());
        let cursor = Cursor { stream_id: Some("abc".to_owned()), last_seq: Some(42) };
        save_cursor(&path, &cursor).await.unwrap();
        assert_eq!(load_cursor(&path).await.unwrap(), cursor);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, r#"{"streamId":"abc","lastSeq":42}"#);
        std::fs::write(&path, "garbage").unwrap();
        assert_eq!(load_cursor(&path).await.unwrap(), Cursor::default());
    }

    #[test]
    fn stream_ids_are_percent_encoded() {
        assert_eq!(percent_encode("a b/c"), "a%20b%2Fc");
    }
}
