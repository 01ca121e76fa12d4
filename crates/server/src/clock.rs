//! Wall-clock time in epoch milliseconds, and its ISO-8601 wire form.

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::{Iso8601, Rfc3339};

/// Epoch milliseconds, the unit every stored time is kept in.
pub(crate) type Millis = i64;

/// Latest instant accepted from a client (9999-12-31T23:59:59.999Z).
const MAX_MILLIS: Millis = 253_402_300_799_999;

pub(crate) fn now_ms() -> Millis {
    let now = OffsetDateTime::now_utc();
    (now.unix_timestamp_nanos() / 1_000_000) as Millis
}

/// Epoch microseconds, strictly increasing within this process (a clock
/// step back does not reorder): when a socket's handshake completed, which
/// orders a user's sockets oldest-first across a cluster.
pub(crate) fn handshake_micros() -> i64 {
    use std::sync::atomic::{AtomicI64, Ordering};
    static LAST: AtomicI64 = AtomicI64::new(0);
    let now = (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000) as i64;
    let prev = LAST.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| Some(now.max(last + 1))).unwrap_or(0);
    now.max(prev + 1)
}

/// `2026-01-16T08:30:00.000Z`: UTC, always with milliseconds (contract §4).
pub(crate) fn iso(ms: Millis) -> String {
    let dt =
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        dt.year(),
        u8::from(dt.month()),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second(),
        dt.millisecond()
    )
}

/// Reads a client time: an RFC 3339 / ISO-8601 string with an offset, or
/// epoch milliseconds. `None` when it is not a time.
pub(crate) fn parse_time(value: &Value) -> Option<Millis> {
    let ms = match value {
        Value::Number(n) => {
            let f = n.as_f64()?;
            if !f.is_finite() {
                return None;
            }
            f.trunc() as Millis
        }
        Value::String(s) => {
            let dt = OffsetDateTime::parse(s, &Rfc3339)
                .or_else(|_| {
                    // ISO-8601 without an offset: read as UTC.
                    time::PrimitiveDateTime::parse(s, &Iso8601::DEFAULT).map(|p| p.assume_utc())
                })
                .ok()?;
            (dt.unix_timestamp_nanos() / 1_000_000) as Millis
        }
        _ => return None,
    };
    (0..=MAX_MILLIS).contains(&ms).then_some(ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn iso_has_millis_and_z() {
        assert_eq!(iso(1_768_552_200_000), "2026-01-16T08:30:00.000Z");
        assert_eq!(iso(1_768_552_200_007), "2026-01-16T08:30:00.007Z");
    }

    #[test]
    fn parses_iso_and_epoch_ms() {
        assert_eq!(parse_time(&json!("2026-01-16T08:30:00.000Z")), Some(1_768_552_200_000));
        assert_eq!(parse_time(&json!("2026-01-16T15:30:00+07:00")), Some(1_768_552_200_000));
        assert_eq!(parse_time(&json!(1_768_552_200_000_i64)), Some(1_768_552_200_000));
        assert_eq!(parse_time(&json!("2026-01-16T08:30:00")), Some(1_768_552_200_000), "no offset: UTC");
        assert_eq!(parse_time(&json!("2026-01-16T08:30:00.250")), Some(1_768_552_200_250));
    }

    #[test]
    fn rejects_what_is_not_a_time() {
        for v in [json!("yesterday"), json!(""), json!(true), json!({}), json!(-1), json!("1768552200000")] {
            assert_eq!(parse_time(&v), None, "{v}");
        }
    }
}
