//! The ordered stream at run time: the [`sequencer`] (group commit, this
//! node's one writer), the [`tailer`] (the committed stream, in order, into
//! this node), the [`fanout`] (live delivery, encode once), [`resume`]
//! (where a subscriber starts) and [`watcher`] (one watcher's life: snapshot
//! or resume, live, behind and caught up again), writing through a
//! [`sink::WatcherSink`] (the transport's socket; a buffer in tests).

use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wecare_proto::Seq;

use crate::metrics::Metrics;
use crate::storage::EventLog;

pub(crate) mod fanout;
pub(crate) mod resume;
pub(crate) mod sequencer;
pub(crate) mod sink;
pub(crate) mod snapshot;
pub(crate) mod tailer;
pub(crate) mod watcher;

/// What the stream tasks share.
#[derive(Debug)]
pub(crate) struct StreamDeps {
    pub(crate) log: Arc<dyn EventLog>,
    pub(crate) fanout: mpsc::Sender<fanout::Command>,
    /// The last committed `seq`, for long-polls.
    pub(crate) head: watch::Receiver<Seq>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) tracker: TaskTracker,
    /// Cancelled last in a shutdown, once the sockets are closed: the
    /// stream tasks stop (a shutdown request itself is `AppState::drain`).
    pub(crate) stop: CancellationToken,
    /// The snapshot new watchers and `/latest` share.
    pub(crate) snapshots: snapshot::SnapshotCache,
}
