//! WeCare Realtime server: live vehicle locations for dispatch, over the
//! Socket.io v4 namespace `/locations` and a REST fallback on one port.
//!
//! # Architecture
//! * [`domain`](crate) — tokens → principals (`domain::auth`), payload
//!   validation (`domain::validate`), the latest-state rule that marks late
//!   fixes `outdated` (`domain::fleet`), rate limits and presence.
//! * `storage` — the [`EventLog`](crate) trait and its embedded SQLite
//!   implementation: dedup by (driver, id), gap-free `seq`, durable commit.
//! * `stream` — the single sequencer (group commit), the fan-out (encode
//!   once, never a silent miss), and replay/snapshot for resuming watchers.
//! * `ingest` — driver input on every path: role, validation, rate, sequencer.
//! * `transport` — Socket.io handlers, REST routes, CORS/origin rules.
//!
//! # Design
//! Every accepted event goes through one sequencer task that commits groups
//! of events in one transaction and only then acks and publishes them, so
//! "acked" means "durable" and commit order is delivery order. Watchers
//! resume from their last `seq`: storage is read first, and the fan-out task
//! alone moves a caught-up watcher to live delivery, so there is neither a
//! gap nor a duplicate at the seam.
//!
//! ```no_run
//! # async fn run() -> Result<(), wecare_server::ServeError> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await.expect("bind");
//! let config = wecare_server::ServerConfig { jwt_secret: b"dev-secret".to_vec(), ..Default::default() };
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! wecare_server::serve(listener, config, shutdown).await
//! # }
//! ```

use std::sync::Arc;
use std::time::Duration;

use axum::http::Request;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::trace::TraceLayer;

mod backend;
mod clock;
mod cluster;
mod config;
mod domain;
mod forward;
mod gate;
mod ingest;
mod metrics;
mod presence;
mod random;
mod shutdown;
mod storage;
mod stream;
mod transport;
mod upstream;

#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
#[cfg(any(test, feature = "test-util"))]
pub mod pg_testing;

pub use config::{ServerConfig, defaults, split_list};
pub use forward::ForwardConfig;
pub use gate::AuthCheckConfig;
pub use hyper::Method;
pub use storage::StorageError;
pub use storage::footprint::{FootprintReport, FootprintTarget, measure_footprint};
pub use storage::migrate::{MigrationReport, migrate_to_postgres};
pub use storage::sqlite::backup::{BackupReport, backup};

use cluster::{Cluster, Job};
use domain::auth::TokenVerifier;
use storage::EventLog;
use stream::StreamDeps;
use transport::state::AppState;

