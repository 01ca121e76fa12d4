//! The events of the one ordered stream: what the sequencer takes in
//! ([`NewEvent`]) and what it hands out ([`StreamEvent`], encoded once).

use std::sync::Arc;

use serde_json::value::RawValue;
use wecare_proto::{DriverId, DriverStatus, MessageId, Seq, event, payload};

use crate::clock::{IsoText, Millis, iso};
use crate::domain::validate::{Fix, StatusChange};

/// The kind of a stream event; the number is what storage keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventKind {
    Location = 1,
    Status = 2,
    Presence = 3,
}

impl EventKind {
    /// The Socket.io event name watchers receive it under.
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Self::Location => event::LOCATION_UPDATED,
            Self::Status => event::DRIVER_STATUS_UPDATED,
            Self::Presence => event::DRIVER_PRESENCE,
        }
    }

    pub(crate) fn from_code(code: i64) -> Option<Self> {
        match code {
            1 => Some(Self::Location),
            2 => Some(Self::Status),
            3 => Some(Self::Presence),
            _ => None,
        }
    }
}

/// What happened, before it has a place in the stream.
#[derive(Debug, Clone)]
pub(crate) enum Body {
    Location(Fix),
    Status(DriverStatus),
    /// `offline_grace` (offline only): the store drops the event if the
    /// driver has a socket on any node, or had one within that many ms —
    /// checked inside the commit, so a node never flips a driver offline
    /// while another node holds its socket.
    Presence {
        online: bool,
        offline_grace: Millis,
    },
}

/// An accepted event on its way to the sequencer.
#[derive(Debug, Clone)]
pub(crate) struct NewEvent {
    pub(crate) driver: DriverId,
    pub(crate) email: Option<Arc<str>>,
    /// The driver's display name from the token (`name`, `full_name` or `fullName`).
    pub(crate) name: Option<Arc<str>>,
    /// The client's id, or one the server made up (then `dedup` is false).
    pub(crate) id: MessageId,
    pub(crate) dedup: bool,
    pub(crate) received: Millis,
    pub(crate) body: Body,
}

impl NewEvent {
    pub(crate) fn location(sender: Sender, fix: Fix, received: Millis) -> Self {
        let (id, dedup) = client_or_server_id(fix.id.clone());
        let Sender { driver, email, name } = sender;
        Self { driver, email, name, id, dedup, received, body: Body::Location(fix) }
    }

    pub(crate) fn status(sender: Sender, change: StatusChange, received: Millis) -> Self {
        let (id, dedup) = client_or_server_id(change.id);
        let Sender { driver, email, name } = sender;
        Self { driver, email, name, id, dedup, received, body: Body::Status(change.status) }
    }

    /// A driver came online (a socket of it opened on some node).
    pub(crate) fn online(driver: DriverId, received: Millis) -> Self {
        Self::presence(driver, true, 0, received)
    }

    /// A driver went offline, unless it has had a socket on any node within
    /// `grace` ms.
    pub(crate) fn offline(driver: DriverId, grace: Millis, received: Millis) -> Self {
        Self::presence(driver, false, grace, received)
    }

    pub(crate) fn presence(driver: DriverId, online: bool, offline_grace: Millis, received: Millis) -> Self {
        let (id, dedup) = client_or_server_id(None);
        Self { driver, email: None, name: None, id, dedup, received, body: Body::Presence { online, offline_grace } }
    }

    /// For an offline presence event: the grace its guard checks.
    pub(crate) fn offline_guard(&self) -> Option<Millis> {
        match self.body {
            Body::Presence { online: false, offline_grace } => Some(offline_grace),
            _ => None,
        }
    }
}

/// Who sent an event, as its token says.
#[derive(Debug, Clone)]
pub(crate) struct Sender {
    pub(crate) driver: DriverId,
    pub(crate) email: Option<Arc<str>>,
    pub(crate) name: Option<Arc<str>>,
}

impl Sender {
    /// A sender known only by its identity (tests, tools).
    #[cfg(test)]
    pub(crate) fn bare(driver: &str) -> Self {
        Self { driver: DriverId::new(driver), email: None, name: None }
    }
}

