//! What one socket may cost the server (issue 19): its events pass a token
//! bucket and a bound on how many are being handled at once; a socket that
//! keeps sending beyond them is closed. Each refusal is cheap — a counter,
//! a bucket, at most one small reply that is dropped if the socket's queue
//! is full — so a flood costs the flooder's own socket, not the others.
//!
//! The bounds are far above what an honest client does: the deployed web
//! client sends one fix at a time and waits for its ack; our clients send
//! batches of up to 1000 fixes as one event; a watcher pulls a page now and
//! then.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use wecare_proto::ErrorCode;

use crate::domain::rate::{Buckets, TokenBucket};
use crate::domain::validate::Rejection;

/// Events one socket may have in hand at once (waiting for storage, a
/// read, or their turn on the runtime): a client that pipelines its outbox
/// stays far below; a flood does not.
pub(crate) const MAX_IN_FLIGHT: usize = 1024;
/// Events a socket may send per second, sustained.
const EVENTS_PER_SEC: f64 = 1000.0;
/// ... and in a burst (an outbox flushed one fix per event after an outage).
const EVENTS_BURST: f64 = 10_000.0;
/// Refused events after which the socket is closed as abusive (an honest
/// client is never refused at all: it stays far inside the bounds above).
const REFUSALS_BEFORE_CLOSE: u64 = 5000;

/// Reads (a page of the stream, a track; a snapshot costs more, by its
/// size) one user may make per second, sustained, over all its sockets and
/// REST calls: a client catching up page by page reads 100 000 events a
/// second within it ...
const READS_PER_SEC: f64 = 100.0;
/// ... and in a burst.
const READS_BURST: f64 = 200.0;
/// A snapshot costs one read per this many bytes of it (a 5 MB snapshot of
/// 50 000 drivers: 50 reads), at least one.
pub(crate) const SNAPSHOT_BYTES_PER_READ: usize = 100 * 1024;

/// Every user's read budget: a page costs the storage reader (shared by
/// every watcher's catch-up), so one account cannot take it all.
#[derive(Debug)]
pub(crate) struct ReadBudget(Buckets<String>);

impl Default for ReadBudget {
    fn default() -> Self {
        Self(Buckets::new(READS_PER_SEC, READS_BURST))
    }
}

impl ReadBudget {
    /// Takes one read of `subject`, or refuses it (`RATE_LIMITED`).
    ///
    /// # Errors
    /// The user's reads are over the budget.
    pub(crate) fn take(&self, subject: &str) -> Result<(), Rejection> {
        self.take_n(subject, 1)
    }

    /// Takes `n` reads of `subject` at once (capped at the burst, so any
    /// read can be made eventually), or refuses them all.
    ///
    /// # Errors
    /// The user's reads are over the budget.
    pub(crate) fn take_n(&self, subject: &str, n: usize) -> Result<(), Rejection> {
        let n = n.clamp(1, READS_BURST as usize);
        self.0
            .take_all(&subject.to_string(), n, Instant::now())
            .map_err(|_| Rejection::new(ErrorCode::RateLimited, "too many reads; slow down"))
    }
}

/// One socket's bounds. See the module docs.
#[derive(Debug)]
pub(crate) struct SocketLimits {
    in_flight: AtomicUsize,
    events: Mutex<TokenBucket>,
    refused: AtomicU64,
    /// An `events:sync` is being answered: a second one waits its turn (is refused).
    syncing: AtomicBool,
}

/// Why an event was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Overload {
    /// Refused, `RATE_LIMITED`: the client may retry later.
    Refused,
    /// Refused once too often: the socket is to be closed.
    Abusive,
}

impl Overload {
    pub(crate) fn rejection(self) -> Rejection {
        Rejection::new(ErrorCode::RateLimited, "too many events from this socket; slow down")
    }
}

/// An event being handled; the slot is given back when it is dropped.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<SocketLimits>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The turn of one `events:sync`; the next may start when it is dropped.
#[derive(Debug)]
pub(crate) struct SyncTurn(Arc<SocketLimits>);

impl Drop for SyncTurn {
    fn drop(&mut self) {
        self.0.syncing.store(false, Ordering::Release);
    }
}

impl SocketLimits {
    pub(crate) fn new(now: Instant) -> Arc<Self> {
        Arc::new(Self {
            in_flight: AtomicUsize::new(0),
            events: Mutex::new(TokenBucket::new(EVENTS_PER_SEC, EVENTS_BURST, now)),
            refused: AtomicU64::new(0),
            syncing: AtomicBool::new(false),
        })
    }

    /// Takes an event in, or says why not.
    pub(crate) fn admit(self: &Arc<Self>, now: Instant) -> Result<InFlight, Overload> {
        let token = self.events.lock().unwrap_or_else(|e| e.into_inner()).take(1, now) == 1;
        if token && self.in_flight.fetch_add(1, Ordering::AcqRel) < MAX_IN_FLIGHT {
            return Ok(InFlight(Arc::clone(self)));
        }
        if token {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
        }
        Err(self.refuse())
    }

    /// The socket's one `events:sync` turn, if no other is running.
    pub(crate) fn sync_turn(self: &Arc<Self>) -> Result<SyncTurn, Overload> {
        if self.syncing.swap(true, Ordering::AcqRel) {
            return Err(self.refuse());
        }
        Ok(SyncTurn(Arc::clone(self)))
    }

    /// Counts a refusal; the one that reaches the limit says `Abusive` (once:
    /// the socket is being closed, later ones are plain refusals).
    fn refuse(&self) -> Overload {
        if self.refused.fetch_add(1, Ordering::AcqRel) + 1 == REFUSALS_BEFORE_CLOSE {
            Overload::Abusive
        } else {
            Overload::Refused
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn in_flight_events_are_bounded_and_their_slots_come_back() {
        let l = SocketLimits::new(Instant::now());
        let now = Instant::now();
        let held: Vec<_> = (0..MAX_IN_FLIGHT).map(|_| l.admit(now).expect("within the bound")).collect();
        assert_eq!(l.admit(now).unwrap_err(), Overload::Refused);
        drop(held);
        assert!(l.admit(now).is_ok(), "slots are given back");
    }

    #[test]
    fn a_flood_is_refused_past_the_burst_and_closed_past_the_refusals() {
        let l = SocketLimits::new(Instant::now());
        let now = Instant::now();
        let taken = (0..(EVENTS_BURST as usize)).filter(|_| l.admit(now).is_ok()).count();
        assert_eq!(taken, EVENTS_BURST as usize);
        let outcomes: Vec<_> = (0..REFUSALS_BEFORE_CLOSE + 10).map(|_| l.admit(now).unwrap_err()).collect();
        let abusive: Vec<usize> =
            outcomes.iter().enumerate().filter(|(_, o)| **o == Overload::Abusive).map(|(i, _)| i).collect();
        assert_eq!(abusive, vec![REFUSALS_BEFORE_CLOSE as usize - 1], "said once, when the limit is reached");
        // An honest pace is taken again a moment later.
        assert!(l.admit(now + Duration::from_millis(10)).is_ok());
    }

    #[test]
    fn one_sync_at_a_time() {
        let l = SocketLimits::new(Instant::now());
        let turn = l.sync_turn().expect("first");
        assert!(l.sync_turn().is_err());
        drop(turn);
        assert!(l.sync_turn().is_ok());
    }
}
