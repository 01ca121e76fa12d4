//! What the forwarder owes the backend, per driver, and when it may send
//! it. Pure state, no I/O: events in, sends out, outcomes back.
//!
//! Per driver it keeps only the newest position to send (coalescing: a
//! backend that is down for an hour costs one entry per driver, not an
//! hour of fixes), at most one request in flight, at most one start per
//! `min_interval`, and a backoff after a failure. A newer fix replaces an
//! older one that was not sent yet, and a driver's sends start in `seq`
//! order, so the backend never gets an older fix after a newer one.
//!
//! A status goes to the backend only when the driver reported it (contract
//! v1.3 §10): the backend writes any status it receives over the one it
//! set itself (`ON_DUTY` on ride assignment). A reported status stays owed
//! until a send carrying it is answered, whatever positions replace the
//! pending one meanwhile; every other send carries no status.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde::Deserialize;
use wecare_proto::{DriverId, DriverStatus, Seq};

/// A driver's position as the backend takes it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Position {
    pub(crate) lat: f64,
    pub(crate) lng: f64,
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

/// A status the driver reported, owed to the backend until delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reported {
    pub(crate) status: DriverStatus,
    /// The stream event that reported it.
    pub(crate) seq: Seq,
}

/// One send to start: the driver's position, and the status it reported
/// if that is still owed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Due {
    pub(crate) driver: DriverId,
    pub(crate) position: Position,
    pub(crate) status: Option<Reported>,
}

/// How one request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// 2xx.
    Delivered,
    /// A 4xx other than 401/403/429: this fix is refused for good.
    Refused,
    /// 5xx, 401/403, a timeout or a refused connection: try again later.
    Retry,
    /// 429: the backend's limiter, not a judgement of the fix. The budget
    /// pauses every call; this one stays owed and goes first after.
    Throttled,
}

#[derive(Debug, Default)]
struct Driver {
    /// The newest position, sent or not (a status change resends it).
    latest: Option<Position>,
    /// The last status the driver reported.
    known_status: Option<DriverStatus>,
    /// Waiting to be sent.
    pending: Option<Position>,
    /// Since when something has been owed (the first event not yet
    /// delivered, and when it was received): the turn order and the lag.
    /// A newer fix replacing the pending one keeps it, so a driver that
    /// reports every second still waits its turn behind the others.
    owed_since: Option<(Seq, Instant)>,
    /// A reported status not yet delivered: it goes with the next send.
    unsent_status: Option<Reported>,
    /// The position's and the status's `seq` of the send in flight.
    in_flight: Option<(Seq, Option<Seq>)>,
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