/// Old clients send no id: the server makes one up and cannot deduplicate.
fn client_or_server_id(id: Option<MessageId>) -> (MessageId, bool) {
    match id {
        Some(id) => (id, true),
        None => {
            let hex = crate::random::hex_id(12);
            (MessageId::parse(format!("srv-{hex}")).expect("28 characters is a valid id"), false)
        }
    }
}

/// A committed event with its `seq`, its watcher payload encoded once.
#[derive(Debug)]
pub(crate) struct StreamEvent {
    pub(crate) seq: Seq,
    pub(crate) kind: EventKind,
    /// The payload watchers receive, `seq` included.
    pub(crate) json: Box<RawValue>,
    /// Its socket frame, encoded for the first watcher it is written to
    /// and shared by every other (and by every replay of this copy).
    pub(crate) frame: std::sync::OnceLock<wecare_sio::Frame>,
}

impl StreamEvent {
    pub(crate) fn new(seq: Seq, kind: EventKind, json: Box<RawValue>) -> Self {
        Self { seq, kind, json, frame: std::sync::OnceLock::new() }
    }

    /// `{"type": <event name>, ...payload}` as `events:sync` lists it.
    pub(crate) fn typed_json(&self) -> String {
        let body = self.json.get();
        let rest = body.strip_prefix('{').unwrap_or("}");
        let sep = if rest.trim_start().starts_with('}') { "" } else { "," };
        format!("{{\"type\":\"{}\"{sep}{rest}", self.kind.name())
    }
}

fn empty_object() -> Box<RawValue> {
    RawValue::from_string("{}".to_string()).expect("{} is JSON")
}

pub(crate) type SharedEvent = Arc<StreamEvent>;

/// Derived facts the fleet state adds to an event when it gets its `seq`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Derived {
    pub(crate) outdated: bool,
    /// The driver's status after this event; `None` until it reported one.
    pub(crate) current_status: Option<DriverStatus>,
}

/// A committed event in typed form: what the store keeps (issue 17: typed
/// columns, not the wire JSON) and what its watcher payload is rendered
/// from, live and on every replay — so events stored by any version replay
/// with every field this version sends.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EventRecord {
    pub(crate) seq: Seq,
    pub(crate) driver: DriverId,
    pub(crate) email: Option<Arc<str>>,
    pub(crate) name: Option<Arc<str>>,
    pub(crate) id: MessageId,
    pub(crate) received: Millis,
    pub(crate) what: Recorded,
}

/// What a committed event says.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Recorded {
    Location(Located),
    Status(DriverStatus),
    Presence { online: bool },
}

/// A committed fix, with what the fleet state derived from it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Located {
    pub(crate) lat: f64,
    pub(crate) lng: f64,
    /// The device time (the track is ordered by it).
    pub(crate) recorded_at: Millis,
    pub(crate) accuracy: Option<f64>,
    pub(crate) heading: Option<f64>,
    pub(crate) speed: Option<f64>,
    /// The device time was too far in the future and was replaced.
    pub(crate) adjusted: bool,
    /// Older than the driver's position when it was stored.
    pub(crate) outdated: bool,
    /// The driver's status after this fix; `None` until it reported one.
    pub(crate) status: Option<DriverStatus>,
}

impl Recorded {
    pub(crate) fn kind(&self) -> EventKind {
        match self {
            Self::Location(_) => EventKind::Location,
            Self::Status(_) => EventKind::Status,
            Self::Presence { .. } => EventKind::Presence,
        }
    }
}

impl EventRecord {
    /// `ev` committed at `seq`, with what the fleet state derived.
    pub(crate) fn new(ev: &NewEvent, seq: Seq, derived: Derived) -> Self {
        let what = match &ev.body {
            Body::Location(fix) => Recorded::Location(Located {
                lat: fix.lat,
                lng: fix.lng,
                recorded_at: fix.recorded_at,
                accuracy: fix.accuracy,
                heading: fix.heading,
                speed: fix.speed,
                adjusted: fix.adjusted,
                outdated: derived.outdated,
                status: derived.current_status,
            }),
            Body::Status(status) => Recorded::Status(*status),
            Body::Presence { online, .. } => Recorded::Presence { online: *online },
        };
        Self {
            seq,
            driver: ev.driver.clone(),
            email: ev.email.clone(),
            name: ev.name.clone(),
            id: ev.id.clone(),
            received: ev.received,
            what,
        }
    }
}

