//! Stored rows back into domain values, the same way for every backend. A
//! row that does not read back — its kind, status, driver or id is unknown,
//! a fix has no position — is damage (a bad disk, a hand edit, another
//! program): it is reported once per read (an error log with its `seq`, a
//! counter the metrics export) and skipped. It is never turned into a
//! plausible event: an officer must not see a marker the driver never sent.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use wecare_proto::{DriverId, DriverStatus, MessageId, Seq};

use super::packed_id;
use crate::domain::event::{EventKind, EventRecord, Located, Recorded, StreamEvent, encode};
use crate::domain::fleet::{DriverState, Position};

/// Why a stored row cannot be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Damage {
    #[error("unknown event kind {0}")]
    Kind(i64),
    #[error("negative seq {0}")]
    Seq(i64),
    #[error("unknown status {0:?}")]
    Status(String),
    #[error("unknown status code {0}")]
    StatusCode(i64),
    #[error("unknown driver")]
    Driver,
    #[error("unreadable message id")]
    Id,
    #[error("a fix without its position")]
    Position,
}

/// Counts damaged rows for the metrics; shared by a backend's readers.
#[derive(Debug, Default)]
pub(crate) struct DamageCounter(AtomicU64);

impl DamageCounter {
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Keeps the good rows of `rows`, reporting the damaged ones.
    pub(crate) fn keep_good<T>(&self, rows: impl IntoIterator<Item = (i64, Result<T, Damage>)>) -> Vec<T> {
        rows.into_iter()
            .filter_map(|(key, r)| match r {
                Ok(v) => Some(v),
                Err(damage) => {
                    self.0.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(seq = key, %damage, "damaged stored row skipped");
                    None
                }
            })
            .collect()
    }

    /// Reports one damaged driver row (snapshots key them by driver).
    pub(crate) fn driver(&self, driver: &str, damage: &Damage) {
        self.0.fetch_add(1, Ordering::Relaxed);
        tracing::error!(driver = ?driver, %damage, "damaged latest-state row skipped");
    }
}

/// An `events` row in its typed columns (issue 17), with the driver and
/// the sender's label resolved from their interned numbers. `driver_id` is
/// `None` when a row names a driver the store does not know (damage).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EventColumns {
    pub(crate) seq: i64,
    pub(crate) kind: i64,
    pub(crate) driver_id: Option<DriverId>,
    pub(crate) email: Option<Arc<str>>,
    pub(crate) name: Option<Arc<str>>,
    /// The message id, packed ([`super::packed_id`]).
    pub(crate) msg_id: Vec<u8>,
    /// Fixes only: the device time.
    pub(crate) recorded_at: Option<i64>,
    pub(crate) received_at: i64,
    pub(crate) lat: Option<f64>,
    pub(crate) lng: Option<f64>,
    pub(crate) accuracy: Option<f64>,
    pub(crate) heading: Option<f64>,
    pub(crate) speed: Option<f64>,
    /// [`status_code`]: a status event's status, a fix's current status.
    pub(crate) status: i64,
    /// [`OUTDATED`], [`ADJUSTED`], [`ONLINE`].
    pub(crate) flags: i64,
}

/// `flags` bits.
pub(crate) const OUTDATED: i64 = 1;
pub(crate) const ADJUSTED: i64 = 2;
pub(crate) const ONLINE: i64 = 4;

/// The kind stored for a row the v6 upgrade could not read (its old JSON
/// body was damaged): it stays damage, reported on every read as before.
pub(crate) const DAMAGED_KIND: i64 = 0;

/// A status as stored: fixed numbers, independent of any list's order.
pub(crate) fn status_code(status: Option<DriverStatus>) -> i64 {
    match status {
        None => 0,
        Some(DriverStatus::Available) => 1,
        Some(DriverStatus::Busy) => 2,
        Some(DriverStatus::OnTrip) => 3,
        Some(DriverStatus::OnDuty) => 4,
        Some(DriverStatus::OffDuty) => 5,
        Some(DriverStatus::Unavailable) => 6,
        Some(DriverStatus::Offline) => 7,
    }
}

fn status_from_code(code: i64) -> Result<Option<DriverStatus>, Damage> {
    (0..=7)
        .contains(&code)
        .then(|| [None].into_iter().chain(DriverStatus::ALL.map(Some)).find(|s| status_code(*s) == code).flatten())
        .ok_or(Damage::StatusCode(code))
}

