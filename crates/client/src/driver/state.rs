//! [`DriverState`] and [`DriverConnection`], published on a `watch` channel, and the [`Store`] that runs
//! outbox calls off the runtime and republishes the outbox counters after every mutation.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;

use super::DriverError;
use crate::outbox::{Outbox, OutboxError};

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
/// ([`Driver::state`](super::Driver::state)).
#[derive(Debug, Clone, PartialEq)]
pub struct DriverState {
    /// The connection.
    pub connection: DriverConnection,
    /// Fixes in the outbox waiting for an ack.
    pub pending: u64,
    /// The last fix the server acked: its id and `seq`.
    pub last_ack: Option<(String, u64)>,
    /// Fixes refused for good ([`Driver::dead_letters`](super::Driver::dead_letters)).
    pub dead_letters: u64,
    /// Fixes the outbox limits discarded unsent.
    pub dropped: u64,
    /// The last failure (connect, ack, HTTP), for display; cleared on success.
    pub last_error: Option<String>,
}

/// Runs `f` on the outbox on a blocking thread, off the runtime.
pub(super) async fn blocking<T, F>(outbox: &Arc<dyn Outbox>, f: F) -> Result<T, DriverError>
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
pub(super) struct Store {
    pub(super) outbox: Arc<dyn Outbox>,
    pub(super) state: watch::Sender<DriverState>,
    pub(super) publish: Mutex<()>,
}

pub(super) async fn mutate<T, F>(store: &Arc<Store>, f: F) -> Result<T, DriverError>
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
