//! The storage boundary: one small trait, [`EventLog`], that the sequencer,
//! the fan-out and the REST routes use. The embedded implementation is
//! [`sqlite::SqliteLog`]; a scale-out one sits behind the same trait.
//!
//! # Contract of an `EventLog`
//! * `append` is called by one caller at a time (the sequencer). In one
//!   atomic commit it looks up every `(driver, id)` with `dedup` set, gives
//!   each new event the next `seq`, stores it, updates the latest state, and
//!   returns one outcome per input, in order. Nothing is visible to readers
//!   before the commit, and an `Ok` means the commit is durable.
//! * `seq` starts at 1, has no holes and never goes back, also across
//!   restarts and after retention pruned everything.
//! * `read_after(s)` returns events with `seq > s` in order and says
//!   (`gap`) when some of them were already pruned by retention.
//! * `stream_id` is fixed when the store is created and changes only when
//!   the store is replaced.

use std::future::Future;
use std::pin::Pin;

use wecare_proto::{DriverId, Seq};

use crate::clock::Millis;
use crate::domain::event::{NewEvent, SharedEvent};
use crate::domain::fleet::DriverState;

pub(crate) mod sqlite;
#[cfg(test)]
pub(crate) mod testing;

pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A storage failure. The caller answers `UNAVAILABLE` (retryable).
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The database refused or failed the operation.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The storage worker is gone (shutting down).
    #[error("storage is closed")]
    Closed,
    /// Opening the data folder failed.
    #[error("data folder {path}: {source}")]
    Io {
        /// The folder.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The stored data is not what this version writes.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

/// The outcome of appending one event.
#[derive(Debug, Clone)]
pub(crate) enum Appended {
    /// Stored at a new `seq`.
    Stored(SharedEvent),
    /// `(driver, id)` was already stored, at this `seq`; nothing new was stored.
    Duplicate(Seq),
}

/// A page of the stream.
#[derive(Debug, Default)]
pub(crate) struct Page {
    pub(crate) events: Vec<SharedEvent>,
    /// The last committed `seq` when the page was read.
    pub(crate) head: Seq,
    /// Events after the requested position were pruned by retention.
    pub(crate) gap: bool,
}

/// The latest state of every driver, as of `seq`.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    pub(crate) seq: Seq,
    pub(crate) drivers: Vec<(DriverId, DriverState)>,
}

/// The durable, ordered, deduplicated event stream. See the module docs.
pub(crate) trait EventLog: Send + Sync + std::fmt::Debug + 'static {
    /// The random id of this stream, fixed when the store was created.
    fn stream_id(&self) -> &str;
    /// The last committed `seq` (`Seq::ZERO` for an empty stream).
    fn head(&self) -> Seq;
    /// Whether the last write succeeded (for `/readyz`).
    fn is_writable(&self) -> bool;
    /// Dedup, sequence, store and commit `batch` at once.
    fn append(&self, batch: Vec<NewEvent>) -> BoxFuture<'_, Result<Vec<Appended>, StorageError>>;
    /// Up to `limit` events with `seq > after`, in order.
    fn read_after(&self, after: Seq, limit: usize) -> BoxFuture<'_, Result<Page, StorageError>>;
    /// The latest state of every known driver, consistent with `head`.
    fn snapshot(&self) -> BoxFuture<'_, Result<Snapshot, StorageError>>;
    /// A driver's fixes with `from <= recordedAt <= to`, by `recordedAt`.
    fn track(
        &self,
        driver: DriverId,
        from: Millis,
        to: Millis,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<SharedEvent>, StorageError>>;
    /// Drops events received before `before`; latest state is kept.
    fn prune(&self, before: Millis) -> BoxFuture<'_, Result<u64, StorageError>>;
}
