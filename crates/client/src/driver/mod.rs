//! [`Driver`]: the sending side of the SDK. Fixes go into the durable [`Outbox`] first; a background task
//! drains it over the socket (`location:batch` with acks), reconnecting forever with a fresh token, and over
//! `POST /api/driver-locations` while the socket is unusable.

mod ack;
mod config;
mod fix;
mod state;
mod worker;

use std::sync::{Arc, Mutex, PoisonError};

use serde_json::Value;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use wecare_proto::event;

use self::state::{Store, blocking, mutate};
use self::worker::Worker;
use crate::outbox::{DeadLetter, Outbox, OutboxError, SqliteOutbox};

pub use self::config::{DriverConfig, OutboxStore};
pub use self::fix::Fix;
pub use self::state::{DriverConnection, DriverState};

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
        let worker = Worker::new(config, Arc::clone(&store), Arc::clone(&wake), shutdown.clone());
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
