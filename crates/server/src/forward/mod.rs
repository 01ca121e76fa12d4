//! Position forwarding (contract §10): keeps the WeCare backend's
//! `driver_locations` table — which the deployed Map Command page polls —
//! current from the durable stream.
//!
//! One node of the cluster forwards at a time (it holds the job's lock; if
//! it dies another takes over). It reads the stream from a cursor kept in
//! the store, so forwarding is at-least-once across restarts and SIGKILL,
//! and it never touches ingest: it only reads what was committed. After a
//! (re)start it reads everything up to the head *before* sending anything,
//! so what it sends per driver is the newest position, never one older than
//! what was sent before the restart. What it owes is one position per
//! driver ([`queue`]), so a backend down for an hour costs a bounded amount
//! of memory.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use hyper::Method;
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wecare_proto::{DriverId, DriverStatus, Seq};

use crate::clock::{iso, now_ms};
use crate::cluster::{Cluster, Job};
use crate::domain::auth::TokenVerifier;
use crate::metrics::Metrics;
use crate::storage::EventLog;
use crate::upstream::{CallError, Upstream, percent_encode};

pub(crate) mod queue;

use queue::{Due, Outcome, Position, Queue, StreamFields};

/// The stored cursor's name.
const CURSOR: &str = "forward";
/// Requests in flight at once (all drivers together).
const MAX_IN_FLIGHT: usize = 64;
/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the cursor is stored and leadership checked.
const TICK: Duration = Duration::from_secs(1);
/// How often due sends are started.
const ROUND: Duration = Duration::from_millis(10);
/// How often the stream is read for new events (when the head moved).
const READ_EVERY: Duration = Duration::from_millis(50);
/// Events read at a time.
const PAGE: usize = 2000;
/// How long a minted service token lives (a new one is minted well before).
const SERVICE_TOKEN_TTL: i64 = 300;

/// Where and how positions are forwarded.
#[derive(Clone)]
pub struct ForwardConfig {
    /// URL template; `{driverId}` is replaced by the URL-encoded driver id.
    /// `http://` only.
    pub url: String,
    /// HTTP method. Defaults to `PUT`.
    pub method: Method,
    /// Bearer token; `None` mints a short-lived service token signed with
    /// `JWT_SECRET`, `{ id: "wecare-realtime", role: token_role }`.
    pub token: Option<String>,
    /// The role of the minted service token. Defaults to `driver`: the
    /// least of the roles the WeCare backend admits to its
    /// `PUT /api/driver-locations/:driverId` (contract v1.3 §10).
    pub token_role: String,
    /// At most one forward per driver per this long. Defaults to 10 s.
    pub min_interval: Duration,
}

impl std::fmt::Debug for ForwardConfig {
    // The token stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForwardConfig")
            .field("url", &self.url)
            .field("method", &self.method)
            .field("token", &self.token.as_ref().map(|_| "set"))
            .field("token_role", &self.token_role)
            .field("min_interval", &self.min_interval)
            .finish()
    }
}

/// `{ latitude, longitude, status?, recordedAt, seq }`: `status` only when
/// the driver reported it (contract v1.3 §10).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Body<'a> {
    latitude: f64,
    longitude: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<DriverStatus>,
    recorded_at: &'a str,
    seq: Seq,
}

/// The forwarding job's wiring.
#[derive(Debug, Clone)]
pub(crate) struct Forwarder {
    pub(crate) config: ForwardConfig,
    pub(crate) log: Arc<dyn EventLog>,
    pub(crate) cluster: Arc<dyn Cluster>,
    /// This node's view of the head (the tailer's): a wake-up to read.
    pub(crate) head: watch::Receiver<Seq>,
    pub(crate) upstream: Upstream,
    pub(crate) verifier: TokenVerifier,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) stop: CancellationToken,
}

/// Runs `forwarder` on a thread and runtime of its own until it stops:
/// its HTTP work (a request per driver per interval) then never waits in
/// the same task queues as the sockets' acks — forwarding must not slow
/// ingest. `tracker` waits for the thread.
///
/// # Errors
/// The thread or its runtime cannot be started.
pub(crate) fn spawn_isolated(forwarder: Forwarder, tracker: &TaskTracker) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (done, finished) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new().name("wecare-forward".into()).spawn(move || {
        give_way_to_ingest();
        runtime.block_on(forwarder.run());
        let _ = done.send(());
    })?;
    tracker.spawn(async move {
        let _ = finished.await;
    });
    Ok(())
}

