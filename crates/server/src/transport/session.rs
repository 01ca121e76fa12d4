//! A socket's authenticated session and the clock of its token: warn
//! `auth:expiring` before `exp`, and at `exp` without a refresh emit
//! `auth:expired` and disconnect. A socket never outlives its token.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use wecare_proto::event;
use wecare_proto::payload::{AuthExpired, AuthExpiring};

use super::socket::Sock;
use crate::clock::{iso, now_ms};
use crate::domain::auth::Principal;
use crate::domain::revocation::token_hash;
use crate::stream::resume::Claim;

/// The state of one authenticated socket.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) principal: Principal,
    /// When its handshake was accepted ([`crate::clock::handshake_micros`]):
    /// its age among its user's sockets, whatever order the connect
    /// handlers (separate tasks) happen to run in.
    pub(crate) opened_at: i64,
    /// The socket's current token and its hash (revocation checks).
    token: Mutex<(String, String)>,
    /// Revoked at this time (epoch ms); 0 while not revoked.
    revoked_at: AtomicI64,
    /// Why it was cut before `exp`: `"revoked"`, or `"unverifiable"`.
    cut_reason: std::sync::OnceLock<&'static str>,
    /// `exp` in epoch ms (moved by `auth:refresh`).
    expires_at: AtomicI64,
    leeway_ms: i64,
    /// The `exp` whose `auth:expiring` was sent (0: none yet).
    warned_for: AtomicI64,
    /// Cancelled when the socket disconnects (or the server stops).
    pub(crate) closed: CancellationToken,
    lifecycle: Mutex<Lifecycle>,
    expired_once: std::sync::atomic::AtomicBool,
    /// What the socket may cost (issue 19).
    pub(crate) limits: Arc<super::limits::SocketLimits>,
    /// Where a watcher's stream starts (`auth.lastSeq`…), from the
    /// handshake until the socket has joined; `Started` once its stream
    /// runs (a recovery starts it during the handshake).
    claim: Mutex<WatcherStart>,
}

/// A watcher's stream: to be started from a claim, or running.
#[derive(Debug)]
enum WatcherStart {
    Pending(Claim),
    Started,
}

/// Connect and disconnect handlers run as separate tasks in either order.
#[derive(Debug, Default)]
struct Lifecycle {
    joined: bool,
    left: bool,
}

impl Session {
    pub(crate) fn new(principal: Principal, token: String, leeway_secs: u64, closed: CancellationToken) -> Self {
        let expires_at = AtomicI64::new(principal.expires_at.saturating_mul(1000));
        let leeway_ms = i64::try_from(leeway_secs).unwrap_or(i64::MAX / 2).saturating_mul(1000);
        let hash = token_hash(&token);
        Self {
            principal,
            opened_at: crate::clock::handshake_micros(),
            token: Mutex::new((token, hash)),
            revoked_at: AtomicI64::new(0),
            cut_reason: std::sync::OnceLock::new(),
            expires_at,
            leeway_ms,
            warned_for: AtomicI64::new(0),
            closed,
            lifecycle: Mutex::default(),
            expired_once: Default::default(),
            limits: super::limits::SocketLimits::new(std::time::Instant::now()),
            claim: Mutex::new(WatcherStart::Pending(Claim::default())),
        }
    }

    /// The connect handler starts: runs `on_join` unless the socket already
    /// left (then false). `on_join` runs under the lifecycle lock, so what a
    /// concurrent leave reports comes after what it reported.
    pub(crate) fn mark_joined(&self, on_join: impl FnOnce()) -> bool {
        let mut l = self.lifecycle.lock().unwrap_or_else(|e| e.into_inner());
        l.joined = !l.left;
        if l.joined {
            on_join();
        }
        l.joined
    }

    /// The socket left: runs `on_leave` if the connect handler had joined
    /// it (then true), under the same lock as `on_join`.
    pub(crate) fn mark_left(&self, on_leave: impl FnOnce()) -> bool {
        let mut l = self.lifecycle.lock().unwrap_or_else(|e| e.into_inner());
        l.left = true;
        if l.joined {
            on_leave();
        }
        l.joined
    }

    fn start_lock(&self) -> std::sync::MutexGuard<'_, WatcherStart> {
        self.claim.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Where the watcher's stream will start.
    pub(crate) fn set_claim(&self, claim: Claim) {
        *self.start_lock() = WatcherStart::Pending(claim);
    }

    /// Whether the watcher's stream is still to be started.
    pub(crate) fn watcher_pending(&self) -> bool {
        matches!(*self.start_lock(), WatcherStart::Pending(_))
    }

    /// The watcher's stream runs (started by its recovery).
    pub(crate) fn watcher_started(&self) {
        *self.start_lock() = WatcherStart::Started;
    }

