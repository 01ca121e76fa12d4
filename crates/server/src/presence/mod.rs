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
//! service restarted. A node whose lease lapsed while the database was away
//! was judged dead by the others for a while: when it renews its lease it
//! asks for `online` again for every driver it holds a socket of.

use std::collections::{HashMap, VecDeque};
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
/// waits: while the store is down the changes queue in the recording task
/// ([`Pending`]: about one entry per open socket) and the announcements in
/// the [`announcer`] (one per driver).
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

/// Socket changes not recorded yet, in order; the first is the one being
/// tried. A close cancels a later open of the same driver that was never
/// tried — the socket came and went while the store was down — because the
/// cluster counts sockets per driver: the pair would change nothing. So a
/// long outage with phones reconnecting all the while queues about one
/// entry per socket, not one per reconnect.
#[derive(Debug, Default)]
struct Pending(VecDeque<Change>);

impl Pending {
    fn push(&mut self, change: Change) {
        if let Change::Closed(driver) = &change {
            let untried_open = self.0.iter().skip(1).rposition(|c| matches!(c, Change::Opened(d) if d == driver));
            if let Some(i) = untried_open {
                self.0.remove(i + 1);
                return;
            }
        }
        self.0.push_back(change);
    }
}

/// Records socket changes in order (an open and its close must not swap),
/// then wishes the presence event. While the cluster's store is down the
/// first change is retried (later ones wait behind it, see [`Pending`]),
/// so presence catches up once the store is back.
async fn record(deps: PresenceDeps, announcer: Announcer, mut rx: mpsc::UnboundedReceiver<Change>) {
    let mut pending = Pending::default();
    // Sockets recorded per driver on this node, to announce again on a rejoin.
    let mut held: HashMap<DriverId, u32> = HashMap::new();
    let mut rejoins = deps.cluster.rejoins();
    let mut delay = Duration::from_millis(100);
    loop {
        let mut rejoined = false;
        if pending.0.is_empty() {
            tokio::select! {
                c = rx.recv() => match c { Some(c) => pending.push(c), None => return },
                Ok(()) = rejoins.changed() => rejoined = true,
                () = deps.stop.cancelled() => return,
            }
        }
        if rejoins.has_changed().unwrap_or(false) {
            rejoins.borrow_and_update();
            rejoined = true;
        }
        if rejoined {
            // Other nodes may have judged this one dead while its lease
            // lapsed, and announced its drivers offline.
            for driver in held.keys() {
                announcer.want(driver.clone(), Wish::Online { at: now_ms() });
            }
        }
        while let Ok(c) = rx.try_recv() {
            pending.push(c);
        }
        let Some(first) = pending.0.front() else { continue };
        let recorded = match first {
            Change::Opened(driver) => deps.cluster.driver_socket_opened(driver).await,
            Change::Closed(driver) => deps.cluster.driver_socket_closed(driver).await,
        };
        if let Err(e) = recorded {
            tracing::warn!(error = %e, waiting = pending.0.len(), "socket change not recorded; retrying");
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = deps.stop.cancelled() => return,
            }
            delay = (delay * 2).min(Duration::from_secs(2));
            continue;
        }
        delay = Duration::from_millis(100);
        match pending.0.pop_front() {
            Some(Change::Opened(driver)) => {
                *held.entry(driver.clone()).or_default() += 1;
                announcer.want(driver, Wish::Online { at: now_ms() });
            }
            Some(Change::Closed(driver)) => {
                if let Some(n) = held.get_mut(&driver) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        held.remove(&driver);
                    }
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
            None => {}
        }
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
                    tracing::debug!(driver = ?driver.as_str(), "no socket anywhere for the grace period");
                    announcer.want(driver, Wish::Offline { grace: deps.grace_ms(), at: now_ms() });
                }
            }
            Err(e) => tracing::debug!(error = %e, "presence sweep failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opened(d: &str) -> Change {
        Change::Opened(DriverId::new(d))
    }

    fn closed(d: &str) -> Change {
        Change::Closed(DriverId::new(d))
    }

    fn shape(p: &Pending) -> Vec<String> {
        p.0.iter()
            .map(|c| match c {
                Change::Opened(d) => format!("+{}", d.as_str()),
                Change::Closed(d) => format!("-{}", d.as_str()),
            })
            .collect()
    }

    #[test]
    fn reconnects_during_an_outage_queue_one_entry_per_open_socket() {
        let mut p = Pending::default();
        p.push(closed("a")); // being tried: the store is down
        for _ in 0..100 {
            p.push(opened("a"));
            p.push(closed("a"));
        }
        p.push(opened("a"));
        assert_eq!(shape(&p), ["-a", "+a"], "the socket open now, after the close being tried");
    }

    #[test]
    fn the_change_being_tried_is_never_cancelled_and_other_drivers_are_untouched() {
        let mut p = Pending::default();
        p.push(opened("a")); // being tried: it may have been recorded already
        p.push(opened("b"));
        p.push(closed("a"));
        p.push(closed("c"));
        assert_eq!(shape(&p), ["+a", "+b", "-a", "-c"]);
        p.push(opened("b"));
        p.push(closed("b"));
        assert_eq!(shape(&p), ["+a", "+b", "-a", "-c"], "the later, untried open of b is cancelled");
    }
}
