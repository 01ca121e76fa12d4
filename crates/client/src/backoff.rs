//! Retry delays: exponential growth, full jitter, a cap, and no last attempt
//! (the SDK never gives up on delivering what the outbox holds).

use std::time::Duration;

/// How long to wait before retry `n`: a random duration in
/// `0 ..= min(cap, base × 2ⁿ)` ("full jitter", which spreads a fleet of
/// clients that lost the server at the same moment over the whole window).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffConfig {
    /// The window of the first retry. Defaults to 1 s.
    pub base: Duration,
    /// The largest window. Defaults to 30 s.
    pub cap: Duration,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self { base: Duration::from_secs(1), cap: Duration::from_secs(30) }
    }
}

impl BackoffConfig {
    /// The jitter window of retry `attempt` (0-based): `min(cap, base × 2^attempt)`.
    pub fn window(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.base.checked_mul(factor).map_or(self.cap, |w| w.min(self.cap))
    }

    /// The delay of retry `attempt` for a uniform random `unit` in `0.0..=1.0`.
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        self.window(attempt).mul_f64(unit.clamp(0.0, 1.0))
    }
}

/// A retry schedule in progress: call [`next_delay`](Self::next_delay) after
/// each failure and [`reset`](Self::reset) after a success.
#[derive(Debug, Clone)]
pub struct Backoff {
    config: BackoffConfig,
    attempt: u32,
    rng: Rng,
}

impl Backoff {
    /// A schedule seeded from the OS random source.
    pub fn new(config: BackoffConfig) -> Self {
        Self { config, attempt: 0, rng: Rng::from_os() }
    }

    /// The delay before the next retry; each call widens the window up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.config.delay(self.attempt, self.rng.unit());
        self.attempt = self.attempt.saturating_add(1);
        delay
    }

    /// How many failures in a row this schedule has seen.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Starts over at the smallest window.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// xorshift64*: fast, not cryptographic; good enough for jitter and for
/// message ids whose uniqueness is all that matters (128 bits of it, seeded
/// from the OS).
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn from_os() -> Self {
        let mut seed = [0u8; 8];
        // A failing OS source is practically impossible; the time-based
        // fallback still gives distinct seeds per process.
        if getrandom::fill(&mut seed).is_err() {
            let nanos =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
            seed = (nanos ^ u64::from(std::process::id())).to_le_bytes();
        }
        Self::seeded(u64::from_le_bytes(seed))
    }

    pub(crate) fn seeded(seed: u64) -> Self {
        // The state must never be zero.
        Self(seed | 1)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0.0..1.0`.
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A fresh 128-bit random id in lowercase hex (32 characters).
pub(crate) fn random_id() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        let mut rng = Rng::from_os();
        bytes[..8].copy_from_slice(&rng.next_u64().to_le_bytes());
        bytes[8..].copy_from_slice(&rng.next_u64().to_le_bytes());
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> BackoffConfig {
        BackoffConfig { base: Duration::from_millis(100), cap: Duration::from_secs(3) }
    }

    #[test]
    fn window_doubles_up_to_the_cap() {
        let c = config();
        let windows: Vec<u64> = (0..8).map(|n| c.window(n).as_millis() as u64).collect();
        assert_eq!(windows, vec![100, 200, 400, 800, 1600, 3000, 3000, 3000]);
    }

    #[test]
    fn huge_attempt_counts_stay_at_the_cap() {
        let c = config();
        assert_eq!(c.window(31), c.cap);
        assert_eq!(c.window(u32::MAX), c.cap);
        let big = BackoffConfig { base: Duration::from_secs(u64::MAX / 2), cap: Duration::from_secs(5) };
        assert_eq!(big.window(40), Duration::from_secs(5));
    }

    #[test]
    fn full_jitter_spans_zero_to_window() {
        let c = config();
        assert_eq!(c.delay(3, 0.0), Duration::ZERO);
        assert_eq!(c.delay(3, 1.0), Duration::from_millis(800));
        assert_eq!(c.delay(3, 0.5), Duration::from_millis(400));
        assert_eq!(c.delay(3, 7.0), Duration::from_millis(800), "unit is clamped");
    }

    #[test]
    fn schedule_never_gives_up_and_resets() {
        let mut b = Backoff::new(config());
        for _ in 0..1000 {
            assert!(b.next_delay() <= config().cap);
        }
        assert_eq!(b.attempt(), 1000);
        b.reset();
        assert_eq!(b.attempt(), 0);
        assert!(b.next_delay() <= Duration::from_millis(100));
    }

    #[test]
    fn jitter_is_spread_over_the_window() {
        let mut rng = Rng::seeded(42);
        let samples: Vec<f64> = (0..10_000).map(|_| rng.unit()).collect();
        assert!(samples.iter().all(|u| (0.0..1.0).contains(u)));
        let mean = samples.iter().sum::<f64>() / samples.len() as f64;
        assert!((0.45..0.55).contains(&mean), "mean {mean}");
        assert!(samples.iter().any(|u| *u < 0.05) && samples.iter().any(|u| *u > 0.95));
    }

    #[test]
    fn random_ids_are_128_bit_hex_and_distinct() {
        let a = random_id();
        let b = random_id();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[tokio::test(start_paused = true)]
    async fn sleeping_the_schedule_takes_at_most_the_sum_of_windows() {
        let mut b = Backoff::new(config());
        let start = tokio::time::Instant::now();
        for _ in 0..6 {
            tokio::time::sleep(b.next_delay()).await;
        }
        assert!(start.elapsed() <= Duration::from_millis(100 + 200 + 400 + 800 + 1600 + 3000));
    }
}
