//! Raw client payloads → validated domain values (contract §3, §7).
//! Parse, don't validate: everything after this module works with [`Fix`]
//! and [`StatusChange`], never with JSON.

use serde_json::Value;
use wecare_proto::{DriverId, DriverStatus, ErrorCode, MessageId, event::MAX_BATCH};

use super::fields::{Sent, SentFields};
use crate::clock::{Millis, parse_time_ms, parse_time_text};

/// How far ahead of the server clock a device time may be before it is
/// replaced by the receive time.
const MAX_FUTURE_MS: Millis = 5 * 60 * 1000;

/// A refusal: the contract code and a human message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub(crate) struct Rejection {
    pub(crate) code: ErrorCode,
    pub(crate) message: &'static str,
}

impl Rejection {
    pub(crate) const fn new(code: ErrorCode, message: &'static str) -> Self {
        Self { code, message }
    }
}

fn payload(message: &'static str) -> Rejection {
    Rejection::new(ErrorCode::InvalidPayload, message)
}

fn coords(message: &'static str) -> Rejection {
    Rejection::new(ErrorCode::InvalidCoordinates, message)
}

/// A GPS fix that passed every rule.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Fix {
    /// `None` for old clients that send no id (no dedup possible).
    pub(crate) id: Option<MessageId>,
    pub(crate) lat: f64,
    pub(crate) lng: f64,
    pub(crate) recorded_at: Millis,
    /// The device time was too far in the future and was replaced.
    pub(crate) adjusted: bool,
    pub(crate) status: Option<DriverStatus>,
    pub(crate) accuracy: Option<f64>,
    pub(crate) heading: Option<f64>,
    pub(crate) speed: Option<f64>,
}

/// A `driver:status` payload that passed every rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StatusChange {
    pub(crate) id: Option<MessageId>,
    pub(crate) status: DriverStatus,
}

/// Validates one `location:update` payload sent by `sender` at `received`
/// (the server reads the payload as [`SentFields`]; this is for tests and
/// the fuzz target).
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn fix(value: &Value, sender: &DriverId, received: Millis) -> Result<Fix, Rejection> {
    fix_fields(&SentFields::from_value(value)?, sender, received)
}

/// [`fix`] of a payload read as [`SentFields`].
pub(crate) fn fix_fields(sent: &SentFields, sender: &DriverId, received: Millis) -> Result<Fix, Rejection> {
    check_driver_id(sent, sender)?;
    let id = message_id(sent)?;
    let lat = coordinate(sent.lat.as_ref(), 90.0)?;
    let lng = coordinate(sent.lng.as_ref(), 180.0)?;
    let time = match sent.recorded_at.as_ref().or(sent.timestamp.as_ref()) {
        Some(v) => sent_time(v).ok_or(payload("recordedAt is not a time"))?,
        None => received,
    };
    let (recorded_at, adjusted) = if time > received + MAX_FUTURE_MS { (received, true) } else { (time, false) };
    let status = sent.status.as_ref().map(status).transpose()?;
    Ok(Fix {
        id,
        lat,
        lng,
        recorded_at,
        adjusted,
        status,
        accuracy: optional_number(sent.accuracy.as_ref(), 0.0, f64::MAX, "accuracy must be a number >= 0")?,
        heading: optional_number(sent.heading.as_ref(), 0.0, 360.0, "heading must be a number in 0..360")?,
        speed: optional_number(sent.speed.as_ref(), 0.0, f64::MAX, "speed must be a number >= 0")?,
    })
}

/// Validates a `driver:status` payload.
pub(crate) fn status_change(value: &Value, sender: &DriverId) -> Result<StatusChange, Rejection> {
    let sent = SentFields::from_value(value)?;
    check_driver_id(&sent, sender)?;
    let id = message_id(&sent)?;
    let status = status(sent.status.as_ref().ok_or(payload("status is required"))?)?;
    Ok(StatusChange { id, status })
}

/// Why a fix's JSON did not parse: a number too large for a double (`1e400`)
/// is an out-of-range coordinate (contract §3), anything else is not JSON.
pub(crate) fn unparsable(error: &impl std::fmt::Display) -> Rejection {
    if error.to_string().contains("number out of range") {
        Rejection::new(ErrorCode::InvalidCoordinates, "coordinate out of range")
    } else {
        Rejection::new(ErrorCode::InvalidPayload, "payload is not valid JSON")
    }
}

/// The items of a `location:batch` payload, each still to be validated.
pub(crate) fn batch_items(value: &Value) -> Result<&[Value], Rejection> {
    let items = value.get("updates").and_then(Value::as_array).ok_or(payload("updates must be an array"))?;
    if items.is_empty() || items.len() > MAX_BATCH {
        return Err(payload("updates must hold 1 to 1000 items"));
    }
    Ok(items)
}

