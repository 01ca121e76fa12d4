//! What the forwarder owes the backend, per driver, and when it may send
//! it. Pure state, no I/O: events in, sends out, outcomes back.
//!
//! Per driver it keeps only the newest position to send (coalescing: a
//! backend that is down for an hour costs one entry per driver, not an
//! hour of fixes), at most one request in flight, at most one start per
//! `min_interval`, and a backoff after a failure. A newer fix replaces an
//! older one that was not sent yet, and a driver's sends start in `seq`
//! order, so the backend never gets an older fix after a newer one.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde::Deserialize;
use wecare_proto::{DriverId, DriverStatus, Seq};

/// A driver's position as the backend takes it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Position {
    pub(crate) lat: f64,
    pub(crate) lng: f64,
    pub(crate) status: DriverStatus,
    /// ISO-8601, as the stream carries it.
    pub(crate) recorded_at: String,
    /// The stream event this position was sent with (the position's fix, or
    /// a later status change).
    pub(crate) seq: Seq,
    /// When the server received that event, for the lag metric.
    pub(crate) received: Instant,
}

/// The fields of a stream event the forwarder reads.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StreamFields {
    pub(crate) seq: Seq,
    pub(crate) driver_id: String,
    pub(crate) lat: Option<f64>,
    pub(crate) lng: Option<f64>,
    pub(crate) status: Option<DriverStatus>,
    pub(crate) recorded_at: Option<String>,
    #[serde(default)]
    pub(crate) outdated: bool,
    /// `driver:presence` carries `online`: presence is not forwarded.
    pub(crate) online: Option<bool>,
}

/// How one request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// 2xx.
    Delivered,
    /// A 4xx other than 401/403: this fix is refused for good.
    Refused,
    /// 5xx, 401/403, a timeout or a refused connection: try again later.
    Retry,
}

#[derive(Debug, Default)]
struct Driver {
    /// The newest position, sent or not (a status change resends it).
    latest: Option<Position>,
    /// Waiting to be sent.
    pending: Option<Position>,
    in_flight: Option<Seq>,
    last_start: Option<Instant>,
    retry_at: Option<Instant>,
    failures: u32,
}

/// The forwarder's per-driver state. See the module docs.
#[derive(Debug)]
pub(crate) struct Queue {
    drivers: HashMap<DriverId, Driver>,
    /// The drivers with a pending position: what [`Queue::due`] looks at,
    /// so a round costs the owed drivers, not the whole fleet.
    owed: HashSet<DriverId>,
    min_interval: Duration,
    /// Everything at or below this was read (and is owed or done).
    read_through: Seq,
}

/// Longest wait between retries of one driver.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

impl Queue {
    pub(crate) fn new(min_interval: Duration, read_through: Seq) -> Self {
        Self { drivers: HashMap::new(), owed: HashSet::new(), min_interval, read_through }
    }

    /// A driver's newest position as the store knows it (at start, from
    /// the snapshot): a later status change is sent with it. `owed` makes
    /// it pending too (first start: every driver's position is sent once).
    pub(crate) fn know(&mut self, driver: DriverId, position: Position, owed: bool) {
        let d = self.drivers.entry(driver.clone()).or_default();
        if owed {
            d.pending = Some(position.clone());
            self.owed.insert(driver);
        }
        d.latest = Some(position);
    }

    /// Reads the next stream event (in `seq` order).
    pub(crate) fn observe(&mut self, ev: &StreamFields, received: Instant) {
        self.read_through = self.read_through.max(ev.seq);
        if ev.online.is_some() {
            return;
        }
        let id = DriverId::new(ev.driver_id.clone());
        let d = self.drivers.entry(id.clone()).or_default();
        match (ev.lat, ev.lng, &ev.recorded_at) {
            // A late (outdated) fix belongs on the trail, not in the
            // backend's table; its status is handled below.
            (Some(lat), Some(lng), Some(recorded_at)) if !ev.outdated => {
                let status = ev.status.unwrap_or_default();
                let p = Position { lat, lng, status, recorded_at: recorded_at.clone(), seq: ev.seq, received };
                d.latest = Some(p.clone());
                d.pending = Some(p);
                self.owed.insert(id);
            }
            _ => {
                // A status change: the newest position with the new status;
                // a driver with no position yet has nothing to send. A late
                // fix still sets the current status (contract §3), so one
                // that changes it is a status change too.
                if let (Some(status), Some(latest)) = (ev.status, d.latest.as_mut())
                    && (!ev.outdated || latest.status != status)
                {
                    latest.status = status;
                    latest.seq = ev.seq;
                    latest.received = received;
                    d.pending = Some(latest.clone());
                    self.owed.insert(id);
                }
            }
        }
    }

