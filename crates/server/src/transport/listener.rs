//! The HTTP listener: accepts TCP connections and serves the router on each,
//! with the bounds a hostile or broken client must not get past:
//! - **a connection cap** (`MAX_CONNECTIONS`): one more is answered a plain
//!   503 and closed at once, so a flood of idle connections cannot use up
//!   the process's file descriptors (and with them `/healthz`);
//! - **a header-read timeout** (`HEADER_READ_TIMEOUT_MS`): a request whose
//!   head does not arrive in time, and a keep-alive connection idle between
//!   requests for that long, are closed. A websocket, once upgraded, is no
//!   longer an HTTP connection: the Engine.IO heartbeat watches it;
//! - **a write-stall bound** (the ping timeout): see [`super::conn`].
//!
//! Every request carries its connection's [`ConnHandle`] in its extensions,
//! so a Socket.io session can end its own TCP stream.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tower::ServiceExt;

use super::conn::{ConnHandle, Ended, Guarded, OnEnded};
use crate::metrics::Metrics;

/// The listener's bounds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnLimits {
    /// Most open connections; one more gets a 503.
    pub(crate) max_connections: usize,
    /// How long a request head (or a keep-alive idle gap) may take.
    pub(crate) header_read_timeout: Duration,
    /// How long a write may wait on a peer that does not read.
    pub(crate) write_stall: Duration,
}

/// File descriptors kept for everything but client connections (the store,
/// the backend's connections, logs).
const FD_RESERVE: usize = 256;

/// The connection cap: `configured`, or with 0 the process's file-descriptor
/// limit (raised to its hard limit first) less [`FD_RESERVE`].
pub(crate) fn connection_cap(configured: usize) -> usize {
    if configured > 0 {
        return configured;
    }
    fd_limit().saturating_sub(FD_RESERVE).max(64)
}

/// The process's file-descriptor limit, raised to the hard limit if it can be.
fn fd_limit() -> usize {
    #[cfg(unix)]
    {
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: plain syscalls on a struct we own.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
                return 1024;
            }
            if lim.rlim_cur < lim.rlim_max {
                let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                    lim.rlim_cur = lim.rlim_max;
                }
            }
        }
        usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX)
    }
    #[cfg(not(unix))]
    {
        1024
    }
}

/// What an accept error (out of file descriptors, say) waits before the next
/// accept, so the loop does not spin while nothing can be accepted.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The body of the answer to a connection over the cap.
const OVER_CAPACITY: &str = r#"{"status":"error","code":"UNAVAILABLE","message":"too many connections; retry later"}"#;

/// Serves `app` on `listener` until `shutdown` resolves; then stops
/// accepting, asks every connection to finish its request in progress and
/// close (hyper's graceful shutdown), and returns once they all have.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnLimits,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send,
) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let tracker = tokio_util::task::TaskTracker::new();
    let on_ended: OnEnded = {
        let metrics = Arc::clone(&metrics);
        Arc::new(move |why| {
            let counter = match why {
                Ended::Stalled => &metrics.conn_stalled,
                Ended::Killed => &metrics.conn_killed,
            };
            counter.fetch_add(1, Relaxed);
        })
    };
    tokio::pin!(shutdown);
    loop {
        let (tcp, _peer): (TcpStream, SocketAddr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed; pausing accepts briefly");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Counted until the stream is dropped — an upgraded websocket too.
        let slot = ConnSlot::take(&metrics);
        if slot.open > limits.max_connections as i64 {
            metrics.conn_refused.fetch_add(1, Relaxed);
            refuse(tcp);
            continue;
        }
        // Frames are small and latency-bound; Nagle would hold a delivery
        // back until the peer's delayed ACK.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "set_nodelay failed");
        }
        let handle = ConnHandle::default();
        let io = Guarded::new(tcp, handle.clone(), limits.write_stall, Arc::clone(&on_ended), slot);
        let service = app.clone().map_request(move |mut req: Request<Incoming>| {
            req.extensions_mut().insert(handle.clone());
            req.map(axum::body::Body::new)
        });
        let mut stop = stop_rx.clone();
        let metrics = Arc::clone(&metrics);
        tracker.spawn(async move {
            let mut builder = Builder::new(TokioExecutor::new());
            builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), TowerToHyperService::new(service));
            tokio::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                _ = async { stop.wait_for(|s| *s).await.map(|_| ()) } => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                if e.downcast_ref::<hyper::Error>().is_some_and(hyper::Error::is_timeout) {
                    metrics.header_timeouts.fetch_add(1, Relaxed);
                }
                tracing::trace!(error = %e, "connection ended");
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    tracker.close();
    tracker.wait().await;
}

/// Answers a connection over the cap without waiting on it (a peer that
/// does not read loses the answer, not the server a task), then closes it.
fn refuse(tcp: TcpStream) {
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 5\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{OVER_CAPACITY}",
        OVER_CAPACITY.len()
    );
    let _ = tcp.try_write(answer.as_bytes());
}

/// One open connection in `wecare_http_connections`, until dropped.
#[derive(Debug)]
pub(crate) struct ConnSlot {
    metrics: Arc<Metrics>,
    /// Open connections with this one.
    open: i64,
}

impl ConnSlot {
    fn take(metrics: &Arc<Metrics>) -> Self {
        let open = metrics.http_connections.fetch_add(1, Relaxed) + 1;
        Self { metrics: Arc::clone(metrics), open }
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.metrics.http_connections.fetch_sub(1, Relaxed);
    }
}
