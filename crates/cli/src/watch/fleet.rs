//! The fleet as the watcher sees it: one row per driver, updated from
//! [`WatcherEvent`]s, rendered as a text table.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use wecare_client::WatcherEvent;

/// What is known about one driver.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Row {
    pub(crate) position: Option<(f64, f64)>,
    pub(crate) recorded_at: Option<OffsetDateTime>,
    pub(crate) status: Option<String>,
    pub(crate) online: Option<bool>,
}

/// Every known driver, by id.
#[derive(Debug, Default)]
pub(crate) struct Fleet {
    pub(crate) drivers: BTreeMap<String, Row>,
    /// The last position applied.
    pub(crate) seq: u64,
}

fn text(v: &Value, key: &str) -> Option<String> {
    match v.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn time_of(v: &Value, key: &str) -> Option<OffsetDateTime> {
    match v.get(key)? {
        Value::String(s) => OffsetDateTime::parse(s, &Rfc3339).ok(),
        Value::Number(n) => OffsetDateTime::from_unix_timestamp_nanos(i128::from(n.as_i64()?) * 1_000_000).ok(),
        _ => None,
    }
}

fn position(v: &Value) -> Option<(f64, f64)> {
    Some((v.get("lat")?.as_f64()?, v.get("lng")?.as_f64()?))
}

impl Fleet {
    /// Applies one event from the watcher.
    pub(crate) fn apply(&mut self, event: &WatcherEvent) {
        match event {
            WatcherEvent::Snapshot { seq, drivers, .. } => {
                self.drivers.clear();
                self.seq = *seq;
                for d in drivers {
                    let Some(id) = text(d, "driverId") else { continue };
                    let row = Row {
                        position: position(d),
                        recorded_at: time_of(d, "recordedAt"),
                        status: text(d, "status"),
                        online: d.get("online").and_then(Value::as_bool),
                    };
                    self.drivers.insert(id, row);
                }
            }
            WatcherEvent::Event { name, seq, data } => {
                self.seq = *seq;
                let Some(id) = text(data, "driverId") else { return };
                let row = self.drivers.entry(id).or_default();
                match name.as_str() {
                    "location:updated" => {
                        if let Some(s) = text(data, "status") {
                            row.status = Some(s);
                        }
                        // An outdated fix belongs on the trail, not on the marker.
                        if data.get("outdated").and_then(Value::as_bool) != Some(true) {
                            row.position = position(data).or(row.position);
                            row.recorded_at = time_of(data, "recordedAt").or(row.recorded_at);
                        }
                    }
                    "driver:status:updated" => row.status = text(data, "status"),
                    "driver:presence" => row.online = data.get("online").and_then(Value::as_bool),
                    _ => {}
                }
            }
            _ => {}
        }
    }

    /// The table, ages measured at `now`.
    pub(crate) fn render(&self, now: OffsetDateTime) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{:<24} {:>9} {:<12} {:<8} {:>21}", "DRIVER", "AGE", "STATUS", "PRESENCE", "POSITION");
        for (id, row) in &self.drivers {
            let age = row.recorded_at.map_or_else(|| "-".to_owned(), |t| age(now - t));
            let presence = match row.online {
                Some(true) => "online",
                Some(false) => "offline",
                None => "-",
            };
            let position = row.position.map_or_else(|| "-".to_owned(), |(lat, lng)| format!("{lat:.5},{lng:.5}"));
            let status = row.status.as_deref().unwrap_or("-");
            let _ = writeln!(out, "{id:<24} {age:>9} {status:<12} {presence:<8} {position:>21}");
        }
        let _ = write!(out, "{} drivers as of seq {}", self.drivers.len(), self.seq);
        out
    }
}

/// `42s`, `3m07s`, `2h05m`; a fix from the future shows as `0s`.
fn age(d: time::Duration) -> String {
    let s = d.whole_seconds().max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn snapshot_then_events_update_the_rows() {
        let mut fleet = Fleet::default();
        fleet.apply(&WatcherEvent::Snapshot {
            stream_id: "s".to_owned(),
            seq: 5,
            drivers: vec![json!({"driverId": "d1", "lat": 13.7, "lng": 100.5,
                "recordedAt": "2026-01-16T08:30:00.000Z", "status": "AVAILABLE", "online": true, "lastSeen": null})],
        });
        let event = |name: &str, seq, data| WatcherEvent::Event { name: name.to_owned(), seq, data };
        fleet.apply(&event(
            "location:updated",
            6,
            json!({"driverId": "d1", "lat": 13.8, "lng": 100.6,
            "recordedAt": "2026-01-16T08:30:10.000Z", "status": "ON_TRIP", "outdated": false}),
        ));
        fleet.apply(&event(
            "location:updated",
            7,
            json!({"driverId": "d1", "lat": 1.0, "lng": 1.0,
            "recordedAt": "2026-01-16T08:00:00.000Z", "status": "ON_TRIP", "outdated": true}),
        ));
        fleet.apply(&event("driver:presence", 8, json!({"driverId": 7, "online": false})));
        let d1 = &fleet.drivers["d1"];
        assert_eq!(d1.position, Some((13.8, 100.6)), "an outdated fix does not move the marker");
        assert_eq!(d1.status.as_deref(), Some("ON_TRIP"));
        assert_eq!(fleet.drivers["7"].online, Some(false));
        let now = OffsetDateTime::parse("2026-01-16T08:31:15.000Z", &Rfc3339).unwrap();
        let table = fleet.render(now);
        assert!(table.contains("d1") && table.contains("1m05s") && table.contains("online"), "{table}");
        assert!(table.contains("offline") && table.ends_with("2 drivers as of seq 8"), "{table}");
    }

    #[test]
    fn ages_read_naturally() {
        assert_eq!(age(time::Duration::seconds(-3)), "0s");
        assert_eq!(age(time::Duration::seconds(59)), "59s");
        assert_eq!(age(time::Duration::seconds(187)), "3m07s");
        assert_eq!(age(time::Duration::seconds(7500)), "2h05m");
    }
}
