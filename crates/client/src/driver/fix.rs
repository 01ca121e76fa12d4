//! [`Fix`]: one GPS fix as the device took it, and its `location:update` payload.

use serde_json::{Value, json};

use crate::outbox::now_ms;

/// One GPS fix, as the device took it.
#[derive(Debug, Clone, PartialEq)]
pub struct Fix {
    /// Latitude, −90…90.
    pub lat: f64,
    /// Longitude, −180…180.
    pub lng: f64,
    /// When the fix was taken, epoch milliseconds. [`Fix::new`] uses now.
    pub recorded_at_ms: i64,
    /// A driver status to set with it (e.g. `"ON_TRIP"`).
    pub status: Option<String>,
    /// Accuracy in metres.
    pub accuracy: Option<f64>,
    /// Heading, 0…360 degrees.
    pub heading: Option<f64>,
    /// Speed in m/s.
    pub speed: Option<f64>,
}

impl Fix {
    /// A fix at `lat`, `lng`, taken now.
    pub fn new(lat: f64, lng: f64) -> Self {
        Self { lat, lng, recorded_at_ms: now_ms(), status: None, accuracy: None, heading: None, speed: None }
    }

    /// The `location:update` payload, without `id` (the outbox adds it).
    pub fn to_payload(&self) -> Value {
        let mut payload = json!({ "lat": self.lat, "lng": self.lng, "recordedAt": self.recorded_at_ms });
        let map = payload.as_object_mut().expect("built as an object");
        if let Some(s) = &self.status {
            map.insert("status".to_owned(), json!(s));
        }
        for (key, value) in [("accuracy", self.accuracy), ("heading", self.heading), ("speed", self.speed)] {
            if let Some(v) = value {
                map.insert(key.to_owned(), json!(v));
            }
        }
        payload
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fix_payload_has_the_contract_fields() {
        let mut fix = Fix::new(13.75, 100.5);
        fix.recorded_at_ms = 1_700_000_000_000;
        fix.speed = Some(3.5);
        assert_eq!(
            fix.to_payload(),
            json!({"lat": 13.75, "lng": 100.5, "recordedAt": 1_700_000_000_000i64, "speed": 3.5})
        );
    }
}
