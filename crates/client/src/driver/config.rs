//! [`DriverConfig`] and its documented defaults, and [`OutboxStore`]: where the driver's outbox lives.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::backoff::BackoffConfig;
use crate::outbox::{Outbox, OutboxLimits};
use crate::tls::TlsConfig;
use crate::token::TokenProvider;

/// Where the driver's outbox lives.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum OutboxStore {
    /// A [`SqliteOutbox`](crate::SqliteOutbox) file, created if missing.
    Sqlite {
        /// The file.
        path: PathBuf,
        /// Its bounds.
        limits: OutboxLimits,
    },
    /// Any other implementation (e.g. [`MemoryOutbox`](crate::MemoryOutbox)).
    Custom(Arc<dyn Outbox>),
}

/// Configuration of a [`Driver`](super::Driver). Build with [`DriverConfig::new`] and adjust
/// the public fields.
#[derive(Clone)]
pub struct DriverConfig {
    /// The server's base URL, `http://HOST:PORT` or `https://HOST[:PORT]`
    /// (then both the socket and the HTTP fallback use TLS).
    pub url: String,
    /// Which CAs are trusted for an `https://` URL. Defaults to
    /// [`TlsConfig::default`]: Mozilla's roots.
    pub tls: TlsConfig,
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
            .field("tls", &self.tls)
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
            tls: TlsConfig::default(),
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