    /// A driver's newest position and status as the store knows them (at
    /// start, from the snapshot): a later status change is sent with it.
    /// `owed` makes the position pending too (first start: every driver's
    /// position is sent once — without a status, which was either sent
    /// before forwarding was configured or is the backend's to keep).
    pub(crate) fn know(&mut self, driver: DriverId, position: Position, status: Option<DriverStatus>, owed: bool) {
        let d = self.drivers.entry(driver.clone()).or_default();
        d.known_status = status;
        if owed {
            d.owed_since.get_or_insert((position.seq, position.received));
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
        // What the driver itself said: a `driver:status`, or a fix whose
        // status differs from the one known. (A `location:updated` carries
        // the driver's current status, so a status equal to it says nothing
        // new. Events stored before v1.3 carry an invented `AVAILABLE`: read
        // back after the upgrade, it is sent once at most.)
        let is_fix = ev.lat.is_some();
        let reported =
            ev.status.filter(|s| !is_fix || d.known_status != Some(*s)).map(|status| Reported { status, seq: ev.seq });
        match (ev.lat, ev.lng, &ev.recorded_at) {
            // A late (outdated) fix belongs on the trail, not in the
            // backend's table; its status is handled below.
            (Some(lat), Some(lng), Some(recorded_at)) if !ev.outdated => {
                let p = Position { lat, lng, recorded_at: recorded_at.clone(), seq: ev.seq, received };
                d.owed_since.get_or_insert((ev.seq, received));
                d.latest = Some(p.clone());
                d.pending = Some(p);
                if let Some(r) = reported {
                    d.known_status = Some(r.status);
                    d.unsent_status = Some(r);
                }
                self.owed.insert(id);
            }
            _ => {
                // A status change: the newest position with the new status;
                // a driver with no position yet has nothing to send. A late
                // fix still sets the current status (contract §3), so one
                // that changes it is a status change too.
                let Some(r) = reported else { return };
                d.known_status = Some(r.status);
                if let Some(latest) = d.latest.as_mut() {
                    latest.seq = ev.seq;
                    latest.received = received;
                    d.owed_since.get_or_insert((ev.seq, received));
                    d.pending = Some(latest.clone());
                    d.unsent_status = Some(r);
                    self.owed.insert(id);
                }
            }
        }
    }

    /// How many positions could be sent now if the budget allowed.
    pub(crate) fn ready(&self, now: Instant) -> usize {
        self.owed.iter().filter(|id| self.drivers.get(*id).is_some_and(|d| self.is_ready(d, now))).count()
    }

    fn is_ready(&self, d: &Driver, now: Instant) -> bool {
        let spaced = d.last_start.is_none_or(|t| now >= t + self.min_interval);
        let backed_off = d.retry_at.is_none_or(|t| now >= t);
        d.pending.is_some() && d.in_flight.is_none() && spaced && backed_off
    }

    /// The positions that may be sent now, at most `limit`, the longest
    /// owed first (marked in flight). A backend slower than the fleet then
    /// still gets every driver in turn, never the same few.
    pub(crate) fn due(&mut self, now: Instant, limit: usize) -> Vec<Due> {
        if limit == 0 {
            return Vec::new();
        }
        let mut ready: Vec<(Seq, &DriverId)> = Vec::new();
        for id in &self.owed {
            let Some(d) = self.drivers.get(id) else { continue };
            let Some(p) = &d.pending else { continue };
            // The oldest thing owed decides the turn.
            let since = d.owed_since.map_or(p.seq, |(seq, _)| seq);
            if self.is_ready(d, now) {
                ready.push((since, id));
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
            d.in_flight = Some((p.seq, d.unsent_status.map(|r| r.seq)));
            d.last_start = Some(now);
            out.push(Due { driver: id.clone(), position: p.clone(), status: d.unsent_status });
        }
        out
    }

    /// Records how the send `sent` ended.
    pub(crate) fn done(&mut self, sent: &Due, outcome: Outcome, now: Instant, jitter: f64) {
        let driver = &sent.driver;
        let Some(d) = self.drivers.get_mut(driver) else { return };
        d.in_flight = None;
        match outcome {
            Outcome::Delivered | Outcome::Refused => {
                d.failures = 0;
                d.retry_at = None;
                // A newer position or status that arrived meanwhile stays owed.
                if d.unsent_status.is_some() && d.unsent_status == sent.status {
                    d.unsent_status = None;
                }
                if d.pending.as_ref().is_some_and(|p| p.seq == sent.position.seq) {
                    d.pending = None;
                    d.owed_since = None;
                    self.owed.remove(driver);
                } else {
                    // Owed since what arrived after the delivered send started.
                    d.owed_since = Some((Seq(sent.position.seq.0 + 1), d.last_start.unwrap_or(now)));
                }
            }
            Outcome::Throttled => {
                // Not the fix's fault: owed as it was, first in line once
                // the budget's pause is over.
                d.last_start = None;
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
        let oldest_owed = self
            .drivers
            .values()
            .filter_map(|d| {
                let p = d.pending.as_ref()?;
                Some(d.unsent_status.map_or(p.seq, |r| r.seq.min(p.seq)))
            })
            .min();
        match oldest_owed {
            Some(seq) => Seq(seq.0.saturating_sub(1)),
            None => self.read_through,
        }
    }

    /// How long the driver owed longest has waited (since the first event
    /// it is owed was received, however many newer fixes replaced it).
    pub(crate) fn lag(&self, now: Instant) -> Duration {
        self.drivers
            .values()
            .filter_map(|d| d.owed_since.map(|(_, received)| now.saturating_duration_since(received)))
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
            status: None,
            recorded_at: Some("2026-01-16T08:30:00.000Z".into()),
            outdated,
            online: None,
        }
    }

    fn fix_with(seq: u64, driver: &str, lat: f64, outdated: bool, s: DriverStatus) -> StreamFields {
        StreamFields { status: Some(s), ..fix(seq, driver, lat, outdated) }
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

    /// The one send due now (asserts there is exactly one).
    fn one(q: &mut Queue, t: Instant) -> Due {
        let mut due = q.due(t, 10);
        assert_eq!(due.len(), 1, "{due:?}");
        due.remove(0)
    }

    fn sent(d: &Due) -> (f64, Option<DriverStatus>, Seq) {
        (d.position.lat, d.status.map(|r| r.status), d.position.seq)
    }

    #[test]
    fn coalesces_to_the_newest_non_outdated_fix_per_driver() {
        let t = Instant::now();
        let mut q = Queue::new(Duration::from_secs(1), Seq::ZERO);
        for (seq, lat) in [(1, 1.0), (2, 2.0), (3, 3.0)] {
            q.observe(&fix(seq, "a", lat, false), t);
        }
        q.observe(&fix(4, "a", 0.5, true), t);
        let d = one(&mut q, t);
        assert_eq!((d.position.lat, d.position.seq), (3.0, Seq(3)), "newest, the outdated one skipped");
        assert_eq!(q.cursor(), Seq(2), "seq 3 is in flight: a restart must read it again");
        q.done(&d, Outcome::Delivered, t, 0.5);
        assert_eq!(q.cursor(), Seq(4));
    }

    #[test]
    fn at_most_one_start_per_interval_and_a_newer_fix_waits_its_turn() {
        let t = Instant::now();
        let mut q = Queue::new(Duration::from_secs(1), Seq::ZERO);
        q.observe(&fix(1, "a", 1.0, false), t);
        let first = one(&mut q, t);
        q.observe(&fix(2, "a", 2.0, false), t);
        assert!(q.due(t, 10).is_empty(), "one in flight");
        q.done(&first, Outcome::Delivered, t, 0.5);
        assert!(q.due(t + Duration::from_millis(500), 10).is_empty(), "not before the interval");
        assert_eq!(q.ready(t + Duration::from_secs(1)), 1);
        assert_eq!(one(&mut q, t + Duration::from_secs(1)).position.seq, Seq(2));
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
            served.push(due[0].driver.as_str().to_owned());
            q.done(&due[0], Outcome::Delivered, t, 0.5);
            seq += 1;
            q.observe(&fix(seq, due[0].driver.as_str(), 2.0, false), t);
        }
        assert_eq!(served, ["a", "b", "c", "d"], "the longest owed first, nobody twice before all once");
    }

    #[test]
    fn drivers_that_all_report_every_second_are_served_in_turn_not_the_first_few_again() {
        // One send a round (the budget), every driver reports every round
        // in the same order, each may be sent at most every 3 rounds.
        let t = Instant::now();
        let round = Duration::from_secs(1);
        let mut q = Queue::new(round * 3, Seq::ZERO);
        let ids = ["a", "b", "c", "d", "e", "f"];
        let mut seq = 0;
        let mut served = Vec::new();
        for r in 0..12u32 {
            let now = t + round * r;
            for id in ids {
                seq += 1;
                q.observe(&fix(seq, id, 1.0, false), now);
            }
            for d in q.due(now, 1) {
                served.push(d.driver.as_str().to_owned());
                q.done(&d, Outcome::Delivered, now, 0.5);
            }
        }
        assert_eq!(served[..6], ids, "all six once before any twice: {served:?}");
        assert_eq!(served[6..], ids, "and again in the same turn: {served:?}");
        assert!(
            q.lag(t + round * 12) >= round * 5,
            "the lag is how long the longest owed waited, not its newest fix's age"
        );
    }

    #[test]
    fn failures_back_off_and_keep_the_position_owed() {
        let t = Instant::now();
        let mut q = Queue::new(Duration::ZERO, Seq::ZERO);
        q.observe(&fix(1, "a", 1.0, false), t);
        let d = one(&mut q, t);
        q.done(&d, Outcome::Retry, t, 1.0);
        assert!(q.due(t + Duration::from_millis(900), 10).is_empty(), "backing off (1 s)");
        let d = one(&mut q, t + Duration::from_millis(1001));
        assert_eq!(q.owed(), 1);
        q.done(&d, Outcome::Refused, t, 1.0);
        assert_eq!(q.owed(), 0, "a refused fix is skipped");
    }

    #[test]
    fn a_throttled_send_stays_owed_without_backoff_or_interval() {
        let t = Instant::now();
        let mut q = Queue::new(Duration::from_secs(10), Seq::ZERO);
        q.observe(&fix(1, "a", 1.0, false), t);
        let d = one(&mut q, t);
        q.done(&d, Outcome::Throttled, t, 1.0);
        assert_eq!(q.owed(), 1, "a 429 drops nothing");
        assert_eq!(sent(&one(&mut q, t + Duration::from_millis(1))), (1.0, None, Seq(1)), "due again at once");
    }

    #[test]
    fn a_late_fix_that_changes_the_status_sends_the_newest_position_with_it() {
        let t = Instant::now();
        let mut q = Queue::new(Duration::ZERO, Seq::ZERO);
        q.observe(&fix(1, "c", 7.0, false), t);
        let d = one(&mut q, t);
        q.done(&d, Outcome::Delivered, t, 0.5);
        q.observe(&fix(2, "c", 6.0, true), t);
        assert!(q.due(t, 10).is_empty(), "a late fix without a status: nothing to send");
        q.observe(&fix_with(3, "c", 5.0, true, DriverStatus::OnTrip), t);
        assert_eq!(sent(&one(&mut q, t)), (7.0, Some(DriverStatus::OnTrip), Seq(3)));
    }

    #[test]
    fn a_status_change_sends_the_newest_position_with_it() {
        let t = Instant::now();
        let mut q = Queue::new(Duration::ZERO, Seq::ZERO);
        q.observe(&status(1, "b", DriverStatus::Busy), t);
        assert!(q.due(t, 10).is_empty(), "no position yet: nothing to send");
        q.observe(&fix(2, "b", 7.0, false), t);
        let d = one(&mut q, t);
        q.done(&d, Outcome::Delivered, t, 0.5);
        q.observe(&status(3, "b", DriverStatus::OnTrip), t);
        assert_eq!(sent(&one(&mut q, t)), (7.0, Some(DriverStatus::OnTrip), Seq(3)));
    }

    #[test]
    fn fixes_without_a_status_are_sent_without_one() {
        let t = Instant::now();
        let mut q = Queue::new(Duration::ZERO, Seq::ZERO);
        q.know(
            DriverId::new("e"),
            Position { lat: 1.0, lng: 2.0, recorded_at: "x".into(), seq: Seq(1), received: t },
            Some(DriverStatus::Available),
            true,
        );
        assert_eq!(
            sent(&one(&mut q, t)).1,
            None,
            "a known status is not resent at start: the backend may have set another"
        );
        let mut q = Queue::new(Duration::ZERO, Seq::ZERO);
        for seq in 1..=3 {
            q.observe(&fix(seq, "e", f64::from(seq as u32), false), t);
            let d = one(&mut q, t);
            assert_eq!(sent(&d).1, None);
            q.done(&d, Outcome::Delivered, t, 0.5);
        }
    }

    #[test]
    fn a_fix_repeating_the_known_status_sends_none_but_a_driver_status_always_goes() {
        let t = Instant::now();
        let mut q = Queue::new(Duration::ZERO, Seq::ZERO);
        q.observe(&fix_with(1, "g", 1.0, false, DriverStatus::Available), t);
        let d = one(&mut q, t);
        assert_eq!(sent(&d).1, Some(DriverStatus::Available), "first report");
        q.done(&d, Outcome::Delivered, t, 0.5);
        // `location:updated` carries the current status: nothing new.
        q.observe(&fix_with(2, "g", 2.0, false, DriverStatus::Available), t);
        let d = one(&mut q, t);
        assert_eq!(sent(&d), (2.0, None, Seq(2)), "the backend's own status (ON_DUTY) stays");
        q.done(&d, Outcome::Delivered, t, 0.5);
        // The driver says it again, explicitly: it goes.
        q.observe(&status(3, "g", DriverStatus::Available), t);
        assert_eq!(sent(&one(&mut q, t)), (2.0, Some(DriverStatus::Available), Seq(3)));
    }

    #[test]
    fn a_reported_status_stays_owed_until_a_send_carrying_it_is_answered() {
        let t = Instant::now();
        let mut q = Queue::new(Duration::ZERO, Seq::ZERO);
        q.observe(&fix_with(1, "f", 1.0, false, DriverStatus::OnDuty), t);
        let first = one(&mut q, t);
        assert_eq!(sent(&first).1, Some(DriverStatus::OnDuty));
        // A newer fix without a status replaces the pending position...
        q.observe(&fix(2, "f", 2.0, false), t);
        // ...and the send with the status fails: the status must not be lost.
        q.done(&first, Outcome::Retry, t, 0.0);
        assert_eq!(q.cursor(), Seq::ZERO, "a restart must read the status again");
        let retry = one(&mut q, t + Duration::from_secs(2));
        assert_eq!(sent(&retry), (2.0, Some(DriverStatus::OnDuty), Seq(2)), "the newest position, the owed status");
        q.done(&retry, Outcome::Delivered, t, 0.5);
        q.observe(&fix(3, "f", 3.0, false), t);
        assert_eq!(sent(&one(&mut q, t + Duration::from_secs(2))).1, None, "delivered once, not again");
    }
}