/// How long HTTP requests still open once the sockets are closed (a
/// long-poll of an Engine.IO session that never joined, a slow client) may
/// hold the process: every accepted event was answered before that.
const HTTP_LINGER: Duration = Duration::from_secs(1);
/// At shutdown, a socket whose writes have been pending this long is taken
/// to have stopped reading: its connection is dropped rather than waited for.
const SHUTDOWN_STALL: Duration = Duration::from_secs(1);
/// How often a node reads the stream without a wake-up (the safety net
/// behind PostgreSQL's NOTIFY; one node never needs it).
const TAILER_POLL: Duration = Duration::from_millis(250);

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The store could not be opened.
    #[error("opening the store: {0}")]
    Storage(#[from] StorageError),
    /// The listener failed.
    #[error("serving: {0}")]
    Io(#[from] std::io::Error),
}

/// Signs `claims` as an HS256 JWT with `secret` (dev tokens, tests, bench).
pub fn dev_token(secret: &str, claims: &serde_json::Value) -> String {
    TokenVerifier::new(secret.as_bytes(), 0, &[]).mint(claims)
}

/// Serves `/locations` and the REST API on `listener` until `shutdown` is
/// cancelled; then drains (contract §9): takes no new event, finishes the
/// accepted ones (stored, acked, delivered), closes every socket (clients
/// reconnect elsewhere or later), and returns within the shutdown grace.
///
/// # Errors
/// [`ServeError`] when the store cannot be opened or the listener fails.
pub async fn serve(listener: TcpListener, config: ServerConfig, shutdown: CancellationToken) -> Result<(), ServeError> {
    let tracker = TaskTracker::new();
    // `shutdown` asks for a drain; `stop` ends the stream tasks after it.
    let stop = CancellationToken::new();
    let backend::Backend { log, cluster } = match backend::open(&config, &tracker, stop.clone()).await {
        Ok(b) => b,
        Err(e) => {
            stop.cancel();
            tracker.close();
            tracker.wait().await;
            return Err(e.into());
        }
    };
    let metrics = Arc::new(metrics::Metrics::default());
    let (fanout_tx, fanout_rx) = mpsc::channel(1024);
    let (tailer_tx, tailer_rx) = mpsc::channel(1024);
    let (head_tx, head_rx) = watch::channel(log.head());
    let stream = Arc::new(StreamDeps {
        log: Arc::clone(&log),
        fanout: fanout_tx.clone(),
        head: head_rx,
        metrics: Arc::clone(&metrics),
        tracker: tracker.clone(),
        stop: stop.clone(),
        snapshots: stream::snapshot::SnapshotCache::default(),
    });
    tracker.spawn(stream::fanout::run(Arc::clone(&stream), fanout_rx));
    let tailer = stream::tailer::Tailer {
        log: Arc::clone(&log),
        fanout: fanout_tx,
        head: head_tx,
        commits: cluster.commits(),
        poll: TAILER_POLL,
        stop: stop.clone(),
    };
    tracker.spawn(tailer.run(tailer_rx));
    let sequencer =
        stream::sequencer::Sequencer::spawn(Arc::clone(&log), tailer_tx, Arc::clone(&metrics), &tracker, stop.clone());
    tracker.spawn(retention(Arc::clone(&log), Arc::clone(&cluster), config.retention, stop.clone()));
    let presence = presence::Presence::spawn(presence::PresenceDeps {
        cluster: Arc::clone(&cluster),
        log: Arc::clone(&log),
        sequencer: sequencer.clone(),
        grace: config.presence_grace,
        tracker: tracker.clone(),
        stop: stop.clone(),
    });

    let verifier = TokenVerifier::new(&config.jwt_secret, config.jwt_leeway_secs, &config.watcher_roles);
    // One budget for every call to the WeCare backend (its rate limit).
    let budget = Arc::new(upstream::Budget::new(config.backend_max_calls_per_min));
    metrics.backend_budget_per_min.store(u64::from(budget.per_min()), std::sync::atomic::Ordering::Relaxed);
    let upstream = upstream::Upstream::new(Arc::clone(&budget));
    if let Some(forward) = &config.forward {
        let forwarder = forward::Forwarder {
            config: forward.clone(),
            log: Arc::clone(&log),
            cluster: Arc::clone(&cluster),
            head: stream.head.clone(),
            // Its own pool (its connections live on its own runtime), the same budget.
            upstream: upstream::Upstream::new(Arc::clone(&budget)),
            verifier: verifier.clone(),
            metrics: Arc::clone(&metrics),
            stop: stop.clone(),
        };
        forward::spawn_isolated(forwarder, &tracker)?;
    }
    let origins = transport::origin::Origins::new(&config.allowed_origins);
    let state = Arc::new(AppState {
        ingest: ingest::Ingest::new(sequencer.clone(), config.rate_limit_per_sec, Arc::clone(&metrics)),
        verifier,
        gate: gate::Gate::new(config.auth_check.clone(), upstream),
        stream,
        metrics,
        config: config.clone(),
        io: std::sync::OnceLock::new(),
        cluster,
        presence,
        pending: transport::peers::PendingDeliveries::default(),
        drain: shutdown::Drain::new(shutdown.clone()),
        reads: transport::limits::ReadBudget::default(),
    });

    let io = transport::engine_io::build(&state);
    let _ = state.io.set(Arc::clone(&io));
    transport::peers::spawn_bus(&state);
    transport::revocation::start_reloader(&state).await;

    let app = axum::Router::new()
        .fallback_service(transport::http::routes(Arc::clone(&state)))
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&io), transport::engine_io::route))
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&state), transport::draining::refuse_new_sessions))
        .layer(axum::middleware::from_fn_with_state(origins.clone(), transport::origin::guard_ws_origin))
        .layer(origins.cors())
        // Path only: a `?token=` must never reach a log line.
        .layer(TraceLayer::new_for_http().make_span_with(
            |req: &Request<_>| tracing::debug_span!("http", method = %req.method(), path = %req.uri().path()),
        ));

    let addr = listener.local_addr()?;
    tracing::info!(%addr, stream_id = %log.stream_id(), head = log.head().0, "listening");

    // The drain: events already taken are answered and delivered, then the
    // sockets are closed (websockets never end on their own). HTTP keeps
    // being served until then, so a long-polling client gets its acks too.
    let grace = config.shutdown_grace;
    let sockets_closed = CancellationToken::new();
    let drained = {
        let (state, io, shutdown, closed) =
            (Arc::clone(&state), Arc::clone(&io), shutdown.clone(), sockets_closed.clone());
        tokio::spawn(async move {
            shutdown.cancelled().await;
            let started = tokio::time::Instant::now();
            let finish = async {
                state.drain.settled().await;
                sequencer.flush().await;
            };
            if tokio::time::timeout(grace, finish).await.is_err() {
                tracing::warn!(?grace, "accepted events not finished within the shutdown grace; closing anyway");
            }
            tracing::info!(elapsed = ?started.elapsed(), "accepted events finished; closing sockets");
            // Each session closes as soon as what is queued for it is
            // written (a long-polling one with its next poll) — a transport
            // close, so clients reconnect by themselves; a peer that stopped
            // reading is dropped instead of holding everyone's close for the
            // whole grace.
            io.close_all();
            let left = grace.saturating_sub(started.elapsed());
            let unstick = async {
                loop {
                    for s in io.sockets() {
                        if s.stalled_for().is_some_and(|d| d >= SHUTDOWN_STALL) {
                            s.close_now();
                        }
                    }
                    tokio::time::sleep(SHUTDOWN_STALL / 4).await;
                }
            };
            let _ = tokio::time::timeout(left, async {
                tokio::select! {
                    () = io.all_ended() => {}
                    () = unstick => {}
                }
            })
            .await;
            closed.cancel();
        })
    };
    let limits = transport::listener::ConnLimits {
        max_connections: transport::listener::connection_cap(config.max_connections),
        header_read_timeout: config.header_read_timeout,
        // A peer whose writes stall this long would miss its pongs too.
        write_stall: config.ping_timeout,
    };
    tracing::info!(max_connections = limits.max_connections, "connection limits");
    let graceful = transport::listener::serve(
        listener,
        app,
        limits,
        Arc::clone(&state.metrics),
        sockets_closed.clone().cancelled_owned(),
    );
    tokio::pin!(graceful);
    let served: Result<(), std::io::Error> = tokio::select! {
        () = &mut graceful => Ok(()),
        // A request still open after the sockets closed (an Engine.IO
        // long-poll of a session that never joined, a slow client) does not
        // hold the process: every accepted event was answered before.
        () = async { sockets_closed.cancelled().await; tokio::time::sleep(HTTP_LINGER).await } => {
            tracing::info!("requests still open after the sockets closed; closing them");
            Ok(())
        }
    };
    shutdown.cancel();
    let _ = drained.await;
    stop.cancel();
    tracker.close();
    tracker.wait().await;
    // Leave the store whole in its files: an operator who stops the service
    // and copies the database file must not miss the last commits.
    if let Err(e) = state.stream.log.settle().await {
        tracing::warn!(error = %e, "the store could not be settled at the stop (nothing is lost)");
    }
    drop(state);
    tracing::info!("stopped");
    served.map_err(ServeError::from)
}

/// Prunes the stream to the retention period, often enough that a short
/// retention (tests) is honoured within a fraction of it; on one node of
/// the cluster at a time.
async fn retention(log: Arc<dyn EventLog>, cluster: Arc<dyn Cluster>, keep: Duration, stop: CancellationToken) {
    let every = (keep / 4).clamp(Duration::from_millis(250), Duration::from_secs(60));
    let keep_ms = i64::try_from(keep.as_millis()).unwrap_or(i64::MAX);
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = stop.cancelled() => return,
        }
        match cluster.leads(Job::Retention).await {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                tracing::debug!(error = %e, "retention: leadership unknown");
                continue;
            }
        }
        match log.prune(clock::now_ms().saturating_sub(keep_ms)).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(pruned = n, "retention"),
            Err(e) => tracing::warn!(error = %e, "retention pass failed"),
        }
    }
}
