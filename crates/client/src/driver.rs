//! [`Driver`]: the sending side of the SDK. Fixes go into the durable
//! [`Outbox`] first; a background task drains it over the socket
//! (`location:batch` with acks), reconnecting forever with a fresh token, and
//! over `POST /api/driver-locations` while the socket is unusable.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};
use wecare_proto::{ErrorCode, event};

use crate::backoff::{Backoff, BackoffConfig};
use crate::outbox::{DeadLetter, Outbox, OutboxEntry, OutboxError, OutboxLimits, SqliteOutbox, now_ms};
use crate::token::TokenProvider;
use crate::{ClientError, ConnectOptions, ServerEvent, SocketClient, http};

/// The legacy REST path the existing web client falls back to.
const HTTP_FALLBACK_PATH: &str = "/api/driver-locations";
/// Consecutive ack timeouts after which the socket is presumed dead.
const ACK_TIMEOUTS_BEFORE_RECONNECT: u32 = 2;

/// One GPS fix, as the device took it.
#[derive(Debug, Clone, PartialEq)]
pub struct Fix {
    /// Latitude, −90…90.
    pub lat: f64,
    /// Longitude, −180…180.
    pub lng: f64,
    /// When the fix was taken, epoch milliseconds. [`Fix::new`] uses now.
    pub recorded_at_ms: i64,
    /// A driver status to set with it (e.g. `"ON_TRIP"`).
    pub status: Option<String>,
    /// Accuracy in metres.
    pub accuracy: Option<f64>,
    /// Heading, 0…360 degrees.
    pub heading: Option<f64>,
    /// Speed in m/s.
    pub speed: Option<f64>,
}

impl Fix {
    /// A fix at `lat`, `lng`, taken now.
    pub fn new(lat: f64, lng: f64) -> Self {
        Self { lat, lng, recorded_at_ms: now_ms(), status: None, accuracy: None, heading: None, speed: None }
    }

    /// The `location:update` payload, without `id` (the outbox adds it).
    pub fn to_payload(&self) -> Value {
        let mut payload = json!({ "lat": self.lat, "lng": self.lng, "recordedAt": self.recorded_at_ms });
        let map = payload.as_object_mut().expect("built as an object");
        if let Some(s) = &self.status {
            map.insert("status".to_owned(), json!(s));
        }
        for (key, value) in [("accuracy", self.accuracy), ("heading", self.heading), ("speed", self.speed)] {
            if let Some(v) = value {
                map.insert(key.to_owned(), json!(v));
            }
        }
        payload
    }
}

/// Where the driver's outbox lives.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum OutboxStore {
    /// A [`SqliteOutbox`] file, created if missing.
    Sqlite {
        /// The file.
        path: PathBuf,
        /// Its bounds.
        limits: OutboxLimits,
    },
    /// Any other implementation (e.g. [`MemoryOutbox`](crate::MemoryOutbox)).
    Custom(Arc<dyn Outbox>),
}

/// Configuration of a [`Driver`]. Build with [`DriverConfig::new`] and adjust
/// the public fields.
#[derive(Clone)]
pub struct DriverConfig {
    /// The server's base URL, `http://HOST:PORT`.
    pub url: String,
    /// The outbox.
    pub outbox: OutboxStore,
    /// Called for a token on every connect attempt, every `auth:refresh` and
    /// every HTTP fallback request.
    pub token_provider: Arc<dyn TokenProvider>,
    /// How long to wait for a batch ack. Defaults to 10 s.
    pub ack_timeout: Duration,
    /// Fixes per `location:batch` (1…1000). Defaults to 500.
    pub batch_size: usize,
    /// Reconnect and retry delays. Defaults to [`BackoffConfig::default`] (1 s … 30 s).
    pub backoff: BackoffConfig,
    /// After the socket has been down this long, the outbox drains over HTTP
    /// until the socket is back. A refused websocket upgrade (an HTTP status
    /// instead of 101) switches at once. Defaults to 30 s.
    pub http_fallback_after: Duration,
    /// Upper bound of one socket connect. Defaults to 10 s.
    pub connect_timeout: Duration,
    /// Upper bound of one HTTP fallback request. Defaults to 15 s.
    pub http_timeout: Duration,
    /// Extra headers on the websocket upgrade (e.g. `Origin`). Defaults to none.
    pub socket_headers: Vec<(String, String)>,
    /// Extra headers on HTTP fallback requests. Defaults to none.
    pub http_headers: Vec<(String, String)>,
}

