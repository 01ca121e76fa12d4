//! Prometheus metrics, kept in atomics owned by the server instance (no
//! global recorder, so several servers in one test process stay apart) and
//! rendered in the text exposition format by `GET /metrics`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use wecare_proto::ErrorCode;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

/// A latency histogram with fixed buckets.
#[derive(Debug, Default)]
pub(crate) struct Histogram {
    counts: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    pub(crate) fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.counts[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_micros.fetch_add(d.as_micros() as u64, Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, c) in BUCKETS.iter().zip(&self.counts) {
            cumulative += c.load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {}", self.sum_micros.load(Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count {count}");
    }
}

/// Every metric the server exports.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub(crate) connections_drivers: AtomicI64,
    pub(crate) connections_watchers: AtomicI64,
    pub(crate) handshake_refusals: AtomicU64,
    /// Events committed to the stream.
    pub(crate) events_in: AtomicU64,
    /// Client events handed to storage (valid, within the rate): with
    /// `events_in` and `commits`, "clients send but nothing commits".
    pub(crate) events_submitted: AtomicU64,
    /// Event frames handed to watcher sockets (live and replay).
    pub(crate) events_out: AtomicU64,
    pub(crate) acks_ok: AtomicU64,
    pub(crate) dedup_hits: AtomicU64,
    pub(crate) rejections: [AtomicU64; ErrorCode::ALL.len()],
    /// Watchers moved off the live fan-out because their send buffer was full.
    pub(crate) watchers_behind: AtomicU64,
    pub(crate) commits: AtomicU64,
    /// Receipt of an event to its ack being sent.
    pub(crate) ack_latency: Histogram,
    /// Commit of a batch to its frames being handed to every live watcher.
    pub(crate) fanout_latency: Histogram,
    /// Positions the backend accepted (2xx).
    pub(crate) forwarded: AtomicU64,
    /// Positions the backend refused for good (a 4xx other than 401/403).
    pub(crate) forward_skipped: AtomicU64,
    /// Failed forwards by HTTP status or `timeout`/`unreachable`.
    pub(crate) forward_errors: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
    /// How long the oldest position owed to the backend has waited, ms.
    pub(crate) forward_lag_ms: AtomicU64,
    /// Token checks with the backend (`AUTH_CHECK_URL`) by result.
    pub(crate) auth_checks: [AtomicU64; AUTH_CHECK_RESULTS.len()],
    /// `BACKEND_MAX_CALLS_PER_MIN`.
    pub(crate) backend_budget_per_min: AtomicU64,
    /// 1 while the backend budget has held owed positions back for longer
    /// than the forwarding interval (the budget is too small for the work).
    pub(crate) backend_budget_short: AtomicU64,
    /// How much longer a 429's pause of every backend call lasts, ms.
    pub(crate) backend_paused_ms: AtomicU64,
    /// Open TCP connections (HTTP, long-polling and websockets).
    pub(crate) http_connections: AtomicI64,
    /// Connections answered 503 over `MAX_CONNECTIONS`.
    pub(crate) conn_refused: AtomicU64,
    /// Connections closed because a request head (or a keep-alive idle gap)
    /// took longer than `HEADER_READ_TIMEOUT_MS`.
    pub(crate) header_timeouts: AtomicU64,
    /// Connections closed because their peer stopped reading.
    pub(crate) conn_stalled: AtomicU64,
    /// Connections the server ended (eviction, expiry, revocation, abuse).
    pub(crate) conn_killed: AtomicU64,
    /// Answers that could not be written: the socket's send queue was full.
    pub(crate) replies_dropped: AtomicU64,
    /// Sockets closed for flooding past their bounds.
    pub(crate) abusive_sockets: AtomicU64,
}

/// What a scrape reads from the node itself rather than from counters.
#[derive(Debug, Default)]
pub(crate) struct NodeFacts {
    /// Stored rows the store could not read back (they were skipped).
    pub(crate) damaged_rows: u64,
    /// What `GET /readyz` answers now.
    pub(crate) ready: bool,
    /// Free and total bytes of the file system of the data folder.
    pub(crate) data_dir_space: Option<(u64, u64)>,
    /// Engine.IO sessions open that have not joined yet.
    pub(crate) pending_sessions: usize,
    /// Handshakes refused because `MAX_PENDING_SESSIONS` were pending.
    pub(crate) busy_handshakes: u64,
}

