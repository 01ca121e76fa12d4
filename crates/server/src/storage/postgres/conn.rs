//! Connections to PostgreSQL that come back by themselves: a slot holds one
//! connection, made on first use and made again after the database went
//! away (restart, network cut), so a node recovers without a restart.

use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::Mutex;
use tokio_postgres::{Client, Config, NoTls};

use crate::storage::StorageError;

/// How long connecting may take before the caller is answered UNAVAILABLE.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

impl From<tokio_postgres::Error> for StorageError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Database(Box::new(e))
    }
}

/// The database's clock, epoch ms: every lease and grace period is judged
/// on it, so nodes with skewed clocks agree.
pub(crate) const DB_NOW: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

/// Parses a `postgres://` URL.
pub(crate) fn parse_url(url: &str) -> Result<Config, StorageError> {
    let mut config: Config = url.parse().map_err(|e| StorageError::Config(format!("DATABASE_URL: {e}")))?;
    config.connect_timeout(CONNECT_TIMEOUT);
    if config.get_application_name().is_none() {
        config.application_name("wecare-rt");
    }
    Ok(config)
}

/// Opens one connection; its I/O runs on its own task on `runtime`, which
/// ends when the client is dropped or the connection breaks. `runtime` is
/// the server's, whoever connects: a connection shared by every caller must
/// not live on the thread of the one that happened to (re)connect it — the
/// forwarder's runs at a low priority and stops first.
pub(crate) async fn connect(config: &Config, runtime: &Handle) -> Result<Client, StorageError> {
    let (client, connection) = tokio::time::timeout(CONNECT_TIMEOUT, config.connect(NoTls))
        .await
        .map_err(|_| StorageError::Database("connecting to PostgreSQL timed out".into()))??;
    runtime.spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "postgres connection ended");
        }
    });
    Ok(client)
}

/// A connection plus what was prepared on it.
pub(crate) trait Prepared: Sized + Send + Sync + 'static {
    fn prepare(client: Client) -> impl std::future::Future<Output = Result<Self, StorageError>> + Send;
    fn client(&self) -> &Client;
}

/// One connection, remade when it broke.
#[derive(Debug)]
pub(crate) struct Slot<P> {
    config: Config,
    runtime: Handle,
    conn: Mutex<Option<Arc<P>>>,
}

impl<P: Prepared> Slot<P> {
    /// A slot whose connections run on the current runtime (the server's).
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub(crate) fn new(config: Config) -> Self {
        Self { config, runtime: Handle::current(), conn: Mutex::new(None) }
    }

    /// The connection, connecting (and preparing) first if there is none or
    /// the last one broke.
    pub(crate) async fn get(&self) -> Result<Arc<P>, StorageError> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref()
            && !c.client().is_closed()
        {
            return Ok(Arc::clone(c));
        }
        *slot = None;
        let prepared = Arc::new(P::prepare(connect(&self.config, &self.runtime).await?).await?);
        *slot = Some(Arc::clone(&prepared));
        Ok(prepared)
    }
}

/// A plain connection, nothing prepared.
#[derive(Debug)]
pub(crate) struct Plain(pub(crate) Client);

impl Prepared for Plain {
    async fn prepare(client: Client) -> Result<Self, StorageError> {
        Ok(Self(client))
    }

    fn client(&self) -> &Client {
        &self.0
    }
}
