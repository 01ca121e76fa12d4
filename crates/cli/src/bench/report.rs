//! The load run's results: computed once from the drivers' and watchers'
//! records, printed as text or as one JSON object.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{Value, json};

use super::driver::DriverStats;
use super::load::histogram;
use super::process::ProcessSample;
use super::update_id;
use super::watcher::WatcherStats;
use super::{LoadConfig, Pace, ms};

/// A process measured at the start and the end of the window.
#[derive(Debug, Clone, Copy)]
pub(super) struct ProcessDelta {
    pub(super) before: ProcessSample,
    pub(super) after: ProcessSample,
}

impl ProcessDelta {
    fn cpu(&self) -> Duration {
        self.after.cpu.saturating_sub(self.before.cpu)
    }
}

/// p50, p99 and max of a latency histogram, µs.
#[derive(Debug, Clone, Copy, Default)]
struct Percentiles {
    count: u64,
    p50: u64,
    p99: u64,
    max: u64,
}

impl From<&Histogram<u64>> for Percentiles {
    fn from(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self { count: h.len(), p50: h.value_at_quantile(0.50), p99: h.value_at_quantile(0.99), max: h.max() }
    }
}

impl Percentiles {
    fn to_json(self) -> Value {
        json!({ "count": self.count, "p50_us": self.p50, "p99_us": self.p99, "max_us": self.max })
    }

    fn to_text(self) -> String {
        if self.count == 0 {
            return "n/a".into();
        }
        format!("p50 {}  p99 {}  max {}", ms(self.p50), ms(self.p99), ms(self.max))
    }
}

/// Everything the bench reports about a load run.
#[derive(Debug)]
pub(super) struct LoadReport {
    window_secs: f64,
    sent: u64,
    stored: u64,
    duplicates: u64,
    rejected: BTreeMap<String, u64>,
    timeouts: u64,
    closed: u64,
    other_errors: u64,
    skipped: u64,
    lost_drivers: u64,
    ack: Percentiles,
    deliveries: u64,
    end_to_end: Percentiles,
    /// Share of stored updates that reached every watcher, %.
    delivered_to_all: Option<f64>,
    missing_deliveries: u64,
    duplicate_deliveries: u64,
    order_violations: u64,
    malformed: u64,
    watcher_disconnects: Vec<String>,
    server: Option<ProcessDelta>,
    bench: Option<ProcessDelta>,
    /// Requests the forwarding sink answered in the window.
    forwards: Option<u64>,
    /// The server's CPU time in the window per thread name.
    server_threads: Option<BTreeMap<String, Duration>>,
}

impl LoadReport {
    /// Folds the per-task records into totals (sorts each watcher's records).
    pub(super) fn compute(
        config: &LoadConfig,
        drivers: &[DriverStats],
        watchers: &mut [WatcherStats],
        server: Option<ProcessDelta>,
        bench: Option<ProcessDelta>,
        forwards: Option<u64>,
    ) -> Self {
        let mut ack = histogram();
        let mut rejected = BTreeMap::new();
        for d in drivers {
            // Same bounds everywhere, so adding cannot fail.
            let _ = ack.add(&d.ack_latency);
            for (code, count) in &d.rejected {
                *rejected.entry(code.clone()).or_default() += count;
            }
        }
        let mut end_to_end = histogram();
        let mut duplicate_deliveries = 0;
        for w in watchers.iter_mut() {
            let _ = end_to_end.add(&w.end_to_end);
            w.received.sort_unstable();
            let before = w.received.len();
            w.received.dedup();
            duplicate_deliveries += (before - w.received.len()) as u64;
        }
        let stored: u64 = drivers.iter().map(|d| d.stored.len() as u64).sum();
        let watcher_count = watchers.len() as u64;
        let mut reached_all = 0u64;
        let mut missing_deliveries = 0u64;
        for d in drivers {
            for &n in &d.stored {
                let key = update_id::key(d.index, n);
                let reached = watchers.iter().filter(|w| w.received.binary_search(&key).is_ok()).count() as u64;
                if reached == watcher_count {
                    reached_all += 1;
                }
                missing_deliveries += watcher_count - reached;
            }
        }
        let delivered_to_all = (stored > 0 && watcher_count > 0).then(|| reached_all as f64 * 100.0 / stored as f64);
        Self {
            window_secs: config.duration.as_secs_f64(),
            sent: drivers.iter().map(|d| d.sent).sum(),
            stored,
            duplicates: drivers.iter().map(|d| d.duplicates).sum(),
            rejected,
            timeouts: drivers.iter().map(|d| d.timeouts).sum(),
            closed: drivers.iter().map(|d| d.closed).sum(),
            other_errors: drivers.iter().map(|d| d.other_errors).sum(),
            skipped: drivers.iter().map(|d| d.skipped).sum(),
            lost_drivers: drivers.iter().filter(|d| d.lost_connection).count() as u64,
            ack: Percentiles::from(&ack),
            deliveries: watchers.iter().map(|w| w.received.len() as u64).sum(),
            end_to_end: Percentiles::from(&end_to_end),
            delivered_to_all,
            missing_deliveries,
            duplicate_deliveries,
            order_violations: watchers.iter().map(|w| w.order_violations).sum(),
            malformed: watchers.iter().map(|w| w.malformed).sum(),
            watcher_disconnects: watchers.iter().filter_map(|w| w.disconnected.clone()).collect(),
            server,
            bench,
            forwards,
            server_threads: None,
        }
    }

