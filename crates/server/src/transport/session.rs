//! A socket's authenticated session and the clock of its token: warn
//! `auth:expiring` before `exp`, and at `exp` without a refresh emit
//! `auth:expired` and disconnect. A socket never outlives its token.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use serde::Serialize;
use socketioxide::extract::SocketRef;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wecare_proto::event;

use crate::clock::{iso, now_ms};
use crate::domain::auth::Principal;

/// The state of one authenticated socket.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) principal: Principal,
    /// `exp` in epoch ms (moved by `auth:refresh`).
    expires_at: AtomicI64,
    leeway_ms: i64,
    refreshed: Notify,
    /// Cancelled when the socket disconnects (or the server stops).
    pub(crate) closed: CancellationToken,
}

/// The session as stored in the socket's extensions.
#[derive(Debug, Clone)]
pub(crate) struct SessionRef(pub(crate) Arc<Session>);

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Expiring {
    expires_at: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Expired {
    expired_at: String,
}

impl Session {
    pub(crate) fn new(principal: Principal, leeway_secs: u64, closed: CancellationToken) -> Self {
        let expires_at = AtomicI64::new(principal.expires_at.saturating_mul(1000));
        let leeway_ms = i64::try_from(leeway_secs).unwrap_or(i64::MAX / 2).saturating_mul(1000);
        Self { principal, expires_at, leeway_ms, refreshed: Notify::new(), closed }
    }

    pub(crate) fn expires_at_ms(&self) -> i64 {
        self.expires_at.load(Ordering::Acquire)
    }

    fn deadline_ms(&self) -> i64 {
        self.expires_at_ms().saturating_add(self.leeway_ms)
    }

    /// Whether nothing this socket sends may be accepted any more.
    pub(crate) fn is_expired(&self) -> bool {
        now_ms() >= self.deadline_ms()
    }

    /// Moves the expiry to a refreshed token's `exp` (epoch seconds).
    pub(crate) fn refresh(&self, exp_secs: i64) {
        self.expires_at.store(exp_secs.saturating_mul(1000), Ordering::Release);
        self.refreshed.notify_one();
    }
}

/// Runs the token clock of `socket` until it disconnects.
pub(crate) fn spawn_expiry_clock(tracker: &TaskTracker, socket: SocketRef, session: Arc<Session>, warning: Duration) {
    let warning_ms = i64::try_from(warning.as_millis()).unwrap_or(i64::MAX / 2);
    tracker.spawn(async move {
        let mut warned_for = None;
        loop {
            let exp = session.expires_at_ms();
            let deadline = session.deadline_ms();
            let now = now_ms();
            let next = if now >= deadline {
                let _ = socket.emit(event::AUTH_EXPIRED, &Expired { expired_at: iso(exp) });
                tracing::debug!(sid = %socket.id, "token expired; disconnecting");
                let _ = socket.clone().disconnect();
                return;
            } else if warned_for != Some(exp) && now >= exp - warning_ms {
                let _ = socket.emit(event::AUTH_EXPIRING, &Expiring { expires_at: iso(exp) });
                warned_for = Some(exp);
                continue;
            } else if warned_for != Some(exp) {
                exp - warning_ms
            } else {
                deadline
            };
            let wait = Duration::from_millis(u64::try_from(next - now).unwrap_or(0));
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = session.refreshed.notified() => {}
                () = session.closed.cancelled() => return,
            }
        }
    });
}
