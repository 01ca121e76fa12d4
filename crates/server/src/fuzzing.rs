//! Entry point for the fuzz target (`fuzz/`) and its stable-toolchain
//! replay test: every decoder and validator a client's bytes reach, run on
//! arbitrary input. None may panic, and whatever they accept must satisfy
//! the invariants the rest of the server relies on.

use serde_json::Value;
use wecare_proto::DriverId;

use crate::clock::parse_time;
use crate::domain::auth::TokenVerifier;
use crate::domain::fields::SentFields;
use crate::domain::validate;
use crate::transport::events_page::SyncQuery;

/// Feeds `data` to every payload decoder; panics only on a broken invariant.
pub fn payload(data: &[u8]) {
    let verifier = TokenVerifier::new(b"fuzz", 0, &["officer".to_string()]);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = verifier.verify(text, 1_800_000_000);
    }
    let me = DriverId::new("fuzz-driver");
    let now = 1_800_000_000_000;
    let read_as_text = std::str::from_utf8(data).ok().map(SentFields::from_json);
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        assert!(
            read_as_text.is_none_or(|r| r.is_err()),
            "text read where a Value is not: {:?}",
            String::from_utf8_lossy(data)
        );
        return;
    };
    // A `location:update` is read from its text, a batch item from its
    // `Value`: both must say the same.
    if let Some(read) = read_as_text {
        assert_eq!(read, Ok(SentFields::from_value(&value)), "text and Value read differently");
    }
    check_fix(&value, &me, now);
    if let Ok(items) = validate::batch_items(&value) {
        assert!(!items.is_empty() && items.len() <= wecare_proto::event::MAX_BATCH);
        for item in items {
            check_fix(item, &me, now);
        }
    }
    if let Ok(change) = validate::status_change(&value, &me) {
        assert!(change.status.as_str().chars().all(|c| c.is_ascii_uppercase() || c == '_'));
    }
    let _ = SyncQuery::from_json(&value);
    if let Some(ms) = parse_time(&value) {
        assert!(ms >= 0);
    }
}

fn check_fix(value: &Value, me: &DriverId, now: i64) {
    if let Ok(fix) = validate::fix(value, me, now) {
        assert!(fix.lat.is_finite() && (-90.0..=90.0).contains(&fix.lat));
        assert!(fix.lng.is_finite() && (-180.0..=180.0).contains(&fix.lng));
        assert!(fix.recorded_at <= now + 5 * 60 * 1000, "future times are adjusted");
        assert!(fix.id.as_ref().is_none_or(|id| (1..=64).contains(&id.as_str().chars().count())));
        assert!(fix.heading.is_none_or(|h| (0.0..=360.0).contains(&h)));
    }
}

#[cfg(test)]
mod tests {
    /// The fuzz target's corpus seeds plus generated garbage, on every test
    /// run (the fuzzer itself needs a nightly toolchain; this does not).
    #[test]
    fn decoders_survive_garbage() {
        let seeds: &[&[u8]] = &[
            br#"{"id":"a","lat":13.7,"lng":100.5,"recordedAt":"2026-01-16T08:30:00.000Z"}"#,
            br#"{"updates":[{"lat":1,"lng":2},{"lat":"x"},null,[],{"lat":91,"lng":0}]}"#,
            br#"{"status":"on_trip","driverId":"fuzz-driver"}"#,
            br#"{"since":"12","limit":99999999999999999999}"#,
            br#"{"lat":1e308,"lng":-1e308,"timestamp":1e300,"heading":-0.0}"#,
            b"eyJhbGciOiJIUzI1NiJ9.eyJpZCI6MX0.c2ln",
            b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
            b"\xff\xfe\x00{",
        ];
        for seed in seeds {
            super::payload(seed);
        }
        // Mutations of the seeds: flipped bytes, truncations, splices.
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..20_000 {
            let seed = seeds[(next() % seeds.len() as u64) as usize];
            let mut data = seed.to_vec();
            for _ in 0..(next() % 4) {
                if data.is_empty() {
                    break;
                }
                let i = (next() % data.len() as u64) as usize;
                match next() % 3 {
                    0 => data[i] = next() as u8,
                    1 => data.truncate(i),
                    _ => data.insert(i, b"{}[]\":,0-e.9\\u"[(next() % 14) as usize]),
                }
            }
            super::payload(&data);
        }
    }
}
