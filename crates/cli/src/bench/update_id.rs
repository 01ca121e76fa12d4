//! The bench's message ids: `<run>.<driver>.<n>.<sent µs>`, so that a watcher
//! learns from the `id` of a `location:updated` alone which update it is and
//! when it was sent, with no shared map between drivers and watchers.

use std::fmt;

/// One update of one bench run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct UpdateId<'a> {
    /// Tag of this bench run (ids of other runs are ignored).
    pub(super) run: &'a str,
    /// Index of the sending driver.
    pub(super) driver: u32,
    /// The driver's update counter.
    pub(super) n: u32,
    /// Microseconds from the run's origin to the send.
    pub(super) sent_us: u64,
}

impl<'a> UpdateId<'a> {
    /// Parses an id written by [`UpdateId`]'s `Display`; `None` for any other id.
    pub(super) fn parse(id: &'a str) -> Option<Self> {
        let mut parts = id.split('.');
        let run = parts.next()?;
        let driver = parts.next()?.parse().ok()?;
        let n = parts.next()?.parse().ok()?;
        let sent_us = parts.next()?.parse().ok()?;
        if parts.next().is_some() {
            return None;
        }
        Some(Self { run, driver, n, sent_us })
    }

    /// The update as one sortable number, for set operations over deliveries.
    pub(super) fn key(&self) -> u64 {
        key(self.driver, self.n)
    }
}

/// [`UpdateId::key`] from its parts.
pub(super) fn key(driver: u32, n: u32) -> u64 {
    (u64::from(driver) << 32) | u64::from(n)
}

impl fmt::Display for UpdateId<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}.{}", self.run, self.driver, self.n, self.sent_us)
    }
}

/// A run tag: `b` and the start time in base 36 (8–9 characters), so ids of
/// consecutive runs against the same store never collide (the server would
/// deduplicate them).
pub(super) fn run_tag(epoch_ms: u128) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut digits = Vec::new();
    let mut rest = epoch_ms;
    loop {
        digits.push(char::from(DIGITS[(rest % 36) as usize]));
        rest /= 36;
        if rest == 0 {
            break;
        }
    }
    std::iter::once('b').chain(digits.into_iter().rev()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_round_trips_and_fits_the_contract_limit() {
        let run = run_tag(1_800_000_000_000);
        let id = UpdateId { run: &run, driver: u32::MAX, n: u32::MAX, sent_us: u64::MAX };
        let text = id.to_string();
        assert!(text.len() <= 64, "{text}");
        assert_eq!(UpdateId::parse(&text), Some(id));
    }

    #[test]
    fn foreign_ids_are_not_parsed() {
        for id in ["", "abc", "r.1.2", "r.1.2.3.4", "r.x.2.3", "r.1.2.-3"] {
            assert_eq!(UpdateId::parse(id), None, "{id}");
        }
    }

    #[test]
    fn keys_order_by_driver_then_counter() {
        assert!(key(1, 0) > key(0, u32::MAX));
        assert!(key(1, 2) < key(1, 3));
    }

    #[test]
    fn run_tags_are_base36() {
        assert_eq!(run_tag(0), "b0");
        assert_eq!(run_tag(36), "b10");
        assert_eq!(run_tag(35), "bz");
    }
}