    /// Adds the server's CPU time per thread name.
    pub(super) fn with_server_threads(mut self, threads: Option<BTreeMap<String, Duration>>) -> Self {
        self.server_threads = threads;
        self
    }

    /// The server's threads by CPU use, busiest first, % of one core (those
    /// under 0.05% left out).
    fn thread_percents(&self) -> Vec<(&str, f64)> {
        let Some(threads) = &self.server_threads else { return Vec::new() };
        let mut out: Vec<(&str, f64)> = threads
            .iter()
            .map(|(name, cpu)| (name.as_str(), cpu.as_secs_f64() * 100.0 / self.window_secs.max(1e-9)))
            .filter(|(_, pct)| *pct >= 0.05)
            .collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1));
        out
    }

    fn per_sec(&self, count: u64) -> f64 {
        count as f64 / self.window_secs.max(1e-9)
    }

    /// Server CPU time per stored update, ms.
    fn cpu_ms_per_update(&self) -> Option<f64> {
        let server = self.server?;
        (self.stored > 0).then(|| server.cpu().as_secs_f64() * 1e3 / self.stored as f64)
    }

    /// Server CPU time per delivery, µs.
    fn cpu_us_per_delivery(&self) -> Option<f64> {
        let server = self.server?;
        (self.deliveries > 0).then(|| server.cpu().as_secs_f64() * 1e6 / self.deliveries as f64)
    }

    /// CPU use of a process over the window, % of one core.
    fn core_percent(&self, delta: Option<ProcessDelta>) -> Option<f64> {
        delta.map(|d| d.cpu().as_secs_f64() * 100.0 / self.window_secs.max(1e-9))
    }

    pub(super) fn to_json(&self) -> Value {
        let rss = |d: Option<ProcessDelta>| {
            d.map(|d| json!({ "before_kib": d.before.rss_kib, "after_kib": d.after.rss_kib }))
        };
        json!({
            "window_secs": self.window_secs,
            "updates": {
                "sent": self.sent,
                "acked": self.stored,
                "acked_per_sec": self.per_sec(self.stored),
                "duplicates": self.duplicates,
                "rejected": self.rejected,
                "timeouts": self.timeouts,
                "closed": self.closed,
                "other_errors": self.other_errors,
                "skipped_ticks": self.skipped,
                "lost_driver_connections": self.lost_drivers,
            },
            "ack_latency": self.ack.to_json(),
            "forwards": self.forwards.map(|n| json!({ "count": n, "per_sec": self.per_sec(n) })),
            "deliveries": {
                "count": self.deliveries,
                "per_sec": self.per_sec(self.deliveries),
                "delivered_to_all_watchers_pct": self.delivered_to_all,
                "missing": self.missing_deliveries,
                "duplicates": self.duplicate_deliveries,
                "order_violations": self.order_violations,
                "malformed": self.malformed,
                "watcher_disconnects": self.watcher_disconnects,
            },
            "end_to_end_latency": self.end_to_end.to_json(),
            "server": self.server.map(|_| json!({
                "cpu_core_pct": self.core_percent(self.server),
                "cpu_ms_per_acked_update": self.cpu_ms_per_update(),
                "cpu_us_per_delivery": self.cpu_us_per_delivery(),
                "rss": rss(self.server),
                "threads_core_pct": self.thread_percents().into_iter().collect::<BTreeMap<_, _>>(),
            })),
            "bench": self.bench.map(|_| json!({
                "cpu_core_pct": self.core_percent(self.bench),
                "rss": rss(self.bench),
            })),
        })
    }

    pub(super) fn print_text(&self, config: &LoadConfig) {
        let pace = match config.pace {
            Pace::Rate(rate) => format!("{rate} Hz each"),
            Pace::Max { in_flight } => format!("max rate, {in_flight} in flight each"),
        };
        println!(
            "bench {}: {} drivers ({pace}), {} watchers; {:.0} s measured after {} s warmup",
            config.target.url,
            config.drivers,
            config.watchers,
            self.window_secs,
            config.warmup.as_secs(),
        );
        println!(
            "acked updates     {:>10.1} /s   ({} of {} sent; {} duplicates)",
            self.per_sec(self.stored),
            self.stored,
            self.sent,
            self.duplicates,
        );
        println!("ack latency       {}", self.ack.to_text());
        if let Some(n) = self.forwards {
            println!("forwarded (sink)  {:>10.1} /s   ({n} requests)", self.per_sec(n));
        }
        let rejected = if self.rejected.is_empty() {
            "none".to_owned()
        } else {
            self.rejected.iter().map(|(code, n)| format!("{code} {n}")).collect::<Vec<_>>().join(", ")
        };
        println!(
            "errors            {} timeouts, {} closed, {} other; rejected: {rejected}",
            self.timeouts, self.closed, self.other_errors,
        );
        if self.rejected.contains_key("RATE_LIMITED") {
            println!("                  (RATE_LIMITED: the server's RATE_LIMIT_PER_SEC caps each driver)");
        }
        if self.skipped > 0 || self.lost_drivers > 0 {
            println!(
                "                  {} ticks skipped (1000 acks outstanding), {} driver sockets lost",
                self.skipped, self.lost_drivers,
            );
        }
        println!(
            "deliveries        {:>10.1} /s   ({} events to {} watchers)",
            self.per_sec(self.deliveries),
            self.deliveries,
            config.watchers,
        );
        println!("end-to-end        {}", self.end_to_end.to_text());
        match self.delivered_to_all {
            Some(pct) => println!(
                "to every watcher  {pct:>10.3} %   ({} missing, {} duplicate, {} out of order)",
                self.missing_deliveries, self.duplicate_deliveries, self.order_violations,
            ),
            None => println!("to every watcher  n/a"),
        }
        if !self.watcher_disconnects.is_empty() {
            let mut reasons = BTreeMap::<&str, usize>::new();
            for reason in &self.watcher_disconnects {
                *reasons.entry(reason).or_default() += 1;
            }
            let reasons: Vec<String> = reasons.into_iter().map(|(reason, n)| format!("{n}× {reason}")).collect();
            println!("                  watchers disconnected: {}", reasons.join(", "));
        }
        if let Some(server) = self.server {
            let opt = |v: Option<f64>, unit: &str| v.map_or("n/a".into(), |v| format!("{v:.3} {unit}"));
            println!(
                "server cpu        {:.1} % of a core; {} per acked update; {} per delivery",
                self.core_percent(Some(server)).unwrap_or_default(),
                opt(self.cpu_ms_per_update(), "ms"),
                opt(self.cpu_us_per_delivery(), "µs"),
            );
            let threads = self.thread_percents();
            if !threads.is_empty() {
                let threads: Vec<String> = threads.iter().map(|(name, pct)| format!("{name} {pct:.1}%")).collect();
                println!("  by thread       {}", threads.join(", "));
            }
            println!("server rss        {} (window start {})", mib(server.after.rss_kib), mib(server.before.rss_kib),);
        }
        if let Some(bench) = self.bench {
            println!(
                "bench itself      {:.1} % of a core, rss {}",
                self.core_percent(Some(bench)).unwrap_or_default(),
                mib(bench.after.rss_kib),
            );
        }
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}
