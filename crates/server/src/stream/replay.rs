//! One watcher's life in the stream, as one task: brought up to date — a
//! snapshot or a resume (`seq > lastSeq` in order, then `sync:complete`)
//! as [`super::resume`] decides, or a snapshot after all when retention
//! dropped events it needs — then handed to the live fan-out; and, when the
//! fan-out says it fell behind, caught up from storage and handed back.
//!
//! Writes are paced against the socket's bounded send buffer: when it is
//! full the task waits for it to drain, so a replay of any length holds at
//! most one page in memory and never drops an event.

use std::sync::Arc;
use std::time::Duration;

use socketioxide::extract::SocketRef;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use wecare_proto::{Seq, event};

use super::StreamDeps;
use super::fanout::{Command, Join, Joined, SyncProgress, Write, write};
use super::resume::{Claim, StartFrom};
use crate::domain::event::SharedEvent;

/// Events read from storage at a time.
const PAGE: usize = 1000;
/// Wait between attempts while a socket's send buffer is full.
const DRAIN_POLL: Duration = Duration::from_millis(1);
/// A watcher whose buffer does not drain for this long is given up on; the
/// heartbeat then closes its transport and it resumes on reconnect.
const STALL_LIMIT: Duration = Duration::from_secs(30);

/// The socket went away or the server is stopping.
#[derive(Debug)]
struct Stop;

/// Runs the watcher `socket` with what its handshake claims, until it is
/// gone or `stop` fires (its session ended: a socket never outlives its
/// token, also mid-replay).
pub(crate) fn spawn(deps: &Arc<StreamDeps>, socket: SocketRef, claim: Claim, stop: CancellationToken) {
    let deps = Arc::clone(deps);
    let tracker = deps.tracker.clone();
    tracker.spawn(async move {
        tokio::select! {
            _ = drive(&deps, &socket, claim, &stop) => {}
            () = stop.cancelled() => {}
        }
    });
}

/// Retries a storage read until it succeeds: a watcher waits through a
/// storage hiccup instead of being left connected without events.
async fn read_retrying<T, F, Fut>(mut read: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, crate::storage::StorageError>>,
{
    let mut delay = Duration::from_millis(100);
    loop {
        match read().await {
            Ok(v) => return v,
            Err(e) => {
                tracing::warn!(error = %e, "replay read failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn drive(deps: &Arc<StreamDeps>, socket: &SocketRef, claim: Claim, stop: &CancellationToken) -> Result<(), Stop> {
    let stream_id = deps.log.stream_id();
    let from = match claim.resumable(stream_id) {
        // The store's own head (see `Claim::start`).
        Some(last) => claim.start(stream_id, read_retrying(|| deps.log.read_after(last, 0)).await.head),
        None => StartFrom::State,
    };
    let (mut cursor, mut sync) = match from {
        StartFrom::State => (send_snapshot(deps, socket).await?, None),
        StartFrom::After(last) => (last, Some(SyncProgress { from: last, replayed: 0 })),
    };
    loop {
        let page = read_retrying(|| deps.log.read_after(cursor, PAGE)).await;
        tracing::debug!(
            after = cursor.0,
            events = page.events.len(),
            head = page.head.0,
            gap = page.gap,
            "replay page"
        );
        if page.gap {
            // Retention dropped events this watcher needs: start over from state.
            cursor = send_snapshot(deps, socket).await?;
            sync = None;
            continue;
        }
        let full_page = page.events.len() == PAGE;
        for ev in &page.events {
            write_paced(socket, ev).await?;
            cursor = ev.seq;
        }
        deps.metrics.events_out.fetch_add(page.events.len() as u64, std::sync::atomic::Ordering::Relaxed);
        if let Some(s) = &mut sync {
            s.replayed += page.events.len() as u64;
        }
        if full_page {
            continue;
        }
        let (reply, joined) = oneshot::channel();
        let (behind, fell_behind) = oneshot::channel();
        let join = Join { socket: socket.clone(), stop: stop.clone(), after: cursor, sync, reply, behind };
        deps.fanout.send(Command::Join(join)).await.map_err(|_| Stop)?;
        match joined.await.map_err(|_| Stop)? {
            Joined::Live => {
                // Live until the fan-out says it fell behind (then catch up
                // from storage, no `sync:complete`) or lets it go (gone).
                cursor = fell_behind.await.map_err(|_| Stop)?;
                sync = None;
            }
            Joined::Behind { cursor: c, sent } => {
                cursor = c;
                if let Some(s) = &mut sync {
                    s.replayed += sent;
                }
            }
        }
    }
}

async fn send_snapshot(deps: &StreamDeps, socket: &SocketRef) -> Result<Seq, Stop> {
    let payload = read_retrying(|| deps.snapshots.get(deps.log.as_ref())).await;
    let seq = payload.seq;
    tracing::debug!(sid = %socket.id, seq = seq.0, "sending snapshot");
    let mut waited = Duration::ZERO;
    loop {
        match socket.emit(event::DRIVERS_SNAPSHOT, payload.raw()) {
            Ok(()) => return Ok(seq),
            Err(socketioxide::SendError::Socket(socketioxide::SocketError::InternalChannelFull)) => {
                waited += DRAIN_POLL;
                if waited > STALL_LIMIT {
                    return Err(Stop);
                }
                tokio::time::sleep(DRAIN_POLL).await;
            }
            Err(_) => return Err(Stop),
        }
    }
}

async fn write_paced(socket: &SocketRef, ev: &SharedEvent) -> Result<(), Stop> {
    let mut waited = Duration::ZERO;
    loop {
        match write(socket, ev) {
            Write::Sent => return Ok(()),
            Write::Gone => return Err(Stop),
            Write::Full => {
                waited += DRAIN_POLL;
                if waited > STALL_LIMIT {
                    return Err(Stop);
                }
                tokio::time::sleep(DRAIN_POLL).await;
            }
        }
    }
}