impl std::fmt::Debug for DriverConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DriverConfig")
            .field("url", &self.url)
            .field("outbox", &self.outbox)
            .field("ack_timeout", &self.ack_timeout)
            .field("batch_size", &self.batch_size)
            .field("backoff", &self.backoff)
            .field("http_fallback_after", &self.http_fallback_after)
            .finish_non_exhaustive()
    }
}

impl DriverConfig {
    /// A configuration for `url` with an SQLite outbox at `outbox_path` and
    /// the defaults documented on each field.
    pub fn new(url: impl Into<String>, outbox_path: impl Into<PathBuf>, token_provider: impl TokenProvider) -> Self {
        Self {
            url: url.into(),
            outbox: OutboxStore::Sqlite { path: outbox_path.into(), limits: OutboxLimits::default() },
            token_provider: Arc::new(token_provider),
            ack_timeout: Duration::from_secs(10),
            batch_size: 500,
            backoff: BackoffConfig::default(),
            http_fallback_after: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            http_timeout: Duration::from_secs(15),
            socket_headers: Vec::new(),
            http_headers: Vec::new(),
        }
    }
}

/// How the driver currently reaches the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriverConnection {
    /// Not connected; waiting before the next attempt.
    Disconnected,
    /// Connect attempt `attempt` (1-based, counted since the last success) is running.
    Connecting {
        /// The attempt number.
        attempt: u32,
    },
    /// The socket is up; the outbox drains over it.
    Connected,
    /// The socket is unusable; the outbox drains over HTTP.
    HttpFallback,
}

/// What the driver is doing, published on a `watch` channel
/// ([`Driver::state`]).
#[derive(Debug, Clone, PartialEq)]
pub struct DriverState {
    /// The connection.
    pub connection: DriverConnection,
    /// Fixes in the outbox waiting for an ack.
    pub pending: u64,
    /// The last fix the server acked: its id and `seq`.
    pub last_ack: Option<(String, u64)>,
    /// Fixes refused for good ([`Driver::dead_letters`]).
    pub dead_letters: u64,
    /// Fixes the outbox limits discarded unsent.
    pub dropped: u64,
    /// The last failure (connect, ack, HTTP), for display; cleared on success.
    pub last_error: Option<String>,
}

/// Why a [`Driver`] call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DriverError {
    /// The outbox failed.
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    /// The configuration is unusable.
    #[error("invalid driver config: {0}")]
    InvalidConfig(String),
    /// A blocking outbox call could not run (the runtime is shutting down).
    #[error("outbox task failed: {0}")]
    Task(String),
}