    /// The claim to start the watcher's stream with, once; `None` when it
    /// already runs.
    pub(crate) fn take_claim(&self) -> Option<Claim> {
        match std::mem::replace(&mut *self.start_lock(), WatcherStart::Started) {
            WatcherStart::Pending(claim) => Some(claim),
            WatcherStart::Started => None,
        }
    }

    pub(crate) fn expires_at_ms(&self) -> i64 {
        self.expires_at.load(Ordering::Acquire)
    }

    fn deadline_ms(&self) -> i64 {
        self.expires_at_ms().saturating_add(self.leeway_ms)
    }

    /// Whether nothing this socket sends may be accepted any more (its
    /// token expired or was revoked).
    pub(crate) fn is_expired(&self) -> bool {
        self.is_revoked() || now_ms() >= self.deadline_ms()
    }

    pub(crate) fn is_revoked(&self) -> bool {
        self.revoked_at.load(Ordering::Acquire) != 0
    }

    /// The socket's token and its hash.
    pub(crate) fn token(&self) -> (String, String) {
        self.token.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Moves to a refreshed token (its `exp` in epoch seconds).
    pub(crate) fn refresh(&self, token: String, exp_secs: i64) {
        let hash = token_hash(&token);
        *self.token.lock().unwrap_or_else(|e| e.into_inner()) = (token, hash);
        self.expires_at.store(exp_secs.saturating_mul(1000), Ordering::Release);
    }
}

/// Ends the session before `exp` (contract §10): `reason` is `"revoked"`
/// (logged out, at `at_ms`) or `"unverifiable"` (`AUTH_CHECK_FAIL=closed`
/// and the backend cannot be asked); `auth:expired { expiredAt, reason }`,
/// then as on expiry.
pub(crate) fn cut(socket: &Sock, session: &Arc<Session>, at_ms: i64, reason: &'static str) {
    let _ = session.cut_reason.set(reason);
    let _ = session.revoked_at.compare_exchange(0, at_ms.max(1), Ordering::AcqRel, Ordering::Acquire);
    expire(socket, session);
}

/// Ends the session at its token's expiry: deliveries stop at once, then
/// `auth:expired` and a namespace disconnect go out. Both are retried for a
/// moment while the socket's send buffer is full (a watcher mid-replay);
/// then — and after a grace in any case — its websocket's TCP stream is
/// dropped, so a socket never outlives its token, whether or not its peer
/// reads. Runs once per session.
pub(crate) fn expire(socket: &Sock, session: &Arc<Session>) {
    if session.expired_once.swap(true, Ordering::AcqRel) {
        return;
    }
    session.closed.cancel();
    let revoked = session.revoked_at.load(Ordering::Acquire);
    let expired = if revoked != 0 {
        AuthExpired {
            expired_at: iso(revoked),
            reason: Some(session.cut_reason.get().copied().unwrap_or("revoked").to_string()),
        }
    } else {
        AuthExpired { expired_at: iso(session.expires_at_ms()), reason: None }
    };
    let socket = socket.clone();
    tokio::spawn(async move {
        let mut expired_sent = false;
        for _ in 0..100 {
            if !expired_sent {
                match socket.emit(event::AUTH_EXPIRED, &expired) {
                    wecare_sio::Write::Sent => expired_sent = true,
                    wecare_sio::Write::Full => {}
                    wecare_sio::Write::Gone => return,
                }
            }
            // The disconnect closes the connection once both are written.
            if expired_sent && socket.disconnect() != wecare_sio::Write::Full {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Its peer does not read: the connection is dropped instead.
        tracing::debug!(sid = %socket.id(), "expired socket not reading; dropping its connection");
        socket.close_now();
    });
    tracing::debug!("token expired; socket closed");
}

/// The token clock of `socket`, checked now: `auth:expiring` once per
/// `exp` when within `warning` of it, the end of the session at `exp`
/// (plus leeway); then the socket's timer is set for the next check. It
/// runs on the socket's own transport task (no task of its own), and again
/// after every `auth:refresh`.
pub(crate) fn check_expiry(socket: &Sock, session: &Arc<Session>, warning: Duration) {
    let warning_ms = i64::try_from(warning.as_millis()).unwrap_or(i64::MAX / 2);
    let exp = session.expires_at_ms();
    let deadline = session.deadline_ms();
    let now = now_ms();
    if now >= deadline {
        return expire(socket, session);
    }
    let warned = session.warned_for.load(Ordering::Acquire) == exp;
    if !warned && now >= exp - warning_ms {
        let _ = socket.emit(event::AUTH_EXPIRING, &AuthExpiring { expires_at: iso(exp) });
        session.warned_for.store(exp, Ordering::Release);
    }
    let next = if session.warned_for.load(Ordering::Acquire) == exp { deadline } else { exp - warning_ms };
    let wait = Duration::from_millis(u64::try_from(next - now).unwrap_or(0));
    socket.set_timer(Some(std::time::Instant::now() + wait));
}
