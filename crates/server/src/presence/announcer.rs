//! Announcing presence without holding anything up: the newest presence
//! each driver should have (online, or offline after its grace) is kept
//! per driver and stored by one task, in order, retrying while the store
//! is down. A store outage then costs one entry per driver, never a queue
//! that grows with reconnects, and no socket handler waits for the store.
//!
//! Order per driver holds: one task stores, and a wish made while a batch
//! is being stored goes into the next batch. A newer online replaces what
//! is owed; an offline (guarded in the store's commit) keeps an online
//! owed before it — the driver that came and went during an outage is
//! announced as it is now.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use wecare_proto::DriverId;

use crate::clock::Millis;
use crate::domain::event::NewEvent;
use crate::stream::sequencer::Sequencer;

/// The presence a driver should be announced with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Wish {
    /// Online (a socket of it opened), as of `at`.
    Online { at: Millis },
    /// Offline unless it had a socket within `grace` (the store's guard).
    Offline { grace: Millis, at: Millis },
}

/// What a driver is owed: an online, a guarded offline, or an online then
/// a guarded offline.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Owed {
    online: Option<Millis>,
    offline: Option<(Millis, Millis)>,
}

/// The wishes not stored yet, per driver, in the order drivers first got
/// one (so a long outage does not starve anyone).
#[derive(Debug, Default)]
pub(super) struct Wishes {
    order: Vec<DriverId>,
    owed: HashMap<DriverId, Owed>,
}

impl Wishes {
    /// An online replaces whatever is owed (the driver has a socket now).
    /// An offline keeps an online owed before it: the offline's guard may
    /// drop it (the driver reconnected meanwhile), and the online must not
    /// be lost with it.
    pub(super) fn want(&mut self, driver: DriverId, wish: Wish) {
        let owed = match self.owed.entry(driver) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => {
                self.order.push(e.key().clone());
                e.insert(Owed::default())
            }
        };
        match wish {
            Wish::Online { at } => *owed = Owed { online: Some(at), offline: None },
            Wish::Offline { grace, at } => owed.offline = Some((grace, at)),
        }
    }

    /// Everything wished so far, as events to store in this order; none
    /// left behind.
    pub(super) fn take(&mut self) -> Vec<NewEvent> {
        let mut owed = std::mem::take(&mut self.owed);
        let mut events = Vec::new();
        for driver in std::mem::take(&mut self.order) {
            let Some(o) = owed.remove(&driver) else { continue };
            if let Some(at) = o.online {
                events.push(NewEvent::online(driver.clone(), at));
            }
            if let Some((grace, at)) = o.offline {
                events.push(NewEvent::offline(driver, grace, at));
            }
        }
        events
    }

    pub(super) fn len(&self) -> usize {
        self.order.len()
    }
}

/// Handle: wish a driver's presence; the storing task does the rest.
#[derive(Debug, Clone)]
pub(super) struct Announcer {
    wishes: Arc<Mutex<Wishes>>,
    wake: Arc<Notify>,
}

impl Announcer {
    /// Starts the storing task, until `stop`.
    pub(super) fn spawn(
        sequencer: Sequencer,
        tracker: &tokio_util::task::TaskTracker,
        stop: CancellationToken,
    ) -> Self {
        let announcer = Self { wishes: Arc::default(), wake: Arc::new(Notify::new()) };
        tracker.spawn(announcer.clone().store(sequencer, stop));
        announcer
    }

    pub(super) fn want(&self, driver: DriverId, wish: Wish) {
        self.lock().want(driver, wish);
        self.wake.notify_one();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Wishes> {
        // A panic while holding it leaves plain data behind: keep using it.
        self.wishes.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn store(self, sequencer: Sequencer, stop: CancellationToken) {
        loop {
            tokio::select! {
                () = self.wake.notified() => {}
                () = stop.cancelled() => return,
            }
            let batch = self.lock().take();
            let mut delay = Duration::from_millis(100);
            while let Err(e) = sequencer.submit(batch.clone()).await {
                tracing::warn!(error = %e, events = batch.len(), waiting = self.lock().len(), "presence not stored; retrying");
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = stop.cancelled() => return,
                }
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(events: &[NewEvent]) -> Vec<(String, Option<Millis>)> {
        events.iter().map(|e| (e.driver.as_str().to_owned(), e.offline_guard())).collect()
    }

    #[test]
    fn the_newest_wish_per_driver_in_first_wished_order() {
        let mut w = Wishes::default();
        w.want(DriverId::new("a"), Wish::Offline { grace: 15_000, at: 1 });
        w.want(DriverId::new("b"), Wish::Online { at: 2 });
        w.want(DriverId::new("a"), Wish::Online { at: 3 });
        w.want(DriverId::new("b"), Wish::Online { at: 4 });
        assert_eq!(w.len(), 2, "one entry per driver, however many reconnects");
        let events = w.take();
        assert_eq!(shape(&events), [("a".to_owned(), None), ("b".to_owned(), None)]);
        assert_eq!(events[1].received, 4, "the newest");
        assert!(w.take().is_empty(), "taken once");
    }

    #[test]
    fn an_offline_keeps_the_online_owed_before_it() {
        // Online while the store was down, then a socket dropped and the
        // grace ran out: if the driver reconnected, the offline's guard
        // drops it — and the online must still be stored.
        let mut w = Wishes::default();
        w.want(DriverId::new("a"), Wish::Online { at: 1 });
        w.want(DriverId::new("a"), Wish::Offline { grace: 10, at: 2 });
        w.want(DriverId::new("a"), Wish::Offline { grace: 10, at: 3 });
        let events = w.take();
        assert_eq!(shape(&events), [("a".to_owned(), None), ("a".to_owned(), Some(10))]);
        assert_eq!(events[1].received, 3);
    }

    #[test]
    fn a_wish_after_a_take_goes_into_the_next_batch() {
        let mut w = Wishes::default();
        w.want(DriverId::new("a"), Wish::Online { at: 1 });
        let first = w.take();
        w.want(DriverId::new("a"), Wish::Offline { grace: 10, at: 2 });
        assert_eq!(shape(&first), [("a".to_owned(), None)]);
        assert_eq!(shape(&w.take()), [("a".to_owned(), Some(10))]);
    }
}
