//! The background sender: connects (a fresh token each attempt), drains the outbox over the socket,
//! reconnects with backoff forever, and drains over `POST /api/driver-locations` while the socket is unusable.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};
use wecare_proto::event;
use wecare_proto::payload::RefreshOk;

use super::ack::interpret_ack;
use super::state::{Store, blocking, mutate};
use super::{DriverConfig, DriverConnection, DriverError};
use crate::backoff::Backoff;
use crate::http::HttpTarget;
use crate::outbox::OutboxEntry;
use crate::{ClientError, ConnectOptions, ServerEvent, SocketClient, http};

/// The legacy REST path the existing web client falls back to.
const HTTP_FALLBACK_PATH: &str = "/api/driver-locations";
/// Consecutive ack timeouts after which the socket is presumed dead.
const ACK_TIMEOUTS_BEFORE_RECONNECT: u32 = 2;

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

/// The sender task: owns the connection and drains the outbox.
pub(super) struct Worker {
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
    pub(super) fn new(config: DriverConfig, store: Arc<Store>, wake: Arc<Notify>, shutdown: CancellationToken) -> Self {
        Self {
            backoff: Backoff::new(config.backoff),
            send_backoff: Backoff::new(config.backoff),
            config,
            store,
            wake,
            shutdown,
            down_since: Instant::now(),
            ws_refused: false,
        }
    }

    pub(super) async fn run(mut self) {
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
        opts.tls = self.config.tls.clone();
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
            Ok(ack) if RefreshOk::deserialize(&ack).is_ok() => debug!("token refreshed"),
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
        let target = HttpTarget { url: &self.config.url, tls: &self.config.tls, headers: &self.config.http_headers };
        let response =
            http::request(target, "POST", HTTP_FALLBACK_PATH, &token, Some(body.as_bytes()), self.config.http_timeout)
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
