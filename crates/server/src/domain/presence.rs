//! Which drivers are online. A driver may hold two sockets briefly during a
//! reconnect, and a phone may drop for a moment: a driver goes offline only
//! when its last socket has been gone for the grace period, so a watcher
//! sees no online/offline flap.

use std::collections::HashMap;
use std::sync::Mutex;

use wecare_proto::DriverId;

#[derive(Debug, Default)]
struct Entry {
    sockets: usize,
    /// Bumped on every disconnect of the last socket; an offline timer only
    /// acts if nothing happened since it started.
    generation: u64,
    /// An online `driver:presence` went out and no offline one since.
    announced: bool,
}

#[derive(Debug, Default)]
pub(crate) struct Presence {
    drivers: Mutex<HashMap<DriverId, Entry>>,
}

impl Presence {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<DriverId, Entry>> {
        self.drivers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A socket opened; true when watchers must be told the driver is online.
    pub(crate) fn connected(&self, driver: &DriverId) -> bool {
        let mut map = self.map();
        let e = map.entry(driver.clone()).or_default();
        e.sockets += 1;
        let announce = !e.announced;
        e.announced = true;
        announce
    }

    /// A socket closed; `Some(generation)` when it was the driver's last one
    /// (start the grace timer with it).
    pub(crate) fn disconnected(&self, driver: &DriverId) -> Option<u64> {
        let mut map = self.map();
        let e = map.get_mut(driver)?;
        e.sockets = e.sockets.saturating_sub(1);
        if e.sockets > 0 {
            return None;
        }
        e.generation += 1;
        Some(e.generation)
    }

    /// After a restart: `driver` was online when the server stopped and has no
    /// socket yet. Returns the generation to start its grace timer with.
    pub(crate) fn restored(&self, driver: &DriverId) -> u64 {
        let mut map = self.map();
        let e = map.entry(driver.clone()).or_default();
        e.announced = true;
        e.generation += 1;
        e.generation
    }

    /// The grace period after `generation` ended; true when the driver is
    /// still gone and watchers must be told it is offline.
    pub(crate) fn grace_over(&self, driver: &DriverId, generation: u64) -> bool {
        let mut map = self.map();
        let gone = map.get(driver).is_some_and(|e| e.sockets == 0 && e.generation == generation && e.announced);
        if gone {
            map.remove(driver);
        }
        gone
    }

    #[cfg(test)]
    fn is_online(&self, driver: &DriverId) -> bool {
        self.map().get(driver).is_some_and(|e| e.announced)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_sockets_do_not_flap() {
        let p = Presence::default();
        let d = DriverId::new("d");
        assert!(p.connected(&d));
        assert!(!p.connected(&d), "second socket: no new online event");
        assert_eq!(p.disconnected(&d), None, "one socket still open");
        let g = p.disconnected(&d).unwrap();
        assert!(p.is_online(&d), "online during the grace period");
        assert!(p.grace_over(&d, g));
        assert!(!p.is_online(&d));
    }

    #[test]
    fn reconnect_within_grace_cancels_offline() {
        let p = Presence::default();
        let d = DriverId::new("d");
        p.connected(&d);
        let g = p.disconnected(&d).unwrap();
        assert!(!p.connected(&d), "back within grace: still the same online period");
        assert!(!p.grace_over(&d, g));
        let g2 = p.disconnected(&d).unwrap();
        assert!(!p.grace_over(&d, g), "an older timer does nothing");
        assert!(p.grace_over(&d, g2));
    }
}
