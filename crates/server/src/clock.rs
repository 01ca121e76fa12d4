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
/// Every ack and every event renders two or three of these, so the usual
/// range is done by arithmetic (no formatter, one allocation); others go
/// through `time`.
pub(crate) fn iso(ms: Millis) -> String {
    IsoText::new(ms).as_str().to_owned()
}

/// An ISO time ([`iso`]) held on the stack in the usual range: what a
/// payload borrows when it is rendered once and thrown away (a stored fix's
/// watcher payload renders two).
#[derive(Debug)]
pub(crate) enum IsoText {
    Usual([u8; 24]),
    Other(String),
}

impl IsoText {
    pub(crate) fn new(ms: Millis) -> Self {
        if !(0..=MAX_MILLIS).contains(&ms) {
            return Self::Other(iso_by_time(ms));
        }
        let (days, in_day) = (ms / 86_400_000, ms % 86_400_000);
        let (year, month, day) = civil_from_days(days);
        let mut out = [0u8; 24];
        let mut at = 0;
        let mut digits = |value: i64, width: u32, after: u8| {
            for place in (0..width).rev() {
                out[at] = b'0' + ((value / 10_i64.pow(place)) % 10) as u8;
                at += 1;
            }
            out[at] = after;
            at += 1;
        };
        digits(year, 4, b'-');
        digits(month, 2, b'-');
        digits(day, 2, b'T');
        digits(in_day / 3_600_000, 2, b':');
        digits(in_day / 60_000 % 60, 2, b':');
        digits(in_day / 1000 % 60, 2, b'.');
        digits(in_day % 1000, 3, b'Z');
        Self::Usual(out)
    }

    pub(crate) fn as_str(&self) -> &str {
        match self {
            // ASCII digits and separators: always UTF-8.
            Self::Usual(bytes) => std::str::from_utf8(bytes).unwrap_or_default(),
            Self::Other(s) => s,
        }
    }
}

/// (year, month, day) of a day count from 1970-01-01, for days ≥ 0: the
/// proleptic Gregorian calendar in 400-year eras (H. Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153; // March = 0
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 { shifted_month + 3 } else { shifted_month - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn iso_by_time(ms: Millis) -> String {
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
    match value {
        Value::Number(n) => parse_time_ms(n.as_f64()?),
        Value::String(s) => parse_time_text(s),
        _ => None,
    }
}

/// [`parse_time`] of a number: epoch milliseconds (the fraction dropped).
pub(crate) fn parse_time_ms(f: f64) -> Option<Millis> {
    if !f.is_finite() {
        return None;
    }
    in_range(f.trunc() as Millis)
}

/// [`parse_time`] of a string: RFC 3339, or ISO-8601 without an offset (UTC).
pub(crate) fn parse_time_text(s: &str) -> Option<Millis> {
    let dt = OffsetDateTime::parse(s, &Rfc3339)
        .or_else(|_| time::PrimitiveDateTime::parse(s, &Iso8601::DEFAULT).map(|p| p.assume_utc()))
        .ok()?;
    in_range((dt.unix_timestamp_nanos() / 1_000_000) as Millis)
}

fn in_range(ms: Millis) -> Option<Millis> {
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
        assert_eq!(iso(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso(MAX_MILLIS), "9999-12-31T23:59:59.999Z");
        assert_eq!(iso(951_782_400_000), "2000-02-29T00:00:00.000Z", "a leap day of a 400th year");
        assert_eq!(iso(4_107_542_400_000), "2100-03-01T00:00:00.000Z", "2100 is no leap year");
    }

    #[test]
    fn iso_by_arithmetic_agrees_with_the_time_crate() {
        // Every day boundary of 1970–2110, and a deterministic scatter over
        // the whole range, with their last millisecond.
        let day = 86_400_000;
        let days = (0..51_500).map(|d| d * day);
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let scatter = std::iter::repeat_with(move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % MAX_MILLIS as u64) as Millis
        })
        .take(50_000);
        for ms in days.chain(scatter) {
            for ms in [ms, (ms - 1).max(0), (ms + day - 1).min(MAX_MILLIS)] {
                assert_eq!(iso(ms), iso_by_time(ms), "{ms}");
            }
        }
        assert_eq!(iso(-1), iso_by_time(-1), "outside the range: as before");
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