/// The driver side of the SDK: a cheap, cloneable handle to a background
/// sender task. The task stops when [`shutdown`](Self::shutdown) is called or
/// the last handle is dropped; the outbox keeps whatever was not acked.
#[derive(Debug, Clone)]
pub struct Driver {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Arc<Store>,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn blocking<T, F>(outbox: &Arc<dyn Outbox>, f: F) -> Result<T, DriverError>
where
    T: Send + 'static,
    F: FnOnce(&dyn Outbox) -> Result<T, OutboxError> + Send + 'static,
{
    let outbox = Arc::clone(outbox);
    tokio::task::spawn_blocking(move || f(outbox.as_ref()))
        .await
        .map_err(|e| DriverError::Task(e.to_string()))?
        .map_err(DriverError::from)
}

/// The outbox plus the state that mirrors its counters. Every mutation
/// publishes fresh counters under one lock, so a slow publisher can never
/// overwrite newer counters with older ones.
#[derive(Debug)]
struct Store {
    outbox: Arc<dyn Outbox>,
    state: watch::Sender<DriverState>,
    publish: Mutex<()>,
}

async fn mutate<T, F>(store: &Arc<Store>, f: F) -> Result<T, DriverError>
where
    T: Send + 'static,
    F: FnOnce(&dyn Outbox) -> Result<T, OutboxError> + Send + 'static,
{
    let store = Arc::clone(store);
    tokio::task::spawn_blocking(move || {
        let _guard = store.publish.lock().unwrap_or_else(PoisonError::into_inner);
        let result = f(store.outbox.as_ref())?;
        let stats = store.outbox.stats()?;
        store.state.send_modify(|s| {
            s.pending = stats.pending;
            s.dead_letters = stats.dead_letters;
            s.dropped = stats.dropped;
        });
        Ok(result)
    })
    .await
    .map_err(|e| DriverError::Task(e.to_string()))?
}

impl Driver {
    /// Opens the outbox and starts the sender task (which connects at once).
    ///
    /// # Errors
    /// [`DriverError::Outbox`] when the outbox cannot be opened.
    pub async fn start(config: DriverConfig) -> Result<Driver, DriverError> {
        if !(1..=event::MAX_BATCH).contains(&config.batch_size) {
            return Err(DriverError::InvalidConfig(format!("batch_size {} is not in 1..=1000", config.batch_size)));
        }
        let outbox: Arc<dyn Outbox> = match &config.outbox {
            OutboxStore::Custom(outbox) => Arc::clone(outbox),
            OutboxStore::Sqlite { path, limits } => {
                let (path, limits) = (path.clone(), *limits);
                tokio::task::spawn_blocking(move || SqliteOutbox::open(path, limits))
                    .await
                    .map_err(|e| DriverError::Task(e.to_string()))?
                    .map(|o| Arc::new(o) as Arc<dyn Outbox>)?
            }
        };
        let stats = blocking(&outbox, |o| o.stats()).await?;
        let (state_tx, _) = watch::channel(DriverState {
            connection: DriverConnection::Disconnected,
            pending: stats.pending,
            last_ack: None,
            dead_letters: stats.dead_letters,
            dropped: stats.dropped,
            last_error: None,
        });
        let store = Arc::new(Store { outbox, state: state_tx, publish: Mutex::new(()) });
        let wake = Arc::new(Notify::new());
        let shutdown = CancellationToken::new();
        let worker = Worker {
            backoff: Backoff::new(config.backoff),
            send_backoff: Backoff::new(config.backoff),
            config,
            store: Arc::clone(&store),
            wake: Arc::clone(&wake),
            shutdown: shutdown.clone(),
            down_since: Instant::now(),
            ws_refused: false,
        };
        let task = tokio::spawn(worker.run());
        Ok(Driver { inner: Arc::new(Inner { store, wake, shutdown, task: Mutex::new(Some(task)) }) })
    }

    /// Stores `fix` in the outbox under a fresh id and wakes the sender;
    /// returns the id. The fix is durable when this returns.
    ///
    /// # Errors
    /// [`DriverError::Outbox`] when it could not be stored.
    pub async fn record(&self, fix: Fix) -> Result<String, DriverError> {
        self.record_payload(fix.to_payload()).await
    }

    /// [`record`](Self::record) for a ready-made `location:update` payload
    /// (a JSON object; its `id`, if any, is replaced by a fresh one).
    ///
    /// # Errors
    /// As [`record`](Self::record), and [`OutboxError::NotAnObject`].
    pub async fn record_payload(&self, payload: Value) -> Result<String, DriverError> {
        let id = mutate(&self.inner.store, move |o| o.push(payload)).await?;
        self.inner.wake.notify_one();
        Ok(id)
    }

    /// A receiver of the driver's state; it sees every change from now on.
    pub fn state(&self) -> watch::Receiver<DriverState> {
        self.inner.store.state.subscribe()
    }

    /// The fixes the server refused for good, with its code and message.
    ///
    /// # Errors
    /// [`DriverError::Outbox`].
    pub async fn dead_letters(&self) -> Result<Vec<DeadLetter>, DriverError> {
        blocking(&self.inner.store.outbox, |o| o.dead_letters()).await
    }