/// Renders the watcher payload of `rec`: once per event for all its
/// watchers, and once per row of a replay page.
pub(crate) fn encode(rec: &EventRecord) -> StreamEvent {
    let seq = rec.seq;
    let driver_id = rec.driver.as_str();
    let json = match &rec.what {
        Recorded::Location(l) => {
            // Borrowed: the ids, names and both times are written straight
            // into the JSON, with no copy of each first.
            let (recorded_at, timestamp) = (IsoText::new(l.recorded_at), IsoText::new(rec.received));
            serde_json::value::to_raw_value(&payload::LocationUpdated::<&str> {
                seq,
                id: rec.id.as_str(),
                driver_id,
                driver_email: rec.email.as_deref(),
                driver_name: rec.name.as_deref(),
                lat: l.lat,
                lng: l.lng,
                latitude: l.lat,
                longitude: l.lng,
                recorded_at: recorded_at.as_str(),
                last_updated: recorded_at.as_str(),
                timestamp: timestamp.as_str(),
                status: l.status,
                accuracy: l.accuracy,
                heading: l.heading,
                speed: l.speed,
                outdated: l.outdated,
                adjusted: l.adjusted,
            })
        }
        Recorded::Status(status) => serde_json::value::to_raw_value(&payload::DriverStatusUpdated {
            seq,
            driver_id: driver_id.to_string(),
            driver_email: rec.email.as_deref().map(str::to_owned),
            status: *status,
            timestamp: iso(rec.received),
        }),
        Recorded::Presence { online } => serde_json::value::to_raw_value(&payload::DriverPresence {
            seq,
            driver_id: driver_id.to_string(),
            online: *online,
            timestamp: iso(rec.received),
        }),
    };
    // Serialised here from typed values: JSON already, not parsed again.
    let json = json.unwrap_or_else(|_| empty_object());
    StreamEvent::new(seq, rec.what.kind(), json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_json_prefixes_the_event_name() {
        let json = RawValue::from_string(r#"{"seq":3}"#.into()).unwrap();
        let ev = StreamEvent::new(Seq(3), EventKind::Presence, json);
        assert_eq!(ev.typed_json(), r#"{"type":"driver:presence","seq":3}"#);
    }

    /// What the server sends reads back as the wire type the clients
    /// decode into, live and in a page (`type` added).
    #[test]
    fn every_event_reads_back_as_its_wire_payload() {
        let base = |what| EventRecord {
            seq: Seq(9),
            driver: DriverId::new("amb-1"),
            email: Some("a@x".into()),
            name: Some("Ann".into()),
            id: MessageId::parse("m-9").unwrap(),
            received: 1_765_000_000_250,
            what,
        };
        let fix = Located {
            lat: 13.75,
            lng: 100.5,
            recorded_at: 1_765_000_000_000,
            accuracy: Some(5.0),
            heading: None,
            speed: None,
            adjusted: true,
            outdated: false,
            status: Some(DriverStatus::OnTrip),
        };
        for what in [Recorded::Location(fix), Recorded::Status(DriverStatus::Busy), Recorded::Presence { online: true }]
        {
            let ev = encode(&base(what.clone()));
            let paged: payload::StreamEvent = serde_json::from_str(&ev.typed_json()).unwrap();
            assert_eq!(paged.name(), ev.kind.name());
            let live = payload::StreamEvent::from_live(ev.kind.name(), serde_json::from_str(ev.json.get()).unwrap());
            assert_eq!(live.unwrap(), Some(paged.clone()));
            assert_eq!((paged.seq(), paged.driver_id()), (Seq(9), "amb-1"));
            if let payload::StreamEvent::LocationUpdated(l) = paged {
                assert_eq!(
                    (l.latitude, l.last_updated.as_str(), l.adjusted),
                    (13.75, "2025-12-06T05:46:40.000Z", true)
                );
                assert_eq!((l.driver_name.as_deref(), l.status), (Some("Ann"), Some(DriverStatus::OnTrip)));
            }
        }
    }

    #[test]
    fn server_ids_are_unique_and_not_deduplicated() {
        let (a, da) = client_or_server_id(None);
        let (b, _) = client_or_server_id(None);
        assert_ne!(a, b);
        assert!(!da);
    }
}
