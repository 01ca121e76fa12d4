//! The fleet as the watcher sees it: one row per driver, updated from
//! [`WatcherEvent`]s, rendered as a text table.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use wecare_client::WatcherEvent;
use wecare_proto::payload::StreamEvent;

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

fn time_of(iso: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(iso, &Rfc3339).ok()
}

impl Fleet {
    /// Applies one event from the watcher.
    pub(crate) fn apply(&mut self, event: &WatcherEvent) {
        match event {
            WatcherEvent::Snapshot { seq, drivers, .. } => {
                self.drivers.clear();
                self.seq = *seq;
                for d in drivers {
                    let row = Row {
                        position: d.lat.zip(d.lng),
                        recorded_at: d.recorded_at.as_deref().and_then(time_of),
                        status: d.status.map(|s| s.as_str().to_owned()),
                        online: Some(d.online),
                    };
                    self.drivers.insert(d.driver_id.clone(), row);
                }
            }
            WatcherEvent::Event(event) => {
                self.seq = event.seq().0;
                let row = self.drivers.entry(event.driver_id().to_owned()).or_default();
                match event {
                    StreamEvent::LocationUpdated(fix) => {
                        if let Some(s) = fix.status {
                            row.status = Some(s.as_str().to_owned());
                        }
                        // An outdated fix belongs on the trail, not on the marker.
                        if !fix.outdated {
                            row.position = Some((fix.lat, fix.lng));
                            row.recorded_at = time_of(&fix.recorded_at).or(row.recorded_at);
                        }
                    }
                    StreamEvent::DriverStatusUpdated(e) => row.status = Some(e.status.as_str().to_owned()),
                    StreamEvent::DriverPresence(e) => row.online = Some(e.online),
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

    fn event(data: serde_json::Value) -> WatcherEvent {
        WatcherEvent::Event(serde_json::from_value(data).unwrap())
    }

    #[test]
    fn snapshot_then_events_update_the_rows() {
        let mut fleet = Fleet::default();
        let snapshot: wecare_proto::payload::DriversSnapshot = serde_json::from_value(json!({
            "streamId": "s", "seq": 5,
            "drivers": [{"driverId": "d1", "lat": 13.7, "lng": 100.5, "recordedAt": "2026-01-16T08:30:00.000Z",
                "status": "AVAILABLE", "online": true, "lastSeen": "2026-01-16T08:30:00.000Z"}],
        }))
        .unwrap();
        fleet.apply(&WatcherEvent::Snapshot { stream_id: snapshot.stream_id, seq: 5, drivers: snapshot.drivers });
        let fix = |seq: u64, lat: f64, at: &str, outdated: bool| {
            event(json!({"type": "location:updated", "seq": seq, "id": format!("f{seq}"), "driverId": "d1",
                "lat": lat, "lng": 100.6, "latitude": lat, "longitude": 100.6, "recordedAt": at, "lastUpdated": at,
                "timestamp": at, "status": "ON_TRIP", "outdated": outdated}))
        };
        fleet.apply(&fix(6, 13.8, "2026-01-16T08:30:10.000Z", false));
        fleet.apply(&fix(7, 1.0, "2026-01-16T08:00:00.000Z", true));
        fleet.apply(&event(json!({"type": "driver:presence", "seq": 8, "driverId": "7", "online": false,
            "timestamp": "2026-01-16T08:30:10.000Z"})));
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