/// Free and total bytes of the file system holding `dir`.
pub(crate) fn disk_space(dir: &std::path::Path) -> Option<(u64, u64)> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
        // SAFETY: `path` is a valid C string; `st` is written by the call.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
            return None;
        }
        let unit = st.f_frsize as u64;
        Some((st.f_bavail as u64 * unit, st.f_blocks as u64 * unit))
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        None
    }
}

/// The results of a token check with the backend, as the metric labels
/// them: `deferred_*` when the backend budget (or a 429's pause) left no
/// room for the call in time, judged like an unreachable backend.
pub(crate) const AUTH_CHECK_RESULTS: [&str; 6] =
    ["ok", "revoked", "unreachable_open", "unreachable_closed", "deferred_open", "deferred_closed"];

fn code_index(code: ErrorCode) -> usize {
    ErrorCode::ALL.iter().position(|c| *c == code).unwrap_or(ErrorCode::ALL.len() - 1)
}

impl Metrics {
    pub(crate) fn rejected(&self, code: ErrorCode) {
        self.rejections[code_index(code)].fetch_add(1, Relaxed);
    }

    /// Counts a failed forward under `status` (an HTTP status or a cause).
    pub(crate) fn forward_error(&self, status: &str) {
        let mut errors = self.forward_errors.lock().unwrap_or_else(|e| e.into_inner());
        *errors.entry(status.to_string()).or_default() += 1;
    }

    /// Counts a token check with the backend; `result` is one of [`AUTH_CHECK_RESULTS`].
    pub(crate) fn auth_checked(&self, result: &str) {
        if let Some(i) = AUTH_CHECK_RESULTS.iter().position(|r| *r == result) {
            self.auth_checks[i].fetch_add(1, Relaxed);
        }
    }