/// Lowers the calling thread's CPU priority (nice 10): when the cores are
/// busy, the sockets' acks and deliveries get them first and forwarding —
/// background work that coalesces anyway — waits. Where it cannot be
/// lowered, forwarding runs at normal priority.
fn give_way_to_ingest() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: plain syscalls on integers; `gettid` names this thread,
        // and Linux applies PRIO_PROCESS with a thread id to that thread.
        let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 10) };
        if rc != 0 {
            tracing::debug!(error = %std::io::Error::last_os_error(), "forwarding runs at normal priority");
        }
    }
}

impl Forwarder {
    /// Runs until `stop`: forwards while this node holds the job.
    pub(crate) async fn run(mut self) {
        loop {
            match self.cluster.leads(Job::Forwarding).await {
                Ok(true) => {
                    if let Err(e) = self.lead().await {
                        tracing::warn!(error = %e, "forwarding interrupted; starting over from the stored cursor");
                    }
                }
                Ok(false) => {}
                Err(e) => tracing::debug!(error = %e, "forwarding: leadership unknown"),
            }
            tokio::select! {
                () = tokio::time::sleep(TICK * 2) => {}
                () = self.stop.cancelled() => return,
            }
        }
    }

    /// Forwards until leadership is lost, storage fails, or `stop`.
    async fn lead(&mut self) -> Result<(), crate::storage::StorageError> {
        let stored = self.log.cursor(CURSOR).await?;
        let snap = self.log.snapshot().await?;
        let start = stored.unwrap_or(snap.seq);
        let mut queue = Queue::new(self.config.min_interval, start);
        let now = Instant::now();
        for (driver, state) in snap.drivers {
            if let Some(p) = state.position {
                let position =
                    Position { lat: p.lat, lng: p.lng, recorded_at: iso(p.recorded_at), seq: snap.seq, received: now };
                // First start: every driver's current position is owed once.
                queue.know(driver, position, state.status, stored.is_none());
            }
        }
        let mut cursor = start;
        // Everything committed so far is read before anything is sent.
        self.read_on(&mut queue, &mut cursor).await?;
        tracing::info!(from = start.0, to = cursor.0, owed = queue.owed(), "forwarding");

        // The requests in flight, polled here: no task or channel per request.
        // Declared before `sends`: the requests in flight borrow it.
        let refusals = RefusalLog::default();
        let mut sends = FuturesUnordered::new();
        let url = UrlTemplate::new(&self.config.url);
        let mut stored_cursor = stored;
        let mut tick = tokio::time::interval(TICK);
        // Work is done in rounds, not per event: a round reads what was
        // committed since the last read (at most every READ_EVERY) and
        // starts the sends that are due. Per-event wake-ups cost more CPU
        // than forwarding itself at fleet rates; the latency a round adds
        // is small next to FORWARD_MIN_INTERVAL_MS.
        let mut round = tokio::time::interval(ROUND);
        round.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_read = tokio::time::Instant::now();
        let mut token = ServiceToken::default();
        let mut shortage = Shortage::default();
        loop {
            tokio::select! {
                Some((due, outcome)) = sends.next(), if !sends.is_empty() => {
                    // Jitter only spreads retries: no random draw (a syscall) per delivery.
                    let spread = if outcome == Outcome::Retry { jitter() } else { 0.5 };
                    queue.done(&due, outcome, Instant::now(), spread);
                }
                _ = round.tick() => {
                    if *self.head.borrow() > cursor && last_read.elapsed() >= READ_EVERY {
                        last_read = tokio::time::Instant::now();
                        self.read_on(&mut queue, &mut cursor).await?;
                    }
                    let now = Instant::now();
                    let slots = MAX_IN_FLIGHT - sends.len();
                    let room = self.upstream.budget().forward_room(now).min(slots);
                    // Only when the budget, not the in-flight bound, binds:
                    // is it holding owed positions back?
                    let held = room < slots && self.upstream.budget().paused_for(now).is_none() && queue.ready(now) > room;
                    shortage.observe(held, now, &self.config, &self.metrics, self.upstream.budget().per_min(), queue.owed());
                    for due in queue.due(now, room) {
                        if url.is_dot_segment(&due.driver) {
                            // No URL can name this driver safely: skipped, like a 4xx.
                            tracing::warn!(driver = ?due.driver.as_str(), "a driver id that is a dot segment cannot be forwarded; skipped");
                            self.metrics.forward_skipped.fetch_add(1, Relaxed);
                            queue.done(&due, Outcome::Refused, now, 0.5);
                            continue;
                        }
                        if self.upstream.budget().try_forward(now).is_err() {
                            queue.done(&due, Outcome::Throttled, now, 0.5);
                            continue;
                        }
                        let call = self.request(&url, &due, token.bearer(&self.config, &self.verifier));
                        let (upstream, metrics, refusals) = (&self.upstream, &*self.metrics, &refusals);
                        sends.push(async move {
                            let outcome = send(upstream, call, metrics, &due.driver, refusals).await;
                            (due, outcome)
                        });
                    }
                }
                _ = tick.tick() => {
                    // Also reads what other nodes committed while this
                    // node's view of the head did not move.
                    self.read_on(&mut queue, &mut cursor).await?;
                    let now = Instant::now();
                    self.metrics.forward_lag_ms.store(queue.lag(now).as_millis() as u64, Relaxed);
                    let paused = self.upstream.budget().paused_for(now).unwrap_or_default();
                    self.metrics.backend_paused_ms.store(paused.as_millis() as u64, Relaxed);
                    let at = queue.cursor();
                    if stored_cursor != Some(at) {
                        self.log.set_cursor(CURSOR, at).await?;
                        stored_cursor = Some(at);
                    }
                    if !self.cluster.leads(Job::Forwarding).await? {
                        tracing::info!("this node no longer runs forwarding");
                        return Ok(());
                    }
                }
                () = self.stop.cancelled() => {
                    if let Err(e) = self.log.set_cursor(CURSOR, queue.cursor()).await {
                        // The last stored cursor stands: a restart sends a little again.
                        tracing::warn!(error = %e, "forwarding cursor not stored at stop");
                    }
                    return Ok(());
                }
            }
        }
    }

