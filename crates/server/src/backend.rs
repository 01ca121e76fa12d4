//! The one place the storage backend is chosen: `DATABASE_URL` (a
//! PostgreSQL cluster) or the data folder (the embedded SQLite store).

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cluster::Cluster;
use crate::cluster::local::LocalCluster;
use crate::cluster::postgres::PgCluster;
use crate::cluster::sockets::LocalSockets;
use crate::config::ServerConfig;
use crate::storage::postgres::{PgLog, parse_url};
use crate::storage::sqlite::SqliteLog;
use crate::storage::{EventLog, StorageError};

/// The stream and the coordination of one node.
#[derive(Debug)]
pub(crate) struct Backend {
    pub(crate) log: Arc<dyn EventLog>,
    pub(crate) cluster: Arc<dyn Cluster>,
}

/// Opens the backend `config` asks for. Background tasks (PostgreSQL's
/// lease heartbeat and `LISTEN`) run on `tracker` until `stop`.
///
/// # Errors
/// The store cannot be opened or the database reached.
pub(crate) async fn open(
    config: &ServerConfig,
    tracker: &TaskTracker,
    stop: CancellationToken,
) -> Result<Backend, StorageError> {
    match &config.database_url {
        Some(url) => {
            let pg = parse_url(url)?;
            let log = PgLog::open(&pg).await?;
            let cluster = PgCluster::start(&pg, log.writable_flag(), tracker, stop).await?;
            Ok(Backend { log: Arc::new(log), cluster })
        }
        None => {
            let sockets: Arc<LocalSockets> = Arc::default();
            let log = SqliteLog::open(&config.data_dir, Arc::clone(&sockets) as Arc<dyn crate::storage::SocketsHeld>)?;
            Ok(Backend { log: Arc::new(log), cluster: Arc::new(LocalCluster::new(sockets)) })
        }
    }
}