    /// The Prometheus text exposition, with what only the node knows at
    /// the time of the scrape.
    pub(crate) fn render(&self, node: &NodeFacts) -> String {
        let damaged_rows = node.damaged_rows;
        let mut out = String::with_capacity(4096);
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        let _ = writeln!(
            out,
            "# HELP wecare_connections Open /locations sockets by role kind.\n# TYPE wecare_connections gauge"
        );
        let _ = writeln!(out, "wecare_connections{{kind=\"driver\"}} {}", self.connections_drivers.load(Relaxed));
        let _ = writeln!(out, "wecare_connections{{kind=\"watcher\"}} {}", self.connections_watchers.load(Relaxed));
        counter(
            &mut out,
            "wecare_handshake_refusals_total",
            "Handshakes refused.",
            self.handshake_refusals.load(Relaxed),
        );
        counter(&mut out, "wecare_events_in_total", "Events committed to the stream.", self.events_in.load(Relaxed));
        counter(
            &mut out,
            "wecare_events_submitted_total",
            "Client events handed to storage (valid, within the rate limit).",
            self.events_submitted.load(Relaxed),
        );
        counter(&mut out, "wecare_events_out_total", "Event frames sent to watchers.", self.events_out.load(Relaxed));
        counter(
            &mut out,
            "wecare_acks_ok_total",
            "Successful acks (including duplicates).",
            self.acks_ok.load(Relaxed),
        );
        counter(
            &mut out,
            "wecare_dedup_hits_total",
            "Messages recognised as already stored.",
            self.dedup_hits.load(Relaxed),
        );
        counter(&mut out, "wecare_commits_total", "Storage commits (group commits).", self.commits.load(Relaxed));
        counter(
            &mut out,
            "wecare_watchers_behind_total",
            "Watchers whose send buffer filled; they were switched to paced catch-up.",
            self.watchers_behind.load(Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP wecare_rejections_total Refused events by code.\n# TYPE wecare_rejections_total counter"
        );
        for (code, c) in ErrorCode::ALL.iter().zip(&self.rejections) {
            let _ = writeln!(out, "wecare_rejections_total{{code=\"{code}\"}} {}", c.load(Relaxed));
        }
        counter(
            &mut out,
            "wecare_storage_damaged_rows_total",
            "Stored rows that could not be read back; skipped, never turned into events.",
            damaged_rows,
        );
        counter(
            &mut out,
            "wecare_forward_forwarded_total",
            "Positions the backend accepted.",
            self.forwarded.load(Relaxed),
        );
        counter(
            &mut out,
            "wecare_forward_skipped_total",
            "Positions the backend refused for good (4xx other than 401/403).",
            self.forward_skipped.load(Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP wecare_forward_errors_total Failed forwards by status.\n# TYPE wecare_forward_errors_total counter"
        );
        for (status, n) in self.forward_errors.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(out, "wecare_forward_errors_total{{status=\"{status}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP wecare_forward_lag_seconds How long the oldest position owed to the backend has waited.\n# TYPE wecare_forward_lag_seconds gauge\nwecare_forward_lag_seconds {}",
            self.forward_lag_ms.load(Relaxed) as f64 / 1000.0
        );
        let _ = writeln!(
            out,
            "# HELP wecare_auth_checks_total Token checks with the backend by result.\n# TYPE wecare_auth_checks_total counter"
        );
        for (result, c) in AUTH_CHECK_RESULTS.iter().zip(&self.auth_checks) {
            let _ = writeln!(out, "wecare_auth_checks_total{{result=\"{result}\"}} {}", c.load(Relaxed));
        }
        let gauge = |out: &mut String, name: &str, help: &str, v: f64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        gauge(
            &mut out,
            "wecare_backend_budget_calls_per_minute",
            "Most calls a minute this node makes to the WeCare backend (BACKEND_MAX_CALLS_PER_MIN).",
            self.backend_budget_per_min.load(Relaxed) as f64,
        );
        gauge(
            &mut out,
            "wecare_backend_budget_short",
            "1 while the backend budget holds owed positions back longer than FORWARD_MIN_INTERVAL_MS.",
            self.backend_budget_short.load(Relaxed) as f64,
        );
        gauge(
            &mut out,
            "wecare_backend_paused_seconds",
            "How much longer the backend's 429 keeps every call to it waiting.",
            self.backend_paused_ms.load(Relaxed) as f64 / 1000.0,
        );
        gauge(
            &mut out,
            "wecare_ready",
            "1 while this node takes events (GET /readyz is 200), else 0.",
            if node.ready { 1.0 } else { 0.0 },
        );
        if let Some((free, total)) = node.data_dir_space {
            gauge(
                &mut out,
                "wecare_data_dir_free_bytes",
                "Bytes free for the server on the data folder's file system.",
                free as f64,
            );
            gauge(&mut out, "wecare_data_dir_size_bytes", "Size of the data folder's file system.", total as f64);
        }
        gauge(
            &mut out,
            "wecare_sessions_pending",
            "Socket.io sessions open that have not joined /locations yet (at most MAX_PENDING_SESSIONS).",
            node.pending_sessions as f64,
        );
        counter(
            &mut out,
            "wecare_handshakes_busy_total",
            "Socket.io handshakes answered 503 because MAX_PENDING_SESSIONS sessions had not joined yet.",
            node.busy_handshakes,
        );
        gauge(
            &mut out,
            "wecare_http_connections",
            "Open TCP connections (HTTP, long-polling and websockets).",
            self.http_connections.load(Relaxed) as f64,
        );
        let _ = writeln!(
            out,
            "# HELP wecare_connections_closed_total Connections the server refused or closed, by reason.\n# TYPE wecare_connections_closed_total counter"
        );
        for (reason, c) in [
            ("over_capacity", &self.conn_refused),
            ("header_timeout", &self.header_timeouts),
            ("stalled", &self.conn_stalled),
            ("ended", &self.conn_killed),
        ] {
            let _ = writeln!(out, "wecare_connections_closed_total{{reason=\"{reason}\"}} {}", c.load(Relaxed));
        }
        counter(
            &mut out,
            "wecare_replies_dropped_total",
            "Answers (acks, error events) not written because the socket's send queue was full.",
            self.replies_dropped.load(Relaxed),
        );
        counter(
            &mut out,
            "wecare_abusive_sockets_total",
            "Sockets closed for sending past their bounds.",
            self.abusive_sockets.load(Relaxed),
        );
        self.ack_latency.render(&mut out, "wecare_ack_latency_seconds", "Receipt to ack.");
        self.fanout_latency.render(
            &mut out,
            "wecare_fanout_latency_seconds",
            "Commit to frames handed to all live watchers.",
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.rejected(ErrorCode::InvalidCoordinates);
        m.ack_latency.observe(Duration::from_millis(3));
        let text = m.render(&NodeFacts { ready: true, data_dir_space: Some((5, 10)), ..NodeFacts::default() });
        assert!(text.contains("wecare_ready 1"));
        assert!(text.contains("wecare_data_dir_free_bytes 5"));
        assert!(text.contains("wecare_rejections_total{code=\"INVALID_COORDINATES\"} 1"));
        assert!(text.contains("wecare_ack_latency_seconds_bucket{le=\"0.005\"} 1"));
        assert!(text.contains("wecare_ack_latency_seconds_count 1"));
    }
}