impl EventColumns {
    /// A row with its keys and nothing else (what a kind adds is set after).
    pub(crate) fn keys(seq: i64, kind: i64, driver_id: DriverId, msg_id: &str, received_at: i64) -> Self {
        Self {
            seq,
            kind,
            driver_id: Some(driver_id),
            email: None,
            name: None,
            msg_id: packed_id::pack(msg_id),
            recorded_at: None,
            received_at,
            lat: None,
            lng: None,
            accuracy: None,
            heading: None,
            speed: None,
            status: 0,
            flags: 0,
        }
    }

    /// The row that keeps `rec`.
    pub(crate) fn from_record(rec: &EventRecord) -> Self {
        let mut row = Self {
            email: rec.email.clone(),
            name: rec.name.clone(),
            ..Self::keys(rec.seq.0 as i64, rec.what.kind() as i64, rec.driver.clone(), rec.id.as_str(), rec.received)
        };
        match &rec.what {
            Recorded::Location(l) => {
                row.recorded_at = Some(l.recorded_at);
                (row.lat, row.lng) = (Some(l.lat), Some(l.lng));
                (row.accuracy, row.heading, row.speed) = (l.accuracy, l.heading, l.speed);
                row.status = status_code(l.status);
                row.flags = if l.outdated { OUTDATED } else { 0 } | if l.adjusted { ADJUSTED } else { 0 };
            }
            Recorded::Status(s) => row.status = status_code(Some(*s)),
            Recorded::Presence { online } => row.flags = if *online { ONLINE } else { 0 },
        }
        row
    }

    /// The event the row keeps, or why it cannot be read.
    pub(crate) fn into_record(self) -> Result<EventRecord, Damage> {
        let seq = u64::try_from(self.seq).map_err(|_| Damage::Seq(self.seq))?;
        let kind = EventKind::from_code(self.kind).ok_or(Damage::Kind(self.kind))?;
        let driver = self.driver_id.ok_or(Damage::Driver)?;
        let id = packed_id::unpack(&self.msg_id).and_then(|id| MessageId::parse(id).ok()).ok_or(Damage::Id)?;
        let status = status_from_code(self.status)?;
        let what = match kind {
            EventKind::Location => {
                let (Some(lat), Some(lng), Some(recorded_at)) = (self.lat, self.lng, self.recorded_at) else {
                    return Err(Damage::Position);
                };
                Recorded::Location(Located {
                    lat,
                    lng,
                    recorded_at,
                    accuracy: self.accuracy,
                    heading: self.heading,
                    speed: self.speed,
                    adjusted: self.flags & ADJUSTED != 0,
                    outdated: self.flags & OUTDATED != 0,
                    status,
                })
            }
            EventKind::Status => Recorded::Status(status.ok_or(Damage::StatusCode(self.status))?),
            EventKind::Presence => Recorded::Presence { online: self.flags & ONLINE != 0 },
        };
        Ok(EventRecord {
            seq: Seq(seq),
            driver,
            email: self.email.filter(|e| !e.is_empty()),
            name: self.name.filter(|n| !n.is_empty()),
            id,
            received: self.received_at,
            what,
        })
    }

    /// The sender's label as interned: `None` when the token named nobody.
    pub(crate) fn label(&self) -> Option<(&str, &str)> {
        let email = self.email.as_deref().unwrap_or_default();
        let name = self.name.as_deref().unwrap_or_default();
        (!email.is_empty() || !name.is_empty()).then_some((email, name))
    }
}

/// A row read back: its `seq`, and the event watchers receive (rendered
/// here, once) or why it cannot be read.
pub(crate) type ReadRow = (i64, Result<StreamEvent, Damage>);

/// A row read back into the event watchers receive (rendered here, once).
pub(crate) fn event(row: EventColumns) -> ReadRow {
    (row.seq, row.into_record().map(|rec| encode(&rec)))
}

/// A `drivers` row as stored.
#[derive(Debug)]
pub(crate) struct DriverRow {
    pub(crate) driver_id: String,
    pub(crate) lat: Option<f64>,
    pub(crate) lng: Option<f64>,
    pub(crate) recorded_at: Option<i64>,
    pub(crate) effective_at: Option<i64>,
    /// Upper case; empty while the driver has reported none (v1.3: the
    /// column stays `NOT NULL`, so stores from before need no migration).
    pub(crate) status: String,
    pub(crate) email: Option<String>,
    pub(crate) last_seen: i64,
    pub(crate) online: bool,
}

