//! What one node does for, and asks of, the others: sockets per user
//! (`MAX_CONNECTIONS_PER_USER` across the cluster: the oldest socket is
//! closed wherever it is), and the notification relay (contract §8: a push
//! posted to any node reaches the rooms' sockets on every node, and
//! `delivered` counts the sockets written to, on all of them).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::value::RawValue;
use tokio::sync::{broadcast, mpsc};

use super::socket::Sock;
use super::state::SharedState;
use crate::cluster::BusMessage;
use crate::domain::auth::Principal;

/// How long a relayed notification waits for the other nodes' counts.
const DELIVERY_WAIT: Duration = Duration::from_millis(500);

/// Notifications relayed by this node that wait for other nodes' counts.
#[derive(Debug, Default)]
pub(crate) struct PendingDeliveries {
    waiting: Mutex<HashMap<String, mpsc::UnboundedSender<usize>>>,
}

/// Records a user's new socket; closes that user's sockets beyond the
/// limit, here or on other nodes (the oldest go first: a phone that
/// reconnects through a flaky network leaves half-open sockets behind, and
/// the newest is the one that works). A cluster that cannot be asked (the
/// database is down) lets the socket in: the limit is a safeguard, not worth
/// refusing a driver over.
pub(crate) async fn admit(app: &SharedState, subject: &str, opened_at: i64, s: &Sock) {
    let sid = s.id().to_string();
    let max = app.config.max_connections_per_user;
    let evicted = match app.cluster.user_socket_opened(subject, &sid, opened_at, max).await {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(error = %e, "connection limit not checked");
            return;
        }
    };
    for key in evicted {
        tracing::info!(subject = ?subject, node = %key.node, sid = %key.sid, "too many sockets for one user; closing the oldest");
        if key.node == app.cluster.node_id() {
            close_local(app, &key.sid);
        } else if let Err(e) = app.cluster.publish(BusMessage::Evict { node: key.node, sid: key.sid }).await {
            tracing::warn!(error = %e, "eviction not sent to its node");
        }
    }
}

/// Forgets a closed socket.
pub(crate) async fn left(app: &SharedState, subject: &str, s: &Sock) {
    if let Err(e) = app.cluster.user_socket_closed(subject, s.id()).await {
        tracing::debug!(error = %e, "socket close not recorded");
    }
}

/// Closes this node's socket `sid` (an eviction): a disconnect (its
/// connection closes once that is written, or after a grace), or — when
/// its send queue is full, so it cannot be told — its connection dropped.
fn close_local(app: &SharedState, sid: &str) {
    if let Some(socket) = app.io.get().and_then(|io| io.socket(sid))
        && socket.disconnect() == wecare_sio::Write::Full
    {
        socket.close_now();
    }
}

/// Whether a socket of `p` is in `room`: `user:<subject>`, or
/// `role:<role>` in the token's spelling, upper or lower case (the
/// backend's pushes name rooms like the original server's).
fn in_room(p: &Principal, room: &str) -> bool {
    if let Some(user) = room.strip_prefix("user:") {
        return user == p.subject;
    }
    room.strip_prefix("role:").is_some_and(|role| {
        role == p.role || role == p.role.to_ascii_uppercase() || role == p.role.to_ascii_lowercase()
    })
}

/// Writes `event` with `data` to this node's sockets in `rooms`, encoded
/// once; the number written to (a socket that closed or whose queue is
/// full is not).
pub(crate) fn deliver_local(app: &SharedState, rooms: Vec<String>, event: &str, data: &RawValue) -> usize {
    let Some(io) = app.io.get() else {
        return 0;
    };
    let frame = io.event_frame(event, data.get());
    io.sockets()
        .iter()
        .filter(|s| s.data().is_some_and(|session| rooms.iter().any(|r| in_room(&session.principal, r))))
        .filter(|s| s.emit_frame(frame.clone()) == wecare_sio::Write::Sent)
        .count()
}

/// Relays a notification to every node and counts the sockets it was
/// written to. Other nodes answer within [`DELIVERY_WAIT`] or are counted
/// as having delivered to none.
pub(crate) async fn notify(app: &SharedState, rooms: Vec<String>, event: String, data: Box<RawValue>) -> usize {
    let mut delivered = deliver_local(app, rooms.clone(), &event, &data);
    let others = match app.cluster.live_nodes().await {
        Ok(n) => n.saturating_sub(1),
        Err(_) => 0,
    };
    if others == 0 {
        return delivered;
    }
    let id = crate::random::hex_id(16);
    let (tx, mut rx) = mpsc::unbounded_channel();
    app.pending.waiting.lock().unwrap_or_else(|e| e.into_inner()).insert(id.clone(), tx);
    let from = app.cluster.node_id().to_string();
    let sent = app.cluster.publish(BusMessage::Notify { id: id.clone(), from, rooms, event, data }).await;
    if sent.is_ok() {
        let deadline = tokio::time::Instant::now() + DELIVERY_WAIT;
        for _ in 0..others {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(n)) => delivered += n,
                _ => break,
            }
        }
    }
    app.pending.waiting.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
    delivered
}

/// Acts on other nodes' messages until the server stops.
pub(crate) async fn serve_bus(app: SharedState, mut rx: broadcast::Receiver<BusMessage>) {
    loop {
        let msg = tokio::select! {
            m = rx.recv() => match m {
                Ok(m) => m,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "cluster messages missed");
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            () = app.stream.stop.cancelled() => return,
        };
        match msg {
            BusMessage::Evict { node, sid } if node == app.cluster.node_id() => close_local(&app, &sid),
            BusMessage::Evict { .. } => {}
            BusMessage::Notify { id, from, rooms, event, data } => {
                let delivered = deliver_local(&app, rooms, &event, &data);
                let node = app.cluster.node_id().to_string();
                let reply = BusMessage::Delivered { id, to: from, node, delivered };
                if let Err(e) = app.cluster.publish(reply).await {
                    tracing::debug!(error = %e, "delivery count not sent");
                }
            }
            BusMessage::Delivered { id, to, delivered, .. } if to == app.cluster.node_id() => {
                let waiting = app.pending.waiting.lock().unwrap_or_else(|e| e.into_inner()).get(&id).cloned();
                if let Some(tx) = waiting {
                    let _ = tx.send(delivered);
                }
            }
            BusMessage::Delivered { .. } => {}
            BusMessage::Revoked => super::revocation::reload(&app).await,
        }
    }
}

/// Keeps `Arc` in scope for callers that spawn [`serve_bus`].
pub(crate) fn spawn_bus(app: &SharedState) {
    let rx = app.cluster.subscribe();
    app.stream.tracker.spawn(serve_bus(Arc::clone(app), rx));
}
