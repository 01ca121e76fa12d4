//! The sockets drivers hold on this node, and when each driver's last one
//! closed: what a single-node store's presence guard reads (a PostgreSQL
//! cluster keeps the same facts in its database, per node).

use std::collections::HashMap;
use std::sync::Mutex;

use wecare_proto::DriverId;

use crate::clock::Millis;
use crate::storage::SocketsHeld;

#[derive(Debug, Default, Clone, Copy)]
struct Entry {
    sockets: usize,
    closed_at: Millis,
}

/// Per driver: open sockets and the time the last one closed.
#[derive(Debug, Default)]
pub(crate) struct LocalSockets {
    drivers: Mutex<HashMap<DriverId, Entry>>,
}

impl LocalSockets {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<DriverId, Entry>> {
        self.drivers.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn opened(&self, driver: &DriverId) {
        self.map().entry(driver.clone()).or_default().sockets += 1;
    }

    pub(crate) fn closed(&self, driver: &DriverId, now: Millis) {
        if let Some(e) = self.map().get_mut(driver) {
            e.sockets = e.sockets.saturating_sub(1);
            e.closed_at = now;
        }
    }

    /// Counts `driver` as having closed its last socket at `now`, unless
    /// there is a record of it already.
    pub(crate) fn restored(&self, driver: &DriverId, now: Millis) {
        self.map().entry(driver.clone()).or_insert(Entry { sockets: 0, closed_at: now });
    }

    /// Forgets drivers gone for longer than `grace` (their entries are
    /// only needed for the guard's grace window).
    pub(crate) fn forget_gone(&self, grace: Millis, now: Millis) {
        self.map().retain(|_, e| e.sockets > 0 || e.closed_at > now.saturating_sub(grace));
    }
}

impl SocketsHeld for LocalSockets {
    fn connected_within(&self, driver: &DriverId, grace: Millis, now: Millis) -> bool {
        self.map().get(driver).is_some_and(|e| e.sockets > 0 || e.closed_at > now.saturating_sub(grace))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_driver_counts_as_connected_until_the_grace_after_its_last_socket() {
        let s = LocalSockets::default();
        let d = DriverId::new("d");
        assert!(!s.connected_within(&d, 100, 1_000));
        s.opened(&d);
        s.opened(&d);
        s.closed(&d, 1_000);
        assert!(s.connected_within(&d, 100, 5_000), "one socket still open");
        s.closed(&d, 1_000);
        assert!(s.connected_within(&d, 100, 1_050), "within the grace");
        assert!(!s.connected_within(&d, 100, 1_101));
        s.forget_gone(100, 1_101);
        assert!(s.map().is_empty());
    }
}
