//! Presence (contract §4, §11): a driver is online while it has a socket on
//! any node, and goes offline once its last socket anywhere has been gone
//! for `PRESENCE_GRACE_MS` — a phone that drops for a moment, or moves to
//! another node, does not flap.
//!
//! This node records its drivers' sockets with the cluster (in order, on
//! one task) and then asks the stream for `online` — which the store drops
//! when the stream already says so. When a socket closes it asks, after the
//! grace period, for `offline` with a guard the store checks inside its
//! commit: no socket on any live node, none closed within the grace. A
//! sweep on every node does the same for drivers no node is timing: those
//! of a node that died (its lease ran out) and those online when the whole
//! service restarted.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wecare_proto::DriverId;

use crate::clock::{Millis, now_ms};
use crate::cluster::Cluster;
use crate::storage::EventLog;
use crate::stream::sequencer::Sequencer;

mod announcer;

use announcer::{Announcer, Wish};

/// What happened to a driver's socket on this node.
#[derive(Debug)]
enum Change {
    Opened(DriverId),
    Closed(DriverId),
}

/// Handle: report a driver's sockets opening and closing. Reporting never
/// waits: while the store is down the changes queue here (one small entry
/// per socket opened or closed) and the announcements wait in the
/// [`announcer`] (one per driver).
#[derive(Debug, Clone)]
pub(crate) struct Presence {
    tx: mpsc::UnboundedSender<Change>,
}

/// What the presence tasks use.
#[derive(Debug, Clone)]
pub(crate) struct PresenceDeps {
    pub(crate) cluster: Arc<dyn Cluster>,
    pub(crate) log: Arc<dyn EventLog>,
    pub(crate) sequencer: Sequencer,
    pub(crate) grace: Duration,
    pub(crate) tracker: TaskTracker,
    pub(crate) stop: CancellationToken,
}

impl PresenceDeps {
    fn grace_ms(&self) -> Millis {
        i64::try_from(self.grace.as_millis()).unwrap_or(i64::MAX)
    }
}

impl Presence {
    /// Starts the presence task and the sweep, until `deps.stop`.
    pub(crate) fn spawn(deps: PresenceDeps) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let tracker = deps.tracker.clone();
        let announcer = Announcer::spawn(deps.sequencer.clone(), &tracker, deps.stop.clone());
        tracker.spawn(record(deps.clone(), announcer.clone(), rx));
        tracker.spawn(sweep(deps, announcer));
        Self { tx }
    }

    pub(crate) fn opened(&self, driver: DriverId) {
        let _ = self.tx.send(Change::Opened(driver));
    }

    pub(crate) fn closed(&self, driver: DriverId) {
        let _ = self.tx.send(Change::Closed(driver));
    }
}

/// Records socket changes in order (an open and its close must not swap),
/// then wishes the presence event.
async fn record(deps: PresenceDeps, announcer: Announcer, mut rx: mpsc::UnboundedReceiver<Change>) {
    loop {
        let change = tokio::select! {
            c = rx.recv() => match c { Some(c) => c, None => return },
            () = deps.stop.cancelled() => return,
        };
        // While the cluster's store is down, a change is retried until it is
        // recorded (later changes wait behind it: an open and its close keep
        // their order), so presence catches up once the store is back.
        match change {
            Change::Opened(driver) => {
                if !retrying(&deps, "socket not recorded", || deps.cluster.driver_socket_opened(&driver)).await {
                    return;
                }
                announcer.want(driver, Wish::Online { at: now_ms() });
            }
            Change::Closed(driver) => {
                if !retrying(&deps, "socket close not recorded", || deps.cluster.driver_socket_closed(&driver)).await {
                    return;
                }
                let (deps, announcer) = (deps.clone(), announcer.clone());
                deps.tracker.clone().spawn(async move {
                    tokio::select! {
                        () = tokio::time::sleep(deps.grace) => {}
                        () = deps.stop.cancelled() => return,
                    }
                    announcer.want(driver, Wish::Offline { grace: deps.grace_ms(), at: now_ms() });
                });
            }
        }
    }
}

/// Runs `op` until it succeeds (backing off to 2 s between tries); false
/// when the server stopped first.
async fn retrying<F, Fut, E>(deps: &PresenceDeps, what: &str, mut op: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let mut delay = Duration::from_millis(100);
    loop {
        match op().await {
            Ok(()) => return true,
            Err(e) => tracing::warn!(error = %e, "{what}; retrying"),
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = deps.stop.cancelled() => return false,
        }
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

/// Announces offline the online drivers no node holds a socket of (see the
/// module docs). Drivers online when this node started get the grace
/// period first, as if their sockets had just closed.
async fn sweep(deps: PresenceDeps, announcer: Announcer) {
    let every = (deps.grace / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
    let mut restored = false;
    let mut first = true;
    loop {
        if !first {
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = deps.stop.cancelled() => return,
            }
        }
        first = false;
        let online: Vec<DriverId> = match deps.log.snapshot().await {
            Ok(s) => s.drivers.into_iter().filter(|(_, s)| s.online).map(|(d, _)| d).collect(),
            Err(e) => {
                tracing::debug!(error = %e, "presence sweep: no snapshot");
                continue;
            }
        };
        if !restored {
            match deps.cluster.restored(online).await {
                Ok(()) => restored = true,
                Err(e) => tracing::warn!(error = %e, "drivers online at start not recorded"),
            }
            continue;
        }
        match deps.cluster.gone_drivers(online, deps.grace_ms()).await {
            Ok(gone) => {
                for driver in gone {
                    tracing::debug!(%driver, "no socket anywhere for the grace period");
                    announcer.want(driver, Wish::Offline { grace: deps.grace_ms(), at: now_ms() });
                }
            }
            Err(e) => tracing::debug!(error = %e, "presence sweep failed"),
        }
    }
}