fn check_driver_id(sent: &SentFields, sender: &DriverId) -> Result<(), Rejection> {
    let matches = match &sent.driver_id {
        None => return Ok(()),
        Some(Sent::Text(s)) => s == sender.as_str(),
        Some(Sent::Number(n)) => n.to_string() == sender.as_str(),
        Some(_) => return Err(payload("driverId must be a string or number")),
    };
    if matches { Ok(()) } else { Err(Rejection::new(ErrorCode::Forbidden, "driverId does not match the token")) }
}

fn message_id(sent: &SentFields) -> Result<Option<MessageId>, Rejection> {
    match &sent.id {
        None => Ok(None),
        Some(Sent::Text(s)) => {
            MessageId::parse(s.as_str()).map(Some).map_err(|_| payload("id must be a string of 1 to 64 characters"))
        }
        Some(_) => Err(payload("id must be a string of 1 to 64 characters")),
    }
}

fn coordinate(sent: Option<&Sent>, limit: f64) -> Result<f64, Rejection> {
    match sent {
        None => Err(coords("lat and lng are required")),
        Some(Sent::Number(n)) => {
            let v = n.as_f64().ok_or(coords("coordinate is not a finite number"))?;
            if v.is_finite() && (-limit..=limit).contains(&v) { Ok(v) } else { Err(coords("coordinate out of range")) }
        }
        Some(_) => Err(payload("lat and lng must be numbers")),
    }
}

/// A device time: epoch milliseconds or an ISO-8601 string, as
/// [`parse_time`](crate::clock::parse_time) reads them.
fn sent_time(sent: &Sent) -> Option<Millis> {
    match sent {
        Sent::Number(n) => parse_time_ms(n.as_f64()?),
        Sent::Text(s) => parse_time_text(s),
        Sent::Bool | Sent::Compound => None,
    }
}

fn status(sent: &Sent) -> Result<DriverStatus, Rejection> {
    sent.as_str().and_then(|s| s.parse().ok()).ok_or(payload("unknown status"))
}

