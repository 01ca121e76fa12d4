//! Stored rows back into domain values, the same way for every backend. A
//! row that does not read back — its JSON does not parse, its kind or
//! status is unknown — is damage (a bad disk, a hand edit, another
//! program): it is reported once per read (an error log with its `seq`, a
//! counter the metrics export) and skipped. It is never turned into a
//! plausible event: an officer must not see a marker the driver never sent.

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::value::RawValue;
use wecare_proto::{DriverId, DriverStatus, Seq};

use crate::clock::Millis;
use crate::domain::event::{EventKind, StreamEvent};
use crate::domain::fleet::{DriverState, Position};

/// Why a stored row cannot be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Damage {
    #[error("unknown event kind {0}")]
    Kind(i64),
    #[error("body is not a JSON object")]
    Body,
    #[error("negative seq {0}")]
    Seq(i64),
    #[error("unknown status {0:?}")]
    Status(String),
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

/// An `events` row: `(seq, kind, recorded_at, body)`.
pub(crate) fn event(seq: i64, kind: i64, recorded_at: Millis, body: String) -> Result<StreamEvent, Damage> {
    let seq = u64::try_from(seq).map_err(|_| Damage::Seq(seq))?;
    let kind = EventKind::from_code(kind).ok_or(Damage::Kind(kind))?;
    // The body is the watcher payload exactly as it was sent live.
    if !body.trim_start().starts_with('{') {
        return Err(Damage::Body);
    }
    let json = RawValue::from_string(body).map_err(|_| Damage::Body)?;
    Ok(StreamEvent { seq: Seq(seq), kind, recorded_at, json })
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
            email: s.email.clone(),
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
        let state = DriverState { position, status, email: self.email, last_seen: self.last_seen, online: self.online };
        Ok((DriverId::new(self.driver_id), state))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn damaged_rows_are_refused_not_invented() {
        assert_eq!(event(1, 9, 0, "{}".into()).unwrap_err(), Damage::Kind(9));
        assert_eq!(event(1, 1, 0, "{\"seq\":1".into()).unwrap_err(), Damage::Body);
        assert_eq!(event(1, 1, 0, "[1]".into()).unwrap_err(), Damage::Body);
        assert_eq!(event(-1, 1, 0, "{}".into()).unwrap_err(), Damage::Seq(-1));
        assert_eq!(event(3, 1, 0, r#"{"seq":3}"#.into()).unwrap().seq, Seq(3));
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
        let good = c.keep_good([(1, Ok(1)), (2, Err(Damage::Body)), (3, Ok(3))]);
        assert_eq!(good, vec![1, 3]);
        assert_eq!(c.get(), 1);
    }
}