    /// Reads the stream after `cursor` into `queue`, to the head.
    async fn read_on(&self, queue: &mut Queue, cursor: &mut Seq) -> Result<(), crate::storage::StorageError> {
        loop {
            let page = self.log.read_after(*cursor, PAGE).await?;
            let now = Instant::now();
            for ev in &page.events {
                match serde_json::from_str::<StreamFields>(ev.json.get()) {
                    Ok(fields) => queue.observe(&fields, now),
                    Err(e) => tracing::error!(seq = ev.seq.0, error = %e, "stream event not forwardable"),
                }
                *cursor = ev.seq;
            }
            if page.events.len() < PAGE {
                return Ok(());
            }
        }
    }

    fn request(&self, url: &UrlTemplate, due: &Due, bearer: String) -> Call {
        let url = url.for_driver(&due.driver);
        let p = &due.position;
        let status = due.status.map(|r| r.status);
        let body = Body { latitude: p.lat, longitude: p.lng, status, recorded_at: &p.recorded_at, seq: p.seq };
        let body = serde_json::to_vec(&body).map(Bytes::from).unwrap_or_default();
        Call { method: self.config.method.clone(), url, bearer, body }
    }
}

/// `FORWARD_URL` split at its `{driverId}` placeholders, once.
#[derive(Debug)]
struct UrlTemplate {
    parts: Vec<String>,
}

impl UrlTemplate {
    fn new(template: &str) -> Self {
        Self { parts: template.split("{driverId}").map(str::to_owned).collect() }
    }

    /// The URL for `driver`, its id percent-encoded.
    fn for_driver(&self, driver: &DriverId) -> String {
        self.parts.join(percent_encode(driver.as_str()).as_str())
    }

    /// Whether `driver`'s id in a path would be `.` or `..`: URL parsers
    /// resolve such a segment — also percent-encoded — to another route,
    /// which would carry the service token there.
    fn is_dot_segment(&self, driver: &DriverId) -> bool {
        self.parts.len() > 1 && matches!(driver.as_str(), "." | "..")
    }
}

/// One request, built.
#[derive(Debug)]
struct Call {
    method: Method,
    url: String,
    bearer: String,
    body: Bytes,
}

async fn send(upstream: &Upstream, call: Call, metrics: &Metrics, driver: &DriverId, refusals: &RefusalLog) -> Outcome {
    let result = upstream.call(call.method, &call.url, &call.bearer, Some(call.body), REQUEST_TIMEOUT).await;
    let outcome = match result {
        Ok(s) if s.is_success() => Outcome::Delivered,
        Ok(s) if s.as_u16() == 429 => Outcome::Throttled,
        Ok(s) if s.as_u16() == 401 || s.as_u16() == 403 => {
            refusals.refused(s.as_u16(), &call.url);
            Outcome::Retry
        }
        Ok(s) if s.is_client_error() => {
            tracing::warn!(status = s.as_u16(), driver = ?driver.as_str(), "the backend refused a forwarded position; skipped");
            Outcome::Refused
        }
        Ok(_) => Outcome::Retry,
        Err(CallError::BadRequest) => {
            tracing::warn!(url = %call.url, driver = ?driver.as_str(), "FORWARD_URL gives no valid URL for this driver; skipped");
            Outcome::Refused
        }
        Err(_) => Outcome::Retry,
    };
    match (&result, outcome) {
        (_, Outcome::Delivered) => {
            metrics.forwarded.fetch_add(1, Relaxed);
        }
        (Ok(s), _) => {
            metrics.forward_error(s.as_str());
            if outcome == Outcome::Refused {
                metrics.forward_skipped.fetch_add(1, Relaxed);
            }
        }
        (Err(e), _) => {
            metrics.forward_error(e.label());
            if outcome == Outcome::Refused {
                metrics.forward_skipped.fetch_add(1, Relaxed);
            }
        }
    }
    outcome
}