    /// Stops the sender task (closing the socket) and waits for it. Pending
    /// fixes stay in the outbox for the next start.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        let task = self.inner.task.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

/// How a phase of the sender ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    Lost,
    Shutdown,
}

/// What to do after a send attempt.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Acked (or refused for good): go on at once.
    Progress,
    /// Retryable trouble: back off, then resend the same ids.
    Retry,
    /// The token is no longer accepted: reconnect with a fresh one.
    Reauth,
    /// The socket is dead.
    Broken,
}

/// What an ack (or an HTTP 200 body) says about a batch.
#[derive(Debug, Default, PartialEq)]
struct AckOutcome {
    remove: Vec<String>,
    park: Vec<(String, String, String)>,
    retry: bool,
    reauth: bool,
    last_ack: Option<(String, u64)>,
}

fn is_auth_code(code: &str) -> bool {
    matches!(code, "TOKEN_EXPIRED" | "INVALID_TOKEN" | "AUTH_REQUIRED")
}

/// Whether an error object may succeed if sent again: the wire's
/// `retryable` flag, else the code's.
fn retryable(err: &Value) -> bool {
    err.get("retryable").and_then(Value::as_bool).unwrap_or_else(|| {
        serde_json::from_value::<ErrorCode>(err.get("code").cloned().unwrap_or_default())
            .is_ok_and(ErrorCode::is_retryable)
    })
}

fn code_and_message(err: &Value) -> (String, String) {
    let text = |k: &str| err.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
    (text("code"), text("message"))
}

/// Interprets the reply to `location:batch` (or the REST body) for `batch`.
fn interpret_ack(batch: &[OutboxEntry], ack: &Value) -> AckOutcome {
    let mut out = AckOutcome::default();
    let status = ack.get("status").and_then(Value::as_str);
    let results = ack.get("results").and_then(Value::as_array);
    match (status, results) {
        (Some("ok"), Some(results)) if results.len() == batch.len() => {
            for (entry, result) in batch.iter().zip(results) {
                if result.get("status").and_then(Value::as_str) == Some("ok") {
                    out.remove.push(entry.id.clone());
                    if let Some(seq) = result.get("seq").and_then(Value::as_u64) {
                        out.last_ack = Some((entry.id.clone(), seq));
                    }
                    continue;
                }
                let (code, message) = code_and_message(result);
                if retryable(result) {
                    out.retry = true;
                } else if is_auth_code(&code) {
                    out.reauth = true;
                } else {
                    out.park.push((entry.id.clone(), code, message));
                }
            }
        }
        (Some("error"), _) => {
            let (code, message) = code_and_message(ack);
            if retryable(ack) {
                out.retry = true;
            } else if is_auth_code(&code) {
                out.reauth = true;
            } else if code == ErrorCode::Forbidden.as_str() {
                // The whole batch refused: the token is not a driver's. The
                // fixes are fine; keep them for a token that is.
                warn!(%message, "server refused the batch as FORBIDDEN; keeping the fixes");
                out.retry = true;
            } else {
                for entry in batch {
                    out.park.push((entry.id.clone(), code.clone(), message.clone()));
                }
            }
        }
        _ => {
            debug!(%ack, "unexpected batch reply; retrying later");
            out.retry = true;
        }
    }
    out
}

struct Worker {
    config: DriverConfig,
    store: Arc<Store>,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
    /// Reconnect delays.
    backoff: Backoff,
    /// Resend delays after retryable refusals.
    send_backoff: Backoff,
    down_since: Instant,
    ws_refused: bool,
}