    /// The positions that may be sent now, at most `limit`, the longest
    /// owed first (marked in flight). A backend slower than the fleet then
    /// still gets every driver in turn, never the same few.
    pub(crate) fn due(&mut self, now: Instant, limit: usize) -> Vec<(DriverId, Position)> {
        let mut ready: Vec<(Seq, &DriverId)> = Vec::new();
        for id in &self.owed {
            let Some(d) = self.drivers.get(id) else { continue };
            let Some(p) = &d.pending else { continue };
            let spaced = d.last_start.is_none_or(|t| now >= t + self.min_interval);
            let backed_off = d.retry_at.is_none_or(|t| now >= t);
            if d.in_flight.is_none() && spaced && backed_off {
                ready.push((p.seq, id));
            }
        }
        if ready.len() > limit {
            ready.select_nth_unstable_by_key(limit, |(seq, _)| *seq);
            ready.truncate(limit);
        }
        let mut out = Vec::with_capacity(ready.len());
        for (_, id) in ready {
            let Some(d) = self.drivers.get_mut(id) else { continue };
            let Some(p) = &d.pending else { continue };
            d.in_flight = Some(p.seq);
            d.last_start = Some(now);
            out.push((id.clone(), p.clone()));
        }
        out
    }

    /// Records how the request for `driver` at `seq` ended.
    pub(crate) fn done(&mut self, driver: &DriverId, seq: Seq, outcome: Outcome, now: Instant, jitter: f64) {
        let Some(d) = self.drivers.get_mut(driver) else { return };
        d.in_flight = None;
        match outcome {
            Outcome::Delivered | Outcome::Refused => {
                d.failures = 0;
                d.retry_at = None;
                // A newer position that arrived meanwhile stays owed.
                if d.pending.as_ref().is_some_and(|p| p.seq == seq) {
                    d.pending = None;
                    self.owed.remove(driver);
                }
            }
            Outcome::Retry => {
                d.failures = d.failures.saturating_add(1);
                let exp = Duration::from_millis(500).saturating_mul(1 << d.failures.min(10));
                // Full jitter over the upper half: spread, never zero.
                d.retry_at = Some(now + exp.min(MAX_BACKOFF).mul_f64(0.5 + jitter.clamp(0.0, 1.0) / 2.0));
            }
        }
    }

    /// The position to store: everything at or below it was delivered,
    /// refused, or replaced by a newer position (so a restart that reads on
    /// from here owes the backend nothing it forgot).
    pub(crate) fn cursor(&self) -> Seq {
        let oldest_owed = self.drivers.values().filter_map(|d| d.pending.as_ref().map(|p| p.seq)).min();
        match oldest_owed {
            Some(seq) => Seq(seq.0.saturating_sub(1)),
            None => self.read_through,
        }
    }

    /// How long the oldest owed position has waited since it was received.
    pub(crate) fn lag(&self, now: Instant) -> Duration {
        self.drivers
            .values()
            .filter_map(|d| d.pending.as_ref().map(|p| now.saturating_duration_since(p.received)))
            .max()
            .unwrap_or_default()
    }