fn optional_number(sent: Option<&Sent>, min: f64, max: f64, message: &'static str) -> Result<Option<f64>, Rejection> {
    match sent {
        None => Ok(None),
        Some(v) => match v.as_f64() {
            Some(f) if f.is_finite() && (min..=max).contains(&f) => Ok(Some(f)),
            _ => Err(payload(message)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: Millis = 1_768_552_200_000;

    fn me() -> DriverId {
        DriverId::new("d1")
    }

    fn code_of(v: Value) -> Option<ErrorCode> {
        fix(&v, &me(), NOW).err().map(|r| r.code)
    }

    #[test]
    fn table_of_bad_fixes() {
        use ErrorCode::*;
        let cases: Vec<(Value, ErrorCode)> = vec![
            (json!(null), InvalidPayload),
            (json!([1, 2]), InvalidPayload),
            (json!("lat"), InvalidPayload),
            (json!({"lng": 100.5}), InvalidCoordinates),
            (json!({"lat": null, "lng": 100.5}), InvalidCoordinates),
            (json!({"lat": 91, "lng": 100.5}), InvalidCoordinates),
            (json!({"lat": -90.0001, "lng": 100.5}), InvalidCoordinates),
            (json!({"lat": 13.7, "lng": 180.5}), InvalidCoordinates),
            (json!({"lat": 13.7, "lng": -181}), InvalidCoordinates),
            (json!({"lat": "13.7", "lng": 100.5}), InvalidPayload),
            (json!({"lat": "abc", "lng": 100.5}), InvalidPayload),
            (json!({"lat": true, "lng": 100.5}), InvalidPayload),
            (json!({"lat": {"v": 1}, "lng": 100.5}), InvalidPayload),
            (json!({"lat": 13.7, "lng": [100.5]}), InvalidPayload),
            (json!({"id": "", "lat": 13.7, "lng": 100.5}), InvalidPayload),
            (json!({"id": "x".repeat(65), "lat": 13.7, "lng": 100.5}), InvalidPayload),
            (json!({"id": 42, "lat": 13.7, "lng": 100.5}), InvalidPayload),
            (json!({"lat": 13.7, "lng": 100.5, "recordedAt": "soon"}), InvalidPayload),
            (json!({"lat": 13.7, "lng": 100.5, "timestamp": false}), InvalidPayload),
            (json!({"lat": 13.7, "lng": 100.5, "status": "SLEEPING"}), InvalidPayload),
            (json!({"lat": 13.7, "lng": 100.5, "status": 3}), InvalidPayload),
            (json!({"lat": 13.7, "lng": 100.5, "accuracy": -1}), InvalidPayload),
            (json!({"lat": 13.7, "lng": 100.5, "heading": 361}), InvalidPayload),
            (json!({"lat": 13.7, "lng": 100.5, "speed": "fast"}), InvalidPayload),
            (json!({"lat": 13.7, "lng": 100.5, "driverId": "d2"}), Forbidden),
            (json!({"lat": 13.7, "lng": 100.5, "driverId": 2}), Forbidden),
        ];
        for (value, want) in cases {
            assert_eq!(code_of(value.clone()), Some(want), "{value}");
        }
    }

    #[test]
    fn non_finite_numbers_cannot_pass() {
        // JSON cannot carry NaN/Infinity (serde_json refuses to build them), and
        // text that overflows f64 is a parse error before validation.
        assert!(serde_json::Number::from_f64(f64::NAN).is_none());
        assert!(serde_json::Number::from_f64(f64::INFINITY).is_none());
        assert!(serde_json::from_str::<Value>(r#"{"lat": 1e400, "lng": 0}"#).is_err());
    }

    #[test]
    fn range_property_over_many_values() {
        // A deterministic sweep: every finite value is accepted exactly when in range.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = (x as f64 / u64::MAX as f64) * 400.0 - 200.0;
            let lat_ok = (-90.0..=90.0).contains(&v);
            let lng_ok = (-180.0..=180.0).contains(&v);
            let r = fix(&json!({"lat": v, "lng": 0}), &me(), NOW);
            assert_eq!(r.is_ok(), lat_ok, "lat {v}");
            let r = fix(&json!({"lat": 0, "lng": v}), &me(), NOW);
            assert_eq!(r.is_ok(), lng_ok, "lng {v}");
            if !lng_ok {
                assert_eq!(r.unwrap_err().code, ErrorCode::InvalidCoordinates);
            }
        }
    }

    #[test]
    fn legacy_client_payload_is_accepted() {
        let v = json!({"driverId": "d1", "lat": 13.75, "lng": 100.5, "status": "available",
                       "timestamp": "2026-01-16T08:29:59.000Z"});
        let f = fix(&v, &me(), NOW).unwrap();
        assert_eq!(f.id, None);
        assert_eq!(f.recorded_at, NOW - 1000);
        assert_eq!(f.status, Some(DriverStatus::Available));
        assert!(!f.adjusted);
    }

    #[test]
    fn future_time_is_adjusted_not_refused() {
        let v = json!({"id": "a", "lat": 0, "lng": 0, "recordedAt": NOW + 5 * 60 * 1000 + 1});
        let f = fix(&v, &me(), NOW).unwrap();
        assert_eq!((f.recorded_at, f.adjusted), (NOW, true));
        let v = json!({"id": "a", "lat": 0, "lng": 0, "recordedAt": NOW + 5 * 60 * 1000});
        assert!(!fix(&v, &me(), NOW).unwrap().adjusted);
    }

    #[test]
    fn recorded_at_wins_over_timestamp_and_nulls_are_absent() {
        let v = json!({"lat": 1, "lng": 2, "recordedAt": NOW - 5, "timestamp": NOW - 9,
                       "driverId": null, "id": null, "accuracy": null, "extra": {"deep": [1]}});
        let f = fix(&v, &me(), NOW).unwrap();
        assert_eq!(f.recorded_at, NOW - 5);
        assert_eq!(f.accuracy, None);
    }

    #[test]
    fn boundaries_are_inclusive() {
        for (lat, lng) in [(90.0, 180.0), (-90.0, -180.0), (0.0, 0.0)] {
            assert!(fix(&json!({"lat": lat, "lng": lng}), &me(), NOW).is_ok());
        }
        let v = json!({"lat": 1, "lng": 2, "heading": 360, "speed": 0, "accuracy": 0});
        assert!(fix(&v, &me(), NOW).is_ok());
    }

    #[test]
    fn status_change_rules() {
        let ok = status_change(&json!({"status": "on_trip", "driverId": "d1"}), &me()).unwrap();
        assert_eq!(ok.status, DriverStatus::OnTrip);
        let bad = status_change(&json!({"status": "NAPPING"}), &me()).unwrap_err();
        assert_eq!(bad.code, ErrorCode::InvalidPayload);
        let missing = status_change(&json!({}), &me()).unwrap_err();
        assert_eq!(missing.code, ErrorCode::InvalidPayload);
        let spoof = status_change(&json!({"status": "BUSY", "driverId": "x"}), &me()).unwrap_err();
        assert_eq!(spoof.code, ErrorCode::Forbidden);
    }

    #[test]
    fn batch_bounds() {
        assert!(batch_items(&json!({"updates": []})).is_err());
        assert!(batch_items(&json!({"updates": {}})).is_err());
        assert!(batch_items(&json!([])).is_err());
        let big: Vec<Value> = (0..1001).map(|_| json!({})).collect();
        assert!(batch_items(&json!({ "updates": big })).is_err());
        let full: Vec<Value> = (0..1000).map(|_| json!({})).collect();
        assert_eq!(batch_items(&json!({ "updates": full })).unwrap().len(), 1000);
    }
}