impl Worker {
    async fn run(mut self) {
        let mut attempt = 0u32;
        while !self.shutdown.is_cancelled() {
            attempt = attempt.saturating_add(1);
            self.set_connection(DriverConnection::Connecting { attempt });
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
                    self.ws_refused = false;
                    self.set_connection(DriverConnection::Connected);
                    self.store.state.send_modify(|s| s.last_error = None);
                    let end = self.run_connected(&client, events).await;
                    client.close().await;
                    self.down_since = Instant::now();
                    self.set_connection(DriverConnection::Disconnected);
                    if end == End::Shutdown {
                        break;
                    }
                }
                Err(err) => {
                    debug!(error = %err, attempt, "driver connect failed");
                    self.set_error(err);
                }
            }
            let until = Instant::now() + self.backoff.next_delay();
            if self.ws_refused || self.down_since.elapsed() >= self.config.http_fallback_after {
                self.set_connection(DriverConnection::HttpFallback);
                if self.drain_http_until(until).await == End::Shutdown {
                    break;
                }
            } else {
                self.set_connection(DriverConnection::Disconnected);
                tokio::select! {
                    () = self.shutdown.cancelled() => break,
                    () = tokio::time::sleep_until(until) => {}
                }
            }
        }
        self.set_connection(DriverConnection::Disconnected);
    }

    async fn connect(&mut self) -> Result<(SocketClient, mpsc::Receiver<ServerEvent>), String> {
        let token = self.config.token_provider.token().await.map_err(|e| format!("token provider: {e}"))?;
        let mut opts = ConnectOptions::locations(&self.config.url, json!({ "token": token }));
        opts.connect_timeout = self.config.connect_timeout;
        opts.extra_headers.clone_from(&self.config.socket_headers);
        match SocketClient::connect(opts).await {
            Ok(ok) => Ok(ok),
            Err(err) => {
                if let ClientError::HttpStatus { status } = err {
                    debug!(status, "websocket upgrade refused; draining over http");
                    self.ws_refused = true;
                }
                Err(err.to_string())
            }
        }
    }

    async fn run_connected(&mut self, client: &SocketClient, mut events: mpsc::Receiver<ServerEvent>) -> End {
        let mut retry_at: Option<Instant> = None;
        let mut timeouts = 0u32;
        loop {
            loop {
                match events.try_recv() {
                    Ok(ev) => {
                        if let Some(end) = self.on_event(client, ev).await {
                            return end;
                        }
                    }
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => return End::Lost,
                }
            }
            if retry_at.is_none_or(|t| Instant::now() >= t) {
                retry_at = None;
                let shutdown = self.shutdown.clone();
                let verdict = tokio::select! {
                    biased;
                    () = shutdown.cancelled() => return End::Shutdown,
                    v = self.send_socket_batch(client) => v,
                };
                match verdict {
                    Some(Verdict::Progress) => {
                        timeouts = 0;
                        self.send_backoff.reset();
                        continue;
                    }
                    Some(Verdict::Retry) => retry_at = Some(Instant::now() + self.send_backoff.next_delay()),
                    Some(Verdict::Reauth) => return End::Lost,
                    Some(Verdict::Broken) => {
                        timeouts += 1;
                        if timeouts >= ACK_TIMEOUTS_BEFORE_RECONNECT || !client.is_connected() {
                            return End::Lost;
                        }
                        retry_at = Some(Instant::now() + self.send_backoff.next_delay());
                    }
                    None => {}
                }
            }
            let retry_sleep = tokio::time::sleep_until(retry_at.unwrap_or_else(Instant::now));
            tokio::select! {
                biased;
                () = self.shutdown.cancelled() => return End::Shutdown,
                ev = events.recv() => match ev {
                    Some(ev) => {
                        if let Some(end) = self.on_event(client, ev).await {
                            return end;
                        }
                    }
                    None => return End::Lost,
                },
                () = self.wake.notified(), if retry_at.is_none() => {}
                () = retry_sleep, if retry_at.is_some() => {}
            }
        }
    }

    /// Handles a server event; `Some` when the connection is over.
    async fn on_event(&mut self, client: &SocketClient, ev: ServerEvent) -> Option<End> {
        match ev {
            ServerEvent::Event { name, data } if name == event::AUTH_EXPIRING => {
                debug!(%data, "token expiring; refreshing in band");
                self.refresh(client).await;
                None
            }
            ServerEvent::Event { name, .. } if name == event::AUTH_EXPIRED => {
                debug!("token expired; reconnecting with a fresh one");
                Some(End::Lost)
            }
            ServerEvent::Disconnected { reason } => {
                debug!(%reason, "driver socket disconnected");
                Some(End::Lost)
            }
            _ => None,
        }
    }

    async fn refresh(&mut self, client: &SocketClient) {
        let token = match self.config.token_provider.token().await {
            Ok(token) => token,
            Err(e) => {
                self.set_error(format!("token provider: {e}"));
                return;
            }
        };
        match client.emit_with_ack(event::AUTH_REFRESH, &json!({ "token": token }), self.config.ack_timeout).await {
            Ok(ack) if ack.get("status").and_then(Value::as_str) == Some("ok") => debug!("token refreshed"),
            Ok(ack) => self.set_error(format!("auth:refresh refused: {ack}")),
            Err(e) => self.set_error(format!("auth:refresh: {e}")),
        }
    }

    /// Sends one batch over the socket; `None` when the outbox is empty.
    async fn send_socket_batch(&mut self, client: &SocketClient) -> Option<Verdict> {
        let batch = match self.peek().await {
            Ok(batch) if batch.is_empty() => return None,
            Ok(batch) => batch,
            Err(e) => {
                self.set_error(e.to_string());
                return Some(Verdict::Retry);
            }
        };
        let updates: Vec<&Value> = batch.iter().map(|e| &e.payload).collect();
        let payload = json!({ "updates": updates });
        match client.emit_with_ack(event::LOCATION_BATCH, &payload, self.config.ack_timeout).await {
            Ok(ack) => Some(self.apply(&batch, &ack).await),
            Err(e) => {
                self.set_error(format!("location:batch: {e}"));
                Some(Verdict::Broken)
            }
        }
    }

    /// Drains the outbox over HTTP until `until` (the next socket attempt).
    async fn drain_http_until(&mut self, until: Instant) -> End {
        let mut retry_at: Option<Instant> = None;
        loop {
            if Instant::now() >= until {
                return End::Lost;
            }
            if retry_at.is_none_or(|t| Instant::now() >= t) {
                retry_at = None;
                let shutdown = self.shutdown.clone();
                let verdict = tokio::select! {
                    biased;
                    () = shutdown.cancelled() => return End::Shutdown,
                    v = self.send_http_batch() => v,
                };
                match verdict {
                    Some(Verdict::Progress) => {
                        self.send_backoff.reset();
                        continue;
                    }
                    Some(_) => retry_at = Some(Instant::now() + self.send_backoff.next_delay()),
                    None => {}
                }
            }
            let retry_sleep = tokio::time::sleep_until(retry_at.unwrap_or_else(Instant::now));
            tokio::select! {
                biased;
                () = self.shutdown.cancelled() => return End::Shutdown,
                () = tokio::time::sleep_until(until) => return End::Lost,
                () = self.wake.notified(), if retry_at.is_none() => {}
                () = retry_sleep, if retry_at.is_some() => {}
            }
        }
    }

    async fn send_http_batch(&mut self) -> Option<Verdict> {
        let batch = match self.peek().await {
            Ok(batch) if batch.is_empty() => return None,
            Ok(batch) => batch,
            Err(e) => {
                self.set_error(e.to_string());
                return Some(Verdict::Retry);
            }
        };
        let token = match self.config.token_provider.token().await {
            Ok(token) => token,
            Err(e) => {
                self.set_error(format!("token provider: {e}"));
                return Some(Verdict::Retry);
            }
        };
        let updates: Vec<&Value> = batch.iter().map(|e| &e.payload).collect();
        let body = json!({ "updates": updates }).to_string();
        let response = http::request(
            &self.config.url,
            "POST",
            HTTP_FALLBACK_PATH,
            &token,
            &self.config.http_headers,
            Some(body.as_bytes()),
            self.config.http_timeout,
        )
        .await;
        let response = match response {
            Ok(r) => r,
            Err(e) => {
                self.set_error(format!("http fallback: {e}"));
                return Some(Verdict::Retry);
            }
        };
        match (response.status, response.json()) {
            (200 | 400 | 401 | 403 | 413 | 429 | 503, Ok(body)) => Some(self.apply(&batch, &body).await),
            (status, _) => {
                self.set_error(format!("http fallback: status {status}"));
                Some(Verdict::Retry)
            }
        }
    }

    async fn peek(&self) -> Result<Vec<OutboxEntry>, DriverError> {
        let max = self.config.batch_size;
        blocking(&self.store.outbox, move |o| o.peek(max)).await
    }

    /// Applies an ack to the outbox and the state.
    async fn apply(&mut self, batch: &[OutboxEntry], ack: &Value) -> Verdict {
        let outcome = interpret_ack(batch, ack);
        for (id, code, message) in &outcome.park {
            warn!(%id, %code, %message, "fix refused for good; moved to dead letters");
        }
        let (remove, park) = (outcome.remove.clone(), outcome.park.clone());
        if outcome.last_ack.is_some() {
            self.store.state.send_modify(|s| s.last_ack.clone_from(&outcome.last_ack));
        }
        let applied = mutate(&self.store, move |o| {
            o.remove(&remove)?;
            for (id, code, message) in &park {
                o.park(id, code, message)?;
            }
            Ok(())
        })
        .await;
        if let Err(e) = applied {
            self.set_error(e.to_string());
            return Verdict::Retry;
        }
        if outcome.reauth {
            self.set_error("token refused; reconnecting with a fresh one".to_owned());
            Verdict::Reauth
        } else if outcome.retry {
            self.set_error(format!("server asked to retry: {ack}"));
            Verdict::Retry
        } else {
            self.store.state.send_modify(|s| s.last_error = None);
            Verdict::Progress
        }
    }

    fn set_connection(&self, connection: DriverConnection) {
        self.store.state.send_if_modified(|s| {
            let changed = s.connection != connection;
            s.connection = connection;
            changed
        });
    }

    fn set_error(&self, error: String) {
        self.store.state.send_modify(|s| s.last_error = Some(error));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(n: usize) -> Vec<OutboxEntry> {
        (0..n)
            .map(|i| OutboxEntry { id: format!("id{i}"), payload: json!({"id": format!("id{i}")}), created_at_ms: 0 })
            .collect()
    }

    #[test]
    fn per_item_results_are_sorted_into_remove_retry_and_park() {
        let batch = entries(4);
        let ack = json!({"status": "ok", "results": [
            {"status": "ok", "id": "id0", "seq": 7, "duplicate": false},
            {"status": "ok", "id": "id1", "seq": 3, "duplicate": true},
            {"status": "error", "code": "RATE_LIMITED", "message": "slow down", "retryable": true},
            {"status": "error", "code": "INVALID_COORDINATES", "message": "lat", "retryable": false},
        ]});
        let out = interpret_ack(&batch, &ack);
        assert_eq!(out.remove, vec!["id0".to_owned(), "id1".to_owned()]);
        assert_eq!(out.park, vec![("id3".to_owned(), "INVALID_COORDINATES".to_owned(), "lat".to_owned())]);
        assert!(out.retry && !out.reauth);
        assert_eq!(out.last_ack, Some(("id1".to_owned(), 3)));
    }

    #[test]
    fn retryable_falls_back_to_the_code_when_the_flag_is_missing() {
        let batch = entries(1);
        let out =
            interpret_ack(&batch, &json!({"status": "ok", "results": [{"status": "error", "code": "UNAVAILABLE"}]}));
        assert!(out.retry && out.park.is_empty());
    }

    #[test]
    fn batch_level_errors() {
        let batch = entries(2);
        let expired = interpret_ack(&batch, &json!({"status": "error", "code": "TOKEN_EXPIRED", "message": "x"}));
        assert!(expired.reauth && expired.park.is_empty() && expired.remove.is_empty());
        let forbidden = interpret_ack(&batch, &json!({"status": "error", "code": "FORBIDDEN", "message": "x"}));
        assert!(forbidden.retry && forbidden.park.is_empty());
        let bad = interpret_ack(&batch, &json!({"status": "error", "code": "INVALID_PAYLOAD", "message": "bad"}));
        assert_eq!(bad.park.len(), 2);
        let garbage = interpret_ack(&batch, &json!({"status": "ok", "results": [{}]}));
        assert!(garbage.retry && garbage.remove.is_empty(), "a result count mismatch keeps everything");
    }

    #[test]
    fn fix_payload_has_the_contract_fields() {
        let mut fix = Fix::new(13.75, 100.5);
        fix.recorded_at_ms = 1_700_000_000_000;
        fix.speed = Some(3.5);
        assert_eq!(
            fix.to_payload(),
            json!({"lat": 13.75, "lng": 100.5, "recordedAt": 1_700_000_000_000i64, "speed": 3.5})
        );
    }
}
