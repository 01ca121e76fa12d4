//! Per-driver rate limit: a token bucket whose burst lets a full 1000-item
//! batch through after an outage (each item costs one token).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use wecare_proto::{DriverId, event::MAX_BATCH};

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
}

/// Token buckets keyed by driver. The map holds one small entry per driver
/// that sent anything; idle buckets are dropped once they are full again.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    per_sec: f64,
    burst: f64,
    buckets: Mutex<HashMap<DriverId, Bucket>>,
}

impl RateLimiter {
    /// `per_sec` sustained; the burst is `MAX_BATCH + per_sec`.
    pub(crate) fn new(per_sec: u32) -> Self {
        let per_sec = f64::from(per_sec.max(1));
        Self { per_sec, burst: MAX_BATCH as f64 + per_sec, buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes up to `n` tokens and returns how many were granted.
    pub(crate) fn take(&self, driver: &DriverId, n: usize, now: Instant) -> usize {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() > 10_000 {
            let (per_sec, burst) = (self.per_sec, self.burst);
            buckets.retain(|_, b| b.tokens + now.duration_since(b.refilled).as_secs_f64() * per_sec < burst);
        }
        let bucket = buckets.entry(driver.clone()).or_insert(Bucket { tokens: self.burst, refilled: now });
        let elapsed = now.saturating_duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.per_sec).min(self.burst);
        bucket.refilled = now;
        let granted = (bucket.tokens.floor() as usize).min(n);
        bucket.tokens -= granted as f64;
        granted
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
}
