//! One budget for every call this node makes to the WeCare backend
//! (contract v1.3 §10): forwards and token checks together stay within
//! `BACKEND_MAX_CALLS_PER_MIN`, and a 429 pauses them all.
//!
//! The WeCare backend limits each client address to 100 requests a minute
//! on all of `/api` and answers 429 beyond it; a 429 costs a position or a
//! token check, and hammering a limiter only extends its window. So the
//! budget is kept here, before the call:
//! - **a hard cap**: at most `per_min` calls start in any 60 s, counted in
//!   one-second buckets over 61 s (conservative: a bucket leaves the count
//!   only when all of it is more than a minute old), whatever their kind;
//! - **pacing** for forwards: one per `60 s / per_min` (a small tolerance
//!   lets a large budget start several per round), so positions flow
//!   evenly instead of the whole minute's budget going out at once; token
//!   checks are not paced (a handshake waits for one) but use up the pace;
//! - **priority** to token checks: while one waits, no forward starts;
//! - **a pause** after a 429, until its `Retry-After` / `RateLimit-Reset`
//!   has passed: nothing starts, of either kind.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How far ahead of its pace a forward may start: lets a budget larger
/// than one call per forwarding round use its whole rate.
const PACE_TOLERANCE: Duration = Duration::from_millis(50);
/// The cap's window, and its buckets.
const WINDOW: Duration = Duration::from_secs(60);
const BUCKET: Duration = Duration::from_secs(1);
const BUCKETS: usize = 61;
/// A 429 without `Retry-After` or `RateLimit-Reset` pauses this long (the
/// limiter's whole window, the most it can mean).
pub(crate) const DEFAULT_PAUSE: Duration = WINDOW;
/// Longest pause a 429 is taken to ask for (a bogus header must not stop
/// forwarding for a day).
const MAX_PAUSE: Duration = Duration::from_secs(600);
/// How often a waiting token check looks again.
const CHECK_POLL: Duration = Duration::from_millis(50);

/// See the module docs. Shared (`Arc`) by the forwarder's thread and the
/// token gate; every method takes the lock only briefly.
#[derive(Debug)]
pub(crate) struct Budget {
    per_min: u32,
    /// `60 s / per_min`.
    spacing: Duration,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Calls started per second, a ring over the last [`BUCKETS`] seconds.
    counts: [u32; BUCKETS],
    /// The second (since `epoch`) `counts[second % BUCKETS]` holds.
    seconds: [u64; BUCKETS],
    epoch: Instant,
    /// The earliest start of the next paced call.
    next_paced: Instant,
    paused_until: Option<Instant>,
    checks_waiting: usize,
}

/// Why a call may not start now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Held {
    /// A 429 asked to wait until then.
    Paused,
    /// The budget has no room yet.
    Spent,
}

impl Budget {
    /// A budget of `per_min` calls a minute (at least 1).
    pub(crate) fn new(per_min: u32) -> Self {
        let per_min = per_min.max(1);
        let now = Instant::now();
        Self {
            per_min,
            spacing: WINDOW / per_min,
            state: Mutex::new(State {
                counts: [0; BUCKETS],
                seconds: [u64::MAX; BUCKETS],
                epoch: now,
                next_paced: now,
                paused_until: None,
                checks_waiting: 0,
            }),
        }
    }

    /// Calls a minute.
    pub(crate) fn per_min(&self) -> u32 {
        self.per_min
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a forward now if the budget allows one (see the module docs).
    ///
    /// # Errors
    /// Why it may not start: paused by a 429, or no room yet.
    pub(crate) fn try_forward(&self, now: Instant) -> Result<(), Held> {
        let mut s = self.lock();
        s.check_paused(now)?;
        if s.checks_waiting > 0 || s.next_paced > now + PACE_TOLERANCE || s.in_window(now) >= self.per_min {
            return Err(Held::Spent);
        }
        s.start(now, self.spacing);
        Ok(())
    }

    /// How many forwards could start now (none is started).
    pub(crate) fn forward_room(&self, now: Instant) -> usize {
        let mut s = self.lock();
        if s.check_paused(now).is_err() || s.checks_waiting > 0 {
            return 0;
        }
        let window = self.per_min.saturating_sub(s.in_window(now)) as usize;
        let ahead = (now + PACE_TOLERANCE).saturating_duration_since(s.next_paced);
        if s.next_paced > now + PACE_TOLERANCE {
            return 0;
        }
        let paced = (ahead.as_nanos() / self.spacing.as_nanos().max(1)) as usize + 1;
        window.min(paced)
    }

    /// Starts a token check as soon as the budget allows, waiting at most
    /// `wait`; forwards wait while it does.
    ///
    /// # Errors
    /// Why it could not start within `wait`.
    pub(crate) async fn check(&self, wait: Duration) -> Result<(), Held> {
        let deadline = Instant::now() + wait;
        self.lock().checks_waiting += 1;
        let result = loop {
            let now = Instant::now();
            let held = {
                let mut s = self.lock();
                match s.check_paused(now) {
                    Err(held) => held,
                    Ok(()) if s.in_window(now) < self.per_min => {
                        s.start(now, self.spacing);
                        break Ok(());
                    }
                    Ok(()) => Held::Spent,
                }
            };
            if now >= deadline {
                break Err(held);
            }
            tokio::time::sleep(CHECK_POLL.min(deadline - now)).await;
        };
        let mut s = self.lock();
        s.checks_waiting = s.checks_waiting.saturating_sub(1);
        result
    }

    /// The backend answered 429: nothing starts for `pause` (bounded).
    pub(crate) fn throttled(&self, pause: Duration, now: Instant) {
        let until = now + pause.min(MAX_PAUSE);
        let mut s = self.lock();
        s.paused_until = Some(s.paused_until.map_or(until, |u| u.max(until)));
    }

    /// How much longer a 429's pause lasts, if one does.
    pub(crate) fn paused_for(&self, now: Instant) -> Option<Duration> {
        let s = self.lock();
        s.paused_until.filter(|u| *u > now).map(|u| u - now)
    }
}

impl State {
    fn check_paused(&mut self, now: Instant) -> Result<(), Held> {
        match self.paused_until {
            Some(until) if now < until => Err(Held::Paused),
            Some(_) => {
                self.paused_until = None;
                Ok(())
            }
            None => Ok(()),
        }
    }