    /// Positions owed (for tests and logs).
    pub(crate) fn owed(&self) -> usize {
        self.owed.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fix(seq: u64, driver: &str, lat: f64, outdated: bool) -> StreamFields {
        StreamFields {
            seq: Seq(seq),
            driver_id: driver.into(),
            lat: Some(lat),
            lng: Some(100.0),
            status: Some(DriverStatus::Available),
            recorded_at: Some("2026-01-16T08:30:00.000Z".into()),
            outdated,
            online: None,
        }
    }

    fn status(seq: u64, driver: &str, s: DriverStatus) -> StreamFields {
        StreamFields {
            seq: Seq(seq),
            driver_id: driver.into(),
            lat: None,
            lng: None,
            status: Some(s),
            recorded_at: None,
            outdated: false,
            online: None,
        }
    }

    #[test]
    fn coalesces_to_the_newest_non_outdated_fix_per_driver() {
        let t = Instant::now();
        let mut q = Queue::new(Duration::from_secs(1), Seq::ZERO);
        for (seq, lat) in [(1, 1.0), (2, 2.0), (3, 3.0)] {
            q.observe(&fix(seq, "a", lat, false), t);
        }
        q.observe(&fix(4, "a", 0.5, true), t);
        let due = q.due(t, 10);
        assert_eq!(due.len(), 1);
        assert_eq!((due[0].1.lat, due[0].1.seq), (3.0, Seq(3)), "newest, the outdated one skipped");
        assert_eq!(q.cursor(), Seq(2), "seq 3 is in flight: a restart must read it again");
        q.done(&DriverId::new("a"), Seq(3), Outcome::Delivered, t, 0.5);
        assert_eq!(q.cursor(), Seq(4));
    }

    #[test]
    fn at_most_one_start_per_interval_and_a_newer_fix_waits_its_turn() {
        let t = Instant::now();
        let mut q = Queue::new(Duration::from_secs(1), Seq::ZERO);
        q.observe(&fix(1, "a", 1.0, false), t);
        assert_eq!(q.due(t, 10).len(), 1);
        q.observe(&fix(2, "a", 2.0, false), t);
        assert!(q.due(t, 10).is_empty(), "one in flight");
        q.done(&DriverId::new("a"), Seq(1), Outcome::Delivered, t, 0.5);
        assert!(q.due(t + Duration::from_millis(500), 10).is_empty(), "not before the interval");
        let due = q.due(t + Duration::from_secs(1), 10);
        assert_eq!(due[0].1.seq, Seq(2));
    }

    #[test]
    fn a_slow_backend_still_gets_every_driver_in_turn() {
        let t = Instant::now();
        let mut q = Queue::new(Duration::ZERO, Seq::ZERO);
        let mut seq = 0;
        for driver in ["a", "b", "c", "d"] {
            seq += 1;
            q.observe(&fix(seq, driver, 1.0, false), t);
        }
        // Room for one request at a time; every sent driver reports again.
        let mut served = Vec::new();
        for _ in 0..4 {
            let due = q.due(t, 1);
            assert_eq!(due.len(), 1);
            let (id, p) = &due[0];
            served.push(id.as_str().to_owned());
            q.done(id, p.seq, Outcome::Delivered, t, 0.5);
            seq += 1;
            q.observe(&fix(seq, id.as_str(), 2.0, false), t);
        }
        assert_eq!(served, ["a", "b", "c", "d"], "the longest owed first, nobody twice before all once");
    }

    #[test]
    fn failures_back_off_and_keep_the_position_owed() {
        let t = Instant::now();
        let mut q = Queue::new(Duration::ZERO, Seq::ZERO);
        q.observe(&fix(1, "a", 1.0, false), t);
        q.due(t, 10);
        q.done(&DriverId::new("a"), Seq(1), Outcome::Retry, t, 1.0);
        assert!(q.due(t + Duration::from_millis(900), 10).is_empty(), "backing off (1 s)");
        assert_eq!(q.due(t + Duration::from_millis(1001), 10).len(), 1);
        assert_eq!(q.owed(), 1);
        q.done(&DriverId::new("a"), Seq(1), Outcome::Refused, t, 1.0);
        assert_eq!(q.owed(), 0, "a refused fix is skipped");
    }

    #[test]
    fn a_late_fix_that_changes_the_status_sends_the_newest_position_with_it() {
        let t = Instant::now();
        let mut q = Queue::new(Duration::ZERO, Seq::ZERO);
        q.observe(&fix(1, "c", 7.0, false), t);
        q.due(t, 10);
        q.done(&DriverId::new("c"), Seq(1), Outcome::Delivered, t, 0.5);
        q.observe(&fix(2, "c", 6.0, true), t);
        assert!(q.due(t, 10).is_empty(), "a late fix with the same status: nothing to send");
        let mut late = fix(3, "c", 5.0, true);
        late.status = Some(DriverStatus::OnTrip);
        q.observe(&late, t);
        let due = q.due(t, 10);
        assert_eq!((due[0].1.lat, due[0].1.status, due[0].1.seq), (7.0, DriverStatus::OnTrip, Seq(3)));
    }

    #[test]
    fn a_status_change_sends_the_newest_position_with_it() {
        let t = Instant::now();
        let mut q = Queue::new(Duration::ZERO, Seq::ZERO);
        q.observe(&status(1, "b", DriverStatus::Busy), t);
        assert!(q.due(t, 10).is_empty(), "no position yet: nothing to send");
        q.observe(&fix(2, "b", 7.0, false), t);
        q.due(t, 10);
        q.done(&DriverId::new("b"), Seq(2), Outcome::Delivered, t, 0.5);
        q.observe(&status(3, "b", DriverStatus::OnTrip), t);
        let due = q.due(t, 10);
        assert_eq!((due[0].1.lat, due[0].1.status, due[0].1.seq), (7.0, DriverStatus::OnTrip, Seq(3)));
    }
}