/// Says in plain words, at most once a minute, that the backend refuses
/// the forwarding token (401/403 are a configuration fault: each is
/// retried, and counted by status in the metrics).
#[derive(Debug, Default)]
struct RefusalLog {
    last: std::sync::Mutex<Option<Instant>>,
}

impl RefusalLog {
    fn refused(&self, status: u16, url: &str) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|t| t.elapsed() < Duration::from_secs(60)) {
            return;
        }
        *last = Some(Instant::now());
        let hint = if status == 403 {
            "the token's role is not admitted: set FORWARD_TOKEN_ROLE to a role the backend's driver-locations route admits (the WeCare backend: driver), or FORWARD_TOKEN to a token of such an account"
        } else {
            "the token is not accepted: the backend must verify tokens with the same JWT_SECRET as this service, or set FORWARD_TOKEN to a token it issued"
        };
        tracing::error!(status, url = %url, "the backend refuses forwarded positions; {hint}; retrying with backoff");
    }
}

/// Notices when the backend budget, not the backend or the fleet, holds
/// positions back for longer than the forwarding interval: says so once
/// in the log, with what it means, and shows it in a gauge while it lasts.
#[derive(Debug, Default)]
struct Shortage {
    held_since: Option<Instant>,
    said: bool,
}

impl Shortage {
    fn observe(
        &mut self,
        held: bool,
        now: Instant,
        config: &ForwardConfig,
        metrics: &Metrics,
        per_min: u32,
        owed: usize,
    ) {
        if !held {
            self.held_since = None;
            metrics.backend_budget_short.store(0, Relaxed);
            return;
        }
        let since = *self.held_since.get_or_insert(now);
        if now.duration_since(since) < config.min_interval.max(Duration::from_secs(1)) {
            return;
        }
        metrics.backend_budget_short.store(1, Relaxed);
        if !self.said {
            self.said = true;
            let bound = owed as f64 * 60.0 / f64::from(per_min);
            tracing::warn!(
                budget_per_min = per_min,
                owed,
                every_secs = config.min_interval.as_secs_f64(),
                "BACKEND_MAX_CALLS_PER_MIN is too small to forward every moving driver every FORWARD_MIN_INTERVAL_MS: no position is dropped, but each driver's newest one now arrives within about {bound:.0} s; exempt this service from the backend's rate limiter and raise the budget for fresher positions (README)"
            );
        }
    }
}

fn jitter() -> f64 {
    crate::random::unit()
}

/// The bearer of forwarded requests: `FORWARD_TOKEN`, or a service token
/// minted when the last one is half-way to its `exp`.
#[derive(Debug, Default)]
struct ServiceToken {
    minted: Option<(String, i64)>,
}

impl ServiceToken {
    fn bearer(&mut self, config: &ForwardConfig, verifier: &TokenVerifier) -> String {
        if let Some(t) = &config.token {
            return t.clone();
        }
        let now = now_ms().div_euclid(1000);
        match &self.minted {
            Some((t, at)) if now < at + SERVICE_TOKEN_TTL / 2 => t.clone(),
            _ => {
                let claims = serde_json::json!({
                    "id": "wecare-realtime", "role": config.token_role, "iat": now, "exp": now + SERVICE_TOKEN_TTL,
                });
                let t = verifier.mint(&claims);
                self.minted = Some((t.clone(), now));
                t
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_template_takes_the_encoded_driver_id_at_every_placeholder() {
        let t = UrlTemplate::new("http://b/api/driver-locations/{driverId}?d={driverId}");
        assert_eq!(t.for_driver(&DriverId::new("a/7")), "http://b/api/driver-locations/a%2F7?d=a%2F7");
        assert_eq!(UrlTemplate::new("http://b/x").for_driver(&DriverId::new("a")), "http://b/x");
        assert!(t.is_dot_segment(&DriverId::new("..")) && t.is_dot_segment(&DriverId::new(".")));
        assert!(!t.is_dot_segment(&DriverId::new("a..b")));
        assert_eq!(t.for_driver(&DriverId::new("a..b")), "http://b/api/driver-locations/a%2E%2Eb?d=a%2E%2Eb");
    }
}