    fn second(&self, now: Instant) -> u64 {
        (now.saturating_duration_since(self.epoch).as_millis() / BUCKET.as_millis()) as u64
    }

    /// Calls started in the buckets that may hold a call less than a
    /// minute old.
    fn in_window(&self, now: Instant) -> u32 {
        let current = self.second(now);
        let oldest = current.saturating_sub(BUCKETS as u64 - 1);
        self.seconds.iter().zip(&self.counts).filter(|(s, _)| **s != u64::MAX && **s >= oldest).map(|(_, c)| c).sum()
    }

    fn start(&mut self, now: Instant, spacing: Duration) {
        let second = self.second(now);
        let i = (second % BUCKETS as u64) as usize;
        if self.seconds[i] != second {
            self.seconds[i] = second;
            self.counts[i] = 0;
        }
        self.counts[i] += 1;
        self.next_paced = self.next_paced.max(now) + spacing;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Forwards started when tried every 10 ms over `secs` from `t`.
    fn forwards_over(b: &Budget, t: Instant, secs: u64) -> Vec<Duration> {
        let mut started = Vec::new();
        let mut now = t;
        while now < t + Duration::from_secs(secs) {
            while b.try_forward(now).is_ok() {
                started.push(now - t);
            }
            now += Duration::from_millis(10);
        }
        started
    }

    #[test]
    fn forwards_are_paced_evenly_and_never_exceed_the_budget_in_any_minute() {
        let b = Budget::new(90);
        let t = Instant::now();
        let started = forwards_over(&b, t, 180);
        // One every 60/90 s: about 270 in three minutes, evenly.
        assert!((265..=272).contains(&started.len()), "{}", started.len());
        for w in started.windows(2) {
            assert!(w[1] - w[0] >= Duration::from_millis(600), "paced: {:?} then {:?}", w[0], w[1]);
        }
        for (i, at) in started.iter().enumerate() {
            let in_minute = started[i..].iter().take_while(|s| **s < *at + WINDOW).count();
            assert!(in_minute <= 90, "{in_minute} calls in the minute from {at:?}");
        }
    }

    #[test]
    fn the_room_it_reports_is_what_it_then_lets_start() {
        let b = Budget::new(600);
        let t = Instant::now();
        let room = b.forward_room(t);
        assert!(room >= 1);
        for _ in 0..room {
            assert_eq!(b.try_forward(t), Ok(()));
        }
        assert_eq!(b.try_forward(t), Err(Held::Spent));
        assert_eq!(b.forward_room(t), 0);
    }

    #[test]
    fn a_large_budget_is_used_whole_at_ten_ms_rounds() {
        let b = Budget::new(60_000);
        let started = forwards_over(&b, Instant::now(), 5);
        assert!(started.len() >= 4_900, "1000/s for 5 s: {}", started.len());
    }

    #[tokio::test]
    async fn token_checks_are_capped_by_the_window_and_go_before_forwards() {
        let b = Budget::new(10);
        for _ in 0..10 {
            b.check(Duration::ZERO).await.expect("room for ten");
        }
        assert_eq!(b.check(Duration::ZERO).await, Err(Held::Spent), "the eleventh in the same minute waits");
        assert_eq!(b.try_forward(Instant::now()), Err(Held::Spent));
        // A minute later the window has room again, and the pace was spent by the checks.
        let later = Instant::now() + Duration::from_secs(62);
        assert_eq!(b.lock().in_window(later), 0);
    }

    #[test]
    fn a_waiting_check_holds_forwards_back() {
        let b = Budget::new(6_000);
        b.lock().checks_waiting = 1;
        assert_eq!(b.try_forward(Instant::now()), Err(Held::Spent));
        b.lock().checks_waiting = 0;
        assert_eq!(b.try_forward(Instant::now()), Ok(()));
    }

    #[tokio::test]
    async fn a_429_pauses_every_call_until_its_time() {
        let b = Budget::new(6_000);
        let t = Instant::now();
        b.throttled(Duration::from_secs(33), t);
        assert_eq!(b.try_forward(t + Duration::from_secs(32)), Err(Held::Paused));
        assert_eq!(b.check(Duration::ZERO).await, Err(Held::Paused));
        assert!(b.paused_for(t).is_some_and(|d| d == Duration::from_secs(33)));
        assert_eq!(b.try_forward(t + Duration::from_secs(33)), Ok(()));
        b.throttled(Duration::from_secs(86_400), t);
        assert_eq!(b.paused_for(t), Some(MAX_PAUSE), "a bogus header is bounded");
    }
}