impl DriverRow {
    /// The row's values as stored, from a driver's state.
    pub(crate) fn from_state(driver: &DriverId, s: &DriverState) -> Self {
        let p = s.position;
        Self {
            driver_id: driver.as_str().to_string(),
            lat: p.map(|p| p.lat),
            lng: p.map(|p| p.lng),
            recorded_at: p.map(|p| p.recorded_at),
            effective_at: p.map(|p| p.effective_at),
            status: s.status.map(DriverStatus::as_str).unwrap_or_default().to_string(),
            email: s.email.as_deref().map(str::to_owned),
            last_seen: s.last_seen,
            online: s.online,
        }
    }

    /// The driver and its state, or why the row cannot be read.
    pub(crate) fn into_state(self) -> Result<(DriverId, DriverState), Damage> {
        let position = match (self.lat, self.lng, self.recorded_at, self.effective_at) {
            (Some(lat), Some(lng), Some(recorded_at), Some(effective_at)) => {
                Some(Position { lat, lng, recorded_at, effective_at })
            }
            _ => None,
        };
        let status = match self.status.as_str() {
            "" => None,
            s => Some(s.parse::<DriverStatus>().map_err(|_| Damage::Status(self.status.clone()))?),
        };
        let state = DriverState {
            position,
            status,
            email: self.email.map(Arc::from),
            last_seen: self.last_seen,
            online: self.online,
        };
        Ok((DriverId::new(self.driver_id), state))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fix_row() -> EventColumns {
        EventColumns {
            seq: 3,
            kind: 1,
            driver_id: Some(DriverId::new("d")),
            email: Some("d@x".into()),
            name: None,
            msg_id: packed_id::pack("m-3"),
            recorded_at: Some(1_000),
            received_at: 1_200,
            lat: Some(13.5),
            lng: Some(100.5),
            accuracy: Some(4.5),
            heading: None,
            speed: None,
            status: 3,
            flags: OUTDATED,
        }
    }

    #[test]
    fn a_record_survives_its_row() {
        let rec = fix_row().into_record().unwrap();
        assert_eq!(EventColumns::from_record(&rec), fix_row());
        let Recorded::Location(l) = &rec.what else { panic!("a fix") };
        assert_eq!((l.status, l.outdated, l.adjusted), (Some(DriverStatus::OnTrip), true, false));
        for code in 0..=7 {
            assert_eq!(status_code(status_from_code(code).unwrap()), code);
        }
    }

    #[test]
    fn damaged_rows_are_refused_not_invented() {
        let damaged = |f: fn(&mut EventColumns)| {
            let mut row = fix_row();
            f(&mut row);
            event(row).1.unwrap_err()
        };
        assert_eq!(damaged(|r| r.kind = 9), Damage::Kind(9));
        assert_eq!(damaged(|r| r.kind = DAMAGED_KIND), Damage::Kind(0));
        assert_eq!(damaged(|r| r.seq = -1), Damage::Seq(-1));
        assert_eq!(damaged(|r| r.driver_id = None), Damage::Driver);
        assert_eq!(damaged(|r| r.msg_id = vec![9]), Damage::Id);
        assert_eq!(damaged(|r| r.lat = None), Damage::Position);
        assert_eq!(damaged(|r| r.status = 8), Damage::StatusCode(8));
        assert_eq!(damaged(|r| (r.kind, r.status) = (2, 0)), Damage::StatusCode(0));
        assert_eq!(event(fix_row()).1.unwrap().seq, Seq(3));
        let row = DriverRow {
            driver_id: "d".into(),
            lat: None,
            lng: None,
            recorded_at: None,
            effective_at: None,
            status: "NAPPING".into(),
            email: None,
            last_seen: 0,
            online: false,
        };
        assert_eq!(row.into_state().unwrap_err(), Damage::Status("NAPPING".into()));
    }

    #[test]
    fn counter_keeps_good_rows_and_counts_the_rest() {
        let c = DamageCounter::default();
        let good = c.keep_good([(1, Ok(1)), (2, Err(Damage::Driver)), (3, Ok(3))]);
        assert_eq!(good, vec![1, 3]);
        assert_eq!(c.get(), 1);
    }
}
