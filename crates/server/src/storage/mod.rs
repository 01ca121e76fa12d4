//! The storage boundary: one small trait, [`EventLog`], that the sequencer,
//! the tailer, replay and the REST routes use. Two implementations: the
//! embedded [`sqlite::SqliteLog`] (one node, the default) and
//! [`postgres::PgLog`] (any number of nodes on one database). Which one runs
//! is decided in one place, [`crate::backend`].
//!
//! # Contract of an `EventLog`
//! * `append` is called by one caller per node at a time (its sequencer);
//!   several nodes may append at once. In one atomic commit it looks up
//!   every `(driver, id)` with `dedup` set, runs the domain rule
//!   ([`crate::domain::fleet::apply`]) on the driver's latest state, gives
//!   each new event the next `seq`, stores it and the new latest state, and
//!   returns one outcome per input, in order. Commits become visible in
//!   `seq` order. An `Ok` means the commit is durable.
//! * `seq` starts at 1, has no holes and never goes back, also across
//!   restarts, nodes, and after retention pruned everything.
//! * `read_after(s)` returns events with `seq > s` in order, the committed
//!   head when it read them, and says (`gap`) when some events after `s`
//!   were already pruned by retention. A stored row that cannot be read
//!   back (damaged on disk, written by something else) is reported — an
//!   error log with its `seq`, [`EventLog::damaged_rows`] — and skipped,
//!   never turned into a plausible event.
//! * `stream_id` is fixed when the store is created and changes only when
//!   the store is replaced.

use std::future::Future;
use std::pin::Pin;

use wecare_proto::{DriverId, Seq};

use crate::clock::Millis;
use crate::domain::event::{NewEvent, SharedEvent};
use crate::domain::fleet::DriverState;
use crate::domain::revocation::{Revocation, Revoked};

pub(crate) mod footprint;
mod legacy;
pub(crate) mod migrate;
mod packed_id;
pub(crate) mod postgres;
pub(crate) mod row;
pub(crate) mod sqlite;
#[cfg(test)]
pub(crate) mod testing;

/// What the embedded store's offline guard asks of the node in front of it:
/// whether a driver holds a socket here, or held one within `grace` ms (an
/// offline event for a driver that is back is not stored). A cluster keeps
/// these facts in its database instead; `crate::cluster::sockets` is the
/// node's answer.
pub(crate) trait SocketsHeld: Send + Sync + std::fmt::Debug {
    fn connected_within(&self, driver: &DriverId, grace: Millis, now: Millis) -> bool;
}

/// No node in front (a tool opening the store offline): nobody connected.
#[derive(Debug)]
pub(crate) struct NoSockets;

impl SocketsHeld for NoSockets {
    fn connected_within(&self, _: &DriverId, _: Millis, _: Millis) -> bool {
        false
    }
}

/// How a revocation is keyed in a store: `(kind, key)`.
pub(crate) fn revocation_key(r: &Revoked) -> (&'static str, &str) {
    match r {
        Revoked::Token(h) => ("token", h),
        Revoked::User(u) => ("user", u),
    }
}

/// A stored `(kind, key)` back into what it revokes.
pub(crate) fn revoked_from(kind: &str, key: String) -> Option<Revoked> {
    match kind {
        "token" => Some(Revoked::Token(key)),
        "user" => Some(Revoked::User(key)),
        _ => None,
    }
}

/// The v1.3 upgrade of a store written before it (both backends run it
/// once): before v1.3 every driver got the status `AVAILABLE` until it
/// reported one, so a stored `AVAILABLE` of a driver with no
/// `driver:status` event in the stream was most likely invented. It
/// becomes "not reported" (empty), so it is neither shown nor forwarded
/// over the status the WeCare backend set.
pub(crate) const FORGET_INVENTED_STATUSES: &str = "UPDATE drivers SET status = '' WHERE status = 'AVAILABLE'
     AND NOT EXISTS (SELECT 1 FROM events e WHERE e.driver_id = drivers.driver_id AND e.kind = 2)";

pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A storage failure. Callers answer `UNAVAILABLE` (retryable) and log it.
/// It names no database library: each backend converts its own errors.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The database refused or failed the operation, or cannot be reached.
    #[error("database: {0}")]
    Database(#[source] Box<dyn std::error::Error + Send + Sync>),
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
    /// The storage settings cannot be used (e.g. a malformed `DATABASE_URL`).
    #[error("storage configuration: {0}")]
    Config(String),
}

/// The outcome of appending one event.
#[derive(Debug, Clone)]
pub(crate) enum Appended {
    /// Stored at a new `seq`.
    Stored(SharedEvent),
    /// `(driver, id)` was already stored, at this `seq`; nothing new was stored.
    Duplicate(Seq),
    /// A presence event that changed nothing (or whose guard failed): not stored.
    Unchanged,
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
    /// The newest committed `seq` this node has seen (`Seq::ZERO` for an
    /// empty stream). With several nodes it may lag; `read_after` reports
    /// the database's own head.
    fn head(&self) -> Seq;
    /// Whether the last write succeeded (for `/readyz`).
    fn is_writable(&self) -> bool;
    /// Dedup, sequence, store and commit `batch` at once.
    fn append(&self, batch: Vec<NewEvent>) -> BoxFuture<'_, Result<Vec<Appended>, StorageError>>;
    /// Up to `limit` events with `seq > after`, in order.
    fn read_after(&self, after: Seq, limit: usize) -> BoxFuture<'_, Result<Page, StorageError>>;
    /// The latest state of every known driver, consistent with its `seq`.
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
    /// The position a named reader (the forwarder) stored, if any.
    fn cursor(&self, name: &'static str) -> BoxFuture<'_, Result<Option<Seq>, StorageError>>;
    /// Stores a named reader's position (durably, for its restart).
    fn set_cursor(&self, name: &'static str, seq: Seq) -> BoxFuture<'_, Result<(), StorageError>>;
    /// Stores a revocation (it survives restarts; an older one for the same
    /// user is moved forward). Drops the ones past their `until`.
    fn revoke(&self, r: Revocation) -> BoxFuture<'_, Result<(), StorageError>>;
    /// The revocations still in force at `now_secs`.
    fn revocations(&self, now_secs: i64) -> BoxFuture<'_, Result<Vec<Revocation>, StorageError>>;
    /// Stored rows found unreadable so far (they were skipped).
    fn damaged_rows(&self) -> u64;
    /// Called once at a clean stop, after the last commit: leaves the store
    /// whole in its own files (the embedded store folds its write-ahead log
    /// into the one file, so a copy of that file taken after a stop holds
    /// every event). Durability never depends on it.
    fn settle(&self) -> BoxFuture<'_, Result<(), StorageError>> {
        Box::pin(async { Ok(()) })
    }
}
