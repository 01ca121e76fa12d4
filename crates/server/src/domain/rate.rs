//! Token buckets: the per-driver fix limit (its burst lets a full
//! 1000-item batch through after an outage, each item costing one token),
//! and the same shape for any other key (a user's reads, a socket's events).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Instant;

use wecare_proto::{DriverId, event::MAX_BATCH};

/// One bucket: `per_sec` tokens a second, at most `burst` saved up.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    per_sec: f64,
    burst: f64,
    tokens: f64,
    refilled: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub(crate) fn new(per_sec: f64, burst: f64, now: Instant) -> Self {
        Self { per_sec, burst, tokens: burst, refilled: now }
    }

    /// Takes up to `n` tokens and returns how many were granted.
    pub(crate) fn take(&mut self, n: usize, now: Instant) -> usize {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.burst);
        self.refilled = now;
        let granted = (self.tokens.floor() as usize).min(n);
        self.tokens -= granted as f64;
        granted
    }

    /// Takes `n` tokens only if all `n` are there.
    ///
    /// # Errors
    /// Fewer than `n` tokens (none taken).
    pub(crate) fn take_all(&mut self, n: usize, now: Instant) -> Result<(), ()> {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.burst);
        self.refilled = now;
        if self.tokens < n as f64 {
            return Err(());
        }
        self.tokens -= n as f64;
        Ok(())
    }

    /// Seconds until one token is back (0 when one is there).
    pub(crate) fn wait_secs(&self, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        let tokens = (self.tokens + elapsed * self.per_sec).min(self.burst);
        if tokens >= 1.0 { 0.0 } else { (1.0 - tokens) / self.per_sec }
    }

    fn is_full(&self, now: Instant) -> bool {
        self.tokens + now.saturating_duration_since(self.refilled).as_secs_f64() * self.per_sec >= self.burst
    }
}

/// Token buckets by key. The map holds one small entry per key that took
/// anything; idle buckets are dropped once they are full again.
#[derive(Debug)]
pub(crate) struct Buckets<K> {
    per_sec: f64,
    burst: f64,
    buckets: Mutex<HashMap<K, TokenBucket>>,
}

impl<K: Hash + Eq + Clone> Buckets<K> {
    pub(crate) fn new(per_sec: f64, burst: f64) -> Self {
        Self { per_sec, burst, buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes up to `n` tokens of `key` and returns how many were granted.
    pub(crate) fn take(&self, key: &K, n: usize, now: Instant) -> usize {
        self.with(key, now, |b| b.take(n, now))
    }

    /// Takes `n` tokens of `key` only if all are there, or says how many
    /// seconds until one is back.
    pub(crate) fn take_all(&self, key: &K, n: usize, now: Instant) -> Result<(), f64> {
        self.with(key, now, |b| b.take_all(n, now).map_err(|()| b.wait_secs(now)))
    }

    fn with<T>(&self, key: &K, now: Instant, f: impl FnOnce(&mut TokenBucket) -> T) -> T {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() > 10_000 {
            buckets.retain(|_, b| !b.is_full(now));
        }
        // A known key is looked up, not cloned: this runs for every fix.
        if let Some(bucket) = buckets.get_mut(key) {
            return f(bucket);
        }
        f(buckets.entry(key.clone()).or_insert_with(|| TokenBucket::new(self.per_sec, self.burst, now)))
    }
}

/// The per-driver fix limit (`RATE_LIMIT_PER_SEC`).
#[derive(Debug)]
pub(crate) struct RateLimiter(Buckets<DriverId>);

impl RateLimiter {
    /// `per_sec` sustained; the burst is `MAX_BATCH + per_sec`.
    pub(crate) fn new(per_sec: u32) -> Self {
        let per_sec = f64::from(per_sec.max(1));
        Self(Buckets::new(per_sec, MAX_BATCH as f64 + per_sec))
    }

    /// Takes up to `n` tokens and returns how many were granted.
    pub(crate) fn take(&self, driver: &DriverId, n: usize, now: Instant) -> usize {
        self.0.take(driver, n, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn full_batch_passes_then_rate_applies() {
        let limiter = RateLimiter::new(20);
        let d = DriverId::new("d");
        let t0 = Instant::now();
        assert_eq!(limiter.take(&d, 1000, t0), 1000);
        assert_eq!(limiter.take(&d, 100, t0), 20);
        assert_eq!(limiter.take(&d, 100, t0), 0);
        assert_eq!(limiter.take(&d, 100, t0 + Duration::from_millis(500)), 10);
    }

    #[test]
    fn drivers_have_separate_buckets() {
        let limiter = RateLimiter::new(1);
        let t0 = Instant::now();
        assert_eq!(limiter.take(&DriverId::new("a"), 2000, t0), 1001);
        assert_eq!(limiter.take(&DriverId::new("b"), 5, t0), 5);
    }

    #[test]
    fn a_bucket_says_how_long_until_the_next_token() {
        let t0 = Instant::now();
        let b = Buckets::new(2.0, 2.0);
        assert_eq!(b.take_all(&"u", 1, t0), Ok(()));
        assert_eq!(b.take_all(&"u", 1, t0), Ok(()));
        assert_eq!(b.take_all(&"u", 1, t0), Err(0.5));
        assert_eq!(b.take_all(&"u", 1, t0 + Duration::from_millis(500)), Ok(()));
        assert_eq!(b.take_all(&"v", 1, t0), Ok(()), "another key has its own");
        assert_eq!(b.take_all(&"v", 2, t0), Err(0.0), "all or none: one is left, two are asked");
        assert_eq!(b.take_all(&"v", 1, t0), Ok(()), "the one left was not taken");
    }
}
