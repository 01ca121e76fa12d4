//! The latest state of every driver, and the rule that decides whether a fix
//! moves the marker or only fills the trail (`outdated`).

use std::collections::HashMap;
use std::sync::Arc;

use wecare_proto::{DriverId, DriverStatus, Seq};

use crate::clock::Millis;
use crate::domain::event::{Body, Derived, EventRecord, NewEvent};

/// The newest position of a driver.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Position {
    pub(crate) lat: f64,
    pub(crate) lng: f64,
    pub(crate) recorded_at: Millis,
    /// `min(recordedAt, received)`: what "newer" is judged on, so a fix stamped
    /// in the future can never freeze the marker.
    pub(crate) effective_at: Millis,
}

/// Everything the snapshot says about one driver.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DriverState {
    pub(crate) position: Option<Position>,
    /// The last status the driver reported; `None` until it reports one
    /// (contract v1.3 §4: never invented).
    pub(crate) status: Option<DriverStatus>,
    pub(crate) email: Option<Arc<str>>,
    /// Server time of the last fix or status received from the driver.
    pub(crate) last_seen: Millis,
    /// As the last `driver:presence` event in the stream said.
    pub(crate) online: bool,
}

/// Latest state per driver: the in-memory copy a single-writer store keeps
/// in step with its commits, or the rows one transaction locked.
#[derive(Debug, Default, Clone)]
pub(crate) struct Fleet {
    drivers: HashMap<DriverId, DriverState>,
}

impl Fleet {
    pub(crate) fn insert(&mut self, driver: DriverId, state: DriverState) {
        self.drivers.insert(driver, state);
    }

    pub(crate) fn get(&self, driver: &DriverId) -> Option<&DriverState> {
        self.drivers.get(driver)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&DriverId, &DriverState)> {
        self.drivers.iter()
    }

    /// Applies `ev` as the event at `seq` (see [`apply`]); `None` when it
    /// changes nothing and takes no `seq`.
    pub(crate) fn apply(&mut self, ev: &NewEvent, seq: Seq) -> Option<EventRecord> {
        let (state, event) = apply(self.drivers.get(&ev.driver), ev, seq)?;
        self.drivers.insert(ev.driver.clone(), state);
        Some(event)
    }
}

/// The rule every store runs inside its commit: the driver's state after
/// `ev`, and `ev` as committed at `seq`. A fix older than the
/// current position is `outdated` and leaves the marker; a presence event
/// that says what the state already says is dropped (`None`): several
/// nodes may each see a driver's socket come or go, the stream says it once.
pub(crate) fn apply(prev: Option<&DriverState>, ev: &NewEvent, seq: Seq) -> Option<(DriverState, EventRecord)> {
    let mut state = prev.cloned().unwrap_or(DriverState {
        position: None,
        status: None,
        email: None,
        last_seen: ev.received,
        online: false,
    });
    if ev.email.is_some() {
        state.email.clone_from(&ev.email);
    }
    let mut outdated = false;
    match &ev.body {
        Body::Location(fix) => {
            state.last_seen = state.last_seen.max(ev.received);
            let effective_at = fix.recorded_at.min(ev.received);
            outdated = state.position.is_some_and(|p| p.effective_at > effective_at);
            if !outdated {
                state.position =
                    Some(Position { lat: fix.lat, lng: fix.lng, recorded_at: fix.recorded_at, effective_at });
            }
            // Contract §3: a fix's status sets the current status, late or not.
            if let Some(status) = fix.status {
                state.status = Some(status);
            }
        }
        Body::Status(status) => {
            state.last_seen = state.last_seen.max(ev.received);
            state.status = Some(*status);
        }
        Body::Presence { online, .. } => {
            if state.online == *online {
                return None;
            }
            state.online = *online;
        }
    }
    let event = EventRecord::new(ev, seq, Derived { outdated, current_status: state.status });
    Some((state, event))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::event::{Sender, encode};
    use crate::domain::validate::Fix;
    use serde_json::Value;

    fn fix_at(recorded_at: Millis, status: Option<DriverStatus>) -> Fix {
        Fix {
            id: None,
            lat: 13.7,
            lng: 100.5,
            recorded_at,
            adjusted: false,
            status,
            accuracy: None,
            heading: None,
            speed: None,
        }
    }

    fn apply(fleet: &mut Fleet, recorded_at: Millis, received: Millis, status: Option<DriverStatus>) -> Value {
        let ev = NewEvent::location(Sender::bare("d"), fix_at(recorded_at, status), received);
        serde_json::from_str(encode(&fleet.apply(&ev, Seq(1)).unwrap()).json.get()).unwrap()
    }

    #[test]
    fn late_fix_is_outdated_and_keeps_the_marker() {
        let mut fleet = Fleet::default();
        assert_eq!(apply(&mut fleet, 2_000, 2_000, None)["outdated"], false);
        assert_eq!(apply(&mut fleet, 1_000, 3_000, Some(DriverStatus::Busy))["outdated"], true);
        let state = fleet.get(&DriverId::new("d")).unwrap();
        assert_eq!(state.position.unwrap().recorded_at, 2_000);
        assert_eq!(state.status, Some(DriverStatus::Busy), "a fix's status applies, late or not (contract §3)");
    }

    #[test]
    fn future_stamp_cannot_freeze_the_marker() {
        let mut fleet = Fleet::default();
        // stamped an hour ahead, received at 1_000: judged at 1_000
        apply(&mut fleet, 3_600_000, 1_000, None);
        assert_eq!(apply(&mut fleet, 2_000, 2_000, None)["outdated"], false);
    }

    #[test]
    fn status_is_absent_until_reported_then_follows_changes() {
        let mut fleet = Fleet::default();
        let first = apply(&mut fleet, 1, 1, None);
        assert!(first.get("status").is_none(), "never invented: {first}");
        let ev = NewEvent::status(
            Sender::bare("d"),
            crate::domain::validate::StatusChange { id: None, status: DriverStatus::OnTrip },
            5,
        );
        fleet.apply(&ev, Seq(2));
        assert_eq!(apply(&mut fleet, 6, 6, None)["status"], "ON_TRIP", "a fix without one keeps the known status");
        assert_eq!(fleet.get(&DriverId::new("d")).unwrap().status, Some(DriverStatus::OnTrip));
    }

    #[test]
    fn presence_that_changes_nothing_takes_no_seq() {
        let mut fleet = Fleet::default();
        let d = || wecare_proto::DriverId::new("d");
        assert!(fleet.apply(&NewEvent::offline(d(), 0, 1), Seq(1)).is_none(), "unknown driver is already offline");
        assert!(fleet.apply(&NewEvent::online(d(), 2), Seq(1)).is_some());
        assert!(fleet.apply(&NewEvent::online(d(), 3), Seq(2)).is_none(), "a second node's online says nothing new");
        assert!(fleet.apply(&NewEvent::offline(d(), 0, 4), Seq(2)).is_some());
        assert!(!fleet.get(&d()).unwrap().online);
    }
}
