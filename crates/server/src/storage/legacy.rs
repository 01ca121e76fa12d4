//! Rows of stores written before issue 17, whose `events` kept the watcher
//! JSON as sent live, read into today's typed columns — by both backends'
//! upgrades and the same way. The typed row renders with every field this
//! version sends (the v1.2 aliases included), so old events replay like new
//! ones. A body that does not read keeps its `seq`, driver and id (a resent
//! message is still a duplicate) and becomes a damaged row
//! ([`row::DAMAGED_KIND`]), reported on every read as before the upgrade.

use std::sync::Arc;

use serde_json::Value;
use wecare_proto::{DriverId, DriverStatus, MessageId, Seq};

use super::row::{self, EventColumns};
use crate::domain::event::{EventKind, EventRecord, Located, Recorded};

/// An `events` row as stores before schema v6 (SQLite) / v3 (PostgreSQL) kept it.
#[derive(Debug, Clone)]
pub(crate) struct LegacyRow {
    pub(crate) seq: i64,
    pub(crate) kind: i64,
    pub(crate) driver_id: String,
    pub(crate) msg_id: String,
    pub(crate) recorded_at: i64,
    pub(crate) received_at: i64,
    pub(crate) body: String,
}

/// The old columns the upgrades select, in [`LegacyRow`]'s order.
pub(crate) const COLUMNS: &str = "seq, kind, driver_id, msg_id, recorded_at, received_at, body";

/// The `events` table those stores had (for tests that write one).
#[cfg(test)]
pub(crate) const EVENTS_TABLE: &str = "DROP TABLE IF EXISTS events;
    CREATE TABLE events (seq BIGINT PRIMARY KEY, kind SMALLINT NOT NULL, driver_id TEXT NOT NULL,
        msg_id TEXT NOT NULL, recorded_at BIGINT NOT NULL, received_at BIGINT NOT NULL, body TEXT NOT NULL);
    CREATE UNIQUE INDEX events_dedup ON events (driver_id, msg_id);
    CREATE INDEX events_track ON events (driver_id, kind, recorded_at);
    CREATE INDEX events_received ON events (received_at);";

/// `old` in today's columns.
pub(crate) fn convert(old: LegacyRow) -> EventColumns {
    match record(&old) {
        Some(rec) => EventColumns::from_record(&rec),
        None => {
            EventColumns::keys(old.seq, row::DAMAGED_KIND, DriverId::new(old.driver_id), &old.msg_id, old.received_at)
        }
    }
}

/// The event `old` kept, if its body reads.
fn record(old: &LegacyRow) -> Option<EventRecord> {
    let body: Value = serde_json::from_str(&old.body).ok().filter(Value::is_object)?;
    let text = |key: &str| body.get(key).and_then(Value::as_str).map(str::to_owned);
    let number = |key: &str| body.get(key).and_then(Value::as_f64);
    let flag = |key: &str| body.get(key).and_then(Value::as_bool) == Some(true);
    let status = text("status").and_then(|s| s.parse::<DriverStatus>().ok());
    let what = match EventKind::from_code(old.kind)? {
        EventKind::Location => Recorded::Location(Located {
            lat: number("lat")?,
            lng: number("lng")?,
            recorded_at: old.recorded_at,
            accuracy: number("accuracy"),
            heading: number("heading"),
            speed: number("speed"),
            adjusted: flag("adjusted"),
            outdated: flag("outdated"),
            status,
        }),
        EventKind::Status => Recorded::Status(status?),
        EventKind::Presence => Recorded::Presence { online: body.get("online")?.as_bool()? },
    };
    Some(EventRecord {
        seq: Seq(u64::try_from(old.seq).ok()?),
        driver: DriverId::new(old.driver_id.clone()),
        email: text("driverEmail").map(Arc::from),
        name: text("driverName").map(Arc::from),
        id: MessageId::parse(old.msg_id.clone()).ok()?,
        received: old.received_at,
        what,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::domain::event::encode;
    use crate::storage::packed_id;

    fn old(seq: i64, kind: i64, body: Value) -> LegacyRow {
        LegacyRow {
            seq,
            kind,
            driver_id: "amb-1".into(),
            msg_id: "0123456789abcdef0123456789abcdef".into(),
            recorded_at: 1_765_000_000_000,
            received_at: 1_765_000_000_250,
            body: body.to_string(),
        }
    }

    fn replayed(row: LegacyRow) -> Value {
        let rec = convert(row).into_record().expect("readable");
        serde_json::from_str(encode(&rec).json.get()).unwrap()
    }

    #[test]
    fn a_fix_stored_before_v1_2_replays_with_every_field_of_today() {
        let before_v1_2 = json!({
            "seq": 7, "id": "0123456789abcdef0123456789abcdef", "driverId": "amb-1",
            "driverEmail": "a@x", "lat": 13.75, "lng": 100.5, "recordedAt": "2025-12-06T05:46:40.000Z",
            "timestamp": "2025-12-06T05:46:40.250Z", "status": "ON_TRIP", "accuracy": 5.5, "outdated": true,
        });
        let v = replayed(old(7, 1, before_v1_2.clone()));
        for key in
            ["seq", "id", "driverId", "driverEmail", "lat", "lng", "recordedAt", "status", "accuracy", "outdated"]
        {
            assert_eq!(v[key], before_v1_2[key], "{key}");
        }
        assert_eq!(v["latitude"], 13.75);
        assert_eq!(v["longitude"], 100.5);
        assert_eq!(v["lastUpdated"], v["recordedAt"]);
        assert_eq!(v["timestamp"], before_v1_2["timestamp"]);
    }

    #[test]
    fn status_and_presence_events_come_back() {
        let v = replayed(old(8, 2, json!({"seq": 8, "driverId": "amb-1", "status": "BUSY"})));
        assert_eq!(v["status"], "BUSY");
        let v = replayed(old(9, 3, json!({"seq": 9, "driverId": "amb-1", "online": true})));
        assert_eq!(v["online"], true);
    }

    #[test]
    fn an_unreadable_body_stays_damage_and_keeps_its_dedup_key() {
        for (kind, body) in [(1, "{\"seq\":1"), (1, "{}"), (2, "{\"status\":\"NAPPING\"}"), (3, "[]"), (9, "{}")] {
            let row = convert(LegacyRow { body: body.into(), ..old(1, kind, Value::Null) });
            assert_eq!(row.kind, row::DAMAGED_KIND, "{body}");
            assert_eq!(row.msg_id, packed_id::pack("0123456789abcdef0123456789abcdef"));
            assert!(row.into_record().is_err());
        }
    }
}
