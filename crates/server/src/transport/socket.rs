//! THE one place event names are bound to handlers: the `/locations`
//! namespace on our own Socket.IO layer (`wecare_sio`), its handshake, and
//! every client event.
//!
//! Every handler gets the event's data as parsed JSON (or the parse error)
//! and answers every ack: a payload that does not decode gets
//! `INVALID_PAYLOAD`, never silence.

use std::future::Future;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Weak};
use std::time::Instant;

use serde_json::Value;
use wecare_proto::{ErrorCode, event};
use wecare_sio::{Connected, DisconnectReason, Handshake, Incoming, Namespace, Refusal};

use super::ack;
use super::limits::{InFlight, Overload};
use super::reply::Reply;
use super::session::{Session, check_expiry};
use super::state::{AppState, SharedState};
use crate::clock::iso;
use crate::domain::auth::AuthError;
use crate::domain::fields::SentFields;
use crate::domain::validate::{self, Rejection};
use crate::ingest::Outcome;
use crate::stream::fanout::Command;
use crate::stream::resume::Claim;
use crate::stream::watcher;
use crate::transport::events_page::{PageReader, SyncQuery};
use wecare_proto::payload::{ErrorAck, OkStatus, RefreshOk};

/// A client's socket of `/locations`, with its authenticated session.
pub(crate) type Sock = wecare_sio::Socket<Arc<Session>>;

/// The Socket.IO server of `/locations`.
pub(crate) type Io = wecare_sio::Server<Locations>;

/// The namespace's handlers. It holds the state weakly: the state holds
/// the server, which holds this.
#[derive(Debug)]
pub(crate) struct Locations {
    pub(crate) app: Weak<AppState>,
}

/// An event's data: its first argument as JSON, or why it is not.
type Data = Result<Value, serde_json::Error>;

/// `auth.token`, else the `token` query parameter.
fn handshake_token(auth: Option<&Value>, query: &str) -> Option<String> {
    if let Some(Value::String(t)) = auth.and_then(|a| a.get("token")) {
        return Some(t.clone());
    }
    query.split('&').find_map(|kv| kv.strip_prefix("token=")).map(str::to_string)
}

/// The handshake: a refusal becomes `connect_error` with exactly the
/// contract's message (the `Display` of [`AuthError`]). A watcher's
/// recovery, when it asks for one, happens here: its missed events go out
/// before the CONNECT reply.
async fn authenticate(
    app: SharedState,
    socket: Sock,
    handshake: Handshake,
) -> Result<Connected<Arc<Session>>, AuthError> {
    let auth: Option<Value> = handshake.auth.and_then(|a| serde_json::from_str(a.get()).ok());
    let Some(token) = handshake_token(auth.as_ref(), &handshake.query) else {
        app.metrics.handshake_refusals.fetch_add(1, Relaxed);
        return Err(AuthError::Required);
    };
    let principal = match super::revocation::authorize(&app, &token).await {
        Ok(principal) => principal,
        Err(e) => {
            app.metrics.handshake_refusals.fetch_add(1, Relaxed);
            return Err(e);
        }
    };
    let watcher = principal.is_watcher();
    let closed = app.stream.stop.child_token();
    let session = Arc::new(Session::new(principal, token, app.config.jwt_leeway_secs, closed));
    if !watcher {
        return Ok(Connected { data: session, pid: None });
    }
    let claim = Claim::from_auth(auth.as_ref());
    let stream_id = app.stream.log.stream_id().to_string();
    // `auth.lastSeq` is the project's own resume: it wins.
    let asked = if claim.last_seq.is_none() { super::recovery::requested(auth.as_ref(), &stream_id) } else { None };
    if let Some(asked) = asked
        && recover(&app, &socket, &session, &asked).await
    {
        return Ok(Connected { data: session, pid: Some(asked.pid) });
    }
    let head = *app.stream.head.borrow();
    if !session.closed.is_cancelled() && session.watcher_pending() {
        session.set_claim(claim);
    }
    Ok(Connected { data: session, pid: Some(super::recovery::new_pid(&stream_id, head)) })
}

/// Sends a recovering watcher what it missed, and leaves it live: true when
/// it was recovered (events only). False when its position is out of reach
/// (older than retention, beyond the head) or over the user's read budget
/// — nothing was sent — or when
/// retention dropped events mid-way, so a snapshot was sent instead (its
/// watcher runs on then, and the socket gets a new `pid`).
async fn recover(app: &SharedState, socket: &Sock, session: &Arc<Session>, asked: &super::recovery::Request) -> bool {
    let missed = match app.stream.log.read_after(asked.after, 0).await {
        Ok(page) if !page.gap && asked.after <= page.head => page.head.0 - asked.after.0,
        Ok(_) => return false,
        Err(e) => {
            tracing::warn!(error = %e, "recovery not checked; a snapshot instead");
            return false;
        }
    };
    // The replay reads the storage every watcher's catch-up shares: it is
    // paid from the user's read budget, a read per page, like the pages of
    // `events:sync`. Over the budget: a snapshot instead.
    let pages = usize::try_from(missed).unwrap_or(usize::MAX) / watcher::PAGE + 1;
    if app.reads.take_n(&session.principal.subject, pages).is_err() {
        return false;
    }
    let (live, recovered) = tokio::sync::oneshot::channel();
    let claim = Claim { last_seq: Some(asked.after), stream_id: Some(app.stream.log.stream_id().to_string()) };
    let sink = Arc::new(super::watcher_sink::SocketSink(socket.clone()));
    session.watcher_started();
    watcher::spawn(&app.stream, sink, claim, watcher::Start::Recover { live }, session.closed.clone());
    tokio::select! {
        r = recovered => r.unwrap_or(false),
        () = session.closed.cancelled() => false,
    }
}

impl Namespace for Locations {
    type Data = Arc<Session>;

    // Not an `async fn`: the future must not borrow `self` ('static).
    #[allow(clippy::manual_async_fn)]
    fn connect(
        &self,
        socket: Sock,
        handshake: Handshake,
    ) -> impl Future<Output = Result<Connected<Arc<Session>>, Refusal>> + Send + 'static {
        let app = self.app.upgrade();
        async move {
            let Some(app) = app else { return Err(Refusal { message: "server is shutting down".into() }) };
            authenticate(app, socket, handshake).await.map_err(|e| Refusal { message: e.to_string() })
        }
    }

    fn joined(&self, socket: &Sock) {
        if let Some(app) = self.app.upgrade() {
            tokio::spawn(on_connect(socket.clone(), app));
        }
    }

    fn event(&self, socket: &Sock, ev: Incoming<'_>) {
        let Some(app) = self.app.upgrade() else { return };
        let (s, reply) = (socket.clone(), Reply::new(socket.clone(), ev.ack_id));
        let known = matches!(
            ev.name,
            event::LOCATION_UPDATE
                | event::LOCATION_BATCH
                | event::DRIVER_STATUS
                | event::DRIVER_STATUS_UPDATE
                | event::EVENTS_SYNC
                | event::AUTH_REFRESH
        );
        // Admitted here, before any task is spawned: a socket that floods
        // past its bounds costs a refusal, not a task per event. A refused
        // unknown event is not answered.
        let Ok(slot) = admit(&app, &s, known.then(|| reply.clone())) else { return };
        let text = ev.data.unwrap_or("null");
        if ev.name == event::LOCATION_UPDATE {
            // The hot path: the fields straight from the text, no `Value`.
            let sent = SentFields::from_json(text);
            return drop(tokio::spawn(on_location_update(s, sent, reply, app, slot)));
        }
        let data: Data = serde_json::from_str(text);
        match ev.name {
            event::LOCATION_BATCH => drop(tokio::spawn(on_location_batch(s, data, reply, app, slot))),
            event::DRIVER_STATUS | event::DRIVER_STATUS_UPDATE => {
                drop(tokio::spawn(on_driver_status(s, data, reply, app, slot)))
            }
            event::EVENTS_SYNC => drop(tokio::spawn(on_events_sync(s, data, reply, app, slot))),
            event::AUTH_REFRESH => drop(tokio::spawn(on_auth_refresh(s, data, reply, app, slot))),
            // Unknown events: an error ack when one was asked for, else ignored.
            _ => {
                let unknown = ErrorAck::new(ErrorCode::InvalidPayload, "unknown event");
                answered(&app, reply.send(&unknown, None));
            }
        }
    }

    fn timer(&self, socket: &Sock) {
        if let (Some(app), Some(session)) = (self.app.upgrade(), session_of(socket)) {
            check_expiry(socket, &session, app.config.auth_expiry_warning);
        }
    }

    fn disconnect(&self, socket: &Sock, reason: DisconnectReason) {
        if let Some(app) = self.app.upgrade() {
            tokio::spawn(on_disconnect(socket.clone(), reason, app));
        }
    }
}

fn session_of(s: &Sock) -> Option<Arc<Session>> {
    s.data().cloned()
}

async fn on_connect(s: Sock, app: SharedState) {
    let Some(session) = session_of(&s) else {
        let _ = s.disconnect();
        return;
    };
    let p = &session.principal;
    // The disconnect handler may already have run (a socket that closed at
    // once): then there is nothing to set up, and nothing it would undo.
    // A driver's socket is reported open as it joins, so that a disconnect
    // (another task) reports its close after it, never before (the counts
    // would be left one too high).
    let joined = session.mark_joined(|| {
        if let Some(driver) = p.driver_id() {
            app.metrics.connections_drivers.fetch_add(1, Relaxed);
            app.presence.opened(driver.clone());
        }
    });
    if !joined {
        return;
    }
    super::peers::admit(&app, &p.subject, session.opened_at, &s).await;

    if let Some(driver) = p.driver_id() {
        tracing::debug!(sid = %s.id(), driver = ?driver.as_str(), "driver connected");
    } else {
        app.metrics.connections_watchers.fetch_add(1, Relaxed);
        // A recovered watcher's stream already runs (it started before the
        // CONNECT reply).
        if let Some(claim) = session.take_claim() {
            tracing::debug!(sid = %s.id(), subject = ?p.subject, ?claim, "watcher connected");
            let sink = Arc::new(super::watcher_sink::SocketSink(s.clone()));
            watcher::spawn(&app.stream, sink, claim, watcher::Start::Resume, session.closed.clone());
        } else {
            tracing::debug!(sid = %s.id(), subject = ?p.subject, "watcher connected (recovered)");
        }
    }
    check_expiry(&s, &session, app.config.auth_expiry_warning);
    super::revocation::watch_socket(&app, s.clone(), Arc::clone(&session));
}

async fn on_disconnect(s: Sock, reason: DisconnectReason, app: SharedState) {
    let Some(session) = session_of(&s) else {
        return;
    };
    session.closed.cancel();
    let driver = session.principal.driver_id();
    let joined = session.mark_left(|| {
        if let Some(driver) = driver {
            app.metrics.connections_drivers.fetch_sub(1, Relaxed);
            app.presence.closed(driver.clone());
        }
    });
    if !joined {
        return;
    }
    super::peers::left(&app, &session.principal.subject, &s).await;
    if driver.is_none() {
        app.metrics.connections_watchers.fetch_sub(1, Relaxed);
        let _ = app.stream.fanout.try_send(Command::Forget);
    }
    tracing::debug!(sid = %s.id(), ?reason, "socket disconnected");
}

/// Takes an event of `s` within its bounds ([`super::limits`]), or answers
/// the refusal itself (through `reply`, if given) and closes a socket that
/// keeps flooding.
fn admit(app: &SharedState, s: &Sock, reply: Option<Reply>) -> Result<super::limits::InFlight, ()> {
    let Some(session) = session_of(s) else { return Err(()) };
    match session.limits.admit(Instant::now()) {
        Ok(slot) => Ok(slot),
        Err(over) => {
            overloaded(app, s, &session, reply, over);
            Err(())
        }
    }
}

fn overloaded(app: &SharedState, s: &Sock, session: &Session, reply: Option<Reply>, over: Overload) {
    let r = over.rejection();
    app.metrics.rejected(r.code);
    if let Some(reply) = reply {
        answered(app, reply.send(&ack::refusal(&r), Some(&r)));
    }
    if over == Overload::Abusive && !session.is_revoked() {
        app.metrics.abusive_sockets.fetch_add(1, Relaxed);
        tracing::warn!(sid = %s.id(), subject = ?session.principal.subject, "a socket kept flooding past its bounds; closed");
        if s.disconnect() != wecare_sio::Write::Sent {
            // Its queue is full: it cannot be told, so it is dropped.
            s.close_now();
        }
    }
}

/// Counts an answer that could not be written (the socket's queue was full).
fn answered(app: &SharedState, sent: bool) {
    if !sent {
        app.metrics.replies_dropped.fetch_add(1, Relaxed);
    }
}

/// The session, unless its token has expired (then the socket is closed).
fn live_session(s: &Sock) -> Result<Arc<Session>, Rejection> {
    let session = session_of(s).ok_or(Rejection::new(ErrorCode::AuthRequired, "no session"))?;
    if session.is_expired() {
        // The expiry clock may not have fired yet: end the session now.
        super::session::expire(s, &session);
        return Err(Rejection::new(ErrorCode::TokenExpired, "Token expired"));
    }
    Ok(session)
}

fn respond_outcome(app: &SharedState, reply: Reply, outcome: &Outcome) {
    answered(app, reply.send(&ack::result(outcome), outcome.as_ref().err()));
}

/// Answers a refusal decided here at the edge (ingest counts its own).
fn refuse(app: &SharedState, reply: Reply, r: &Rejection) {
    app.metrics.rejected(r.code);
    answered(app, reply.send(&ack::refusal(r), Some(r)));
}

/// An outcome refused here at the edge, counted like ingest's.
fn refused_here(app: &SharedState, r: Rejection) -> Outcome {
    app.metrics.rejected(r.code);
    Err(r)
}

const NOT_JSON: Rejection = Rejection::new(ErrorCode::InvalidPayload, "payload is not valid JSON");
/// Shutdown started after the event arrived: not taken, so retrying it
/// (here after a restart, or on another node) stores it once.
pub(crate) const SHUTTING_DOWN: Rejection = Rejection::new(ErrorCode::Unavailable, "server is shutting down; retry");

async fn on_location_update(
    s: Sock,
    sent: Result<Result<SentFields, Rejection>, Rejection>,
    reply: Reply,
    app: SharedState,
    _slot: InFlight,
) {
    let started = Instant::now();
    let accepting = app.drain.accept();
    let outcome = match (live_session(&s), sent) {
        _ if accepting.is_none() => refused_here(&app, SHUTTING_DOWN),
        (Err(r), _) | (Ok(_), Err(r)) => refused_here(&app, r),
        (Ok(session), Ok(sent)) => app.ingest.fix(&session.principal, sent).await,
    };
    respond_outcome(&app, reply, &outcome);
    app.metrics.ack_latency.observe(started.elapsed());
    drop(accepting);
}

async fn on_location_batch(s: Sock, data: Data, reply: Reply, app: SharedState, _slot: InFlight) {
    let started = Instant::now();
    let Some(_accepting) = app.drain.accept() else {
        return refuse(&app, reply, &SHUTTING_DOWN);
    };
    let session = match live_session(&s) {
        Ok(session) => session,
        Err(r) => return refuse(&app, reply, &r),
    };
    if session.principal.driver_id().is_none() {
        let r = Rejection::new(ErrorCode::Forbidden, "only drivers may send this");
        return refuse(&app, reply, &r);
    }
    let items = match data.as_ref().map_err(validate::unparsable).and_then(validate::batch_items) {
        Ok(items) => items,
        Err(r) => return refuse(&app, reply, &r),
    };
    let outcomes = app.ingest.fixes(&session.principal, items.iter().map(SentFields::from_value).collect()).await;
    let first_failure = outcomes.iter().find_map(|o| o.as_ref().err());
    answered(&app, reply.send(&ack::batch(&outcomes), first_failure));
    app.metrics.ack_latency.observe(started.elapsed());
}

async fn on_driver_status(s: Sock, data: Data, reply: Reply, app: SharedState, _slot: InFlight) {
    let accepting = app.drain.accept();
    let outcome = match (live_session(&s), data) {
        _ if accepting.is_none() => refused_here(&app, SHUTTING_DOWN),
        (Err(r), _) => refused_here(&app, r),
        (Ok(_), Err(_)) => refused_here(&app, NOT_JSON),
        (Ok(session), Ok(v)) => app.ingest.status(&session.principal, &v).await,
    };
    respond_outcome(&app, reply, &outcome);
    drop(accepting);
}

async fn on_events_sync(s: Sock, data: Data, reply: Reply, app: SharedState, _slot: InFlight) {
    let session = match live_session(&s) {
        Err(r) => return refuse(&app, reply, &r),
        Ok(session) if !session.principal.is_watcher() => {
            return refuse(&app, reply, &Rejection::new(ErrorCode::Forbidden, "only watchers may read the stream"));
        }
        Ok(session) => session,
    };
    // One page at a time per socket, and the user's read budget.
    let turn = match session.limits.sync_turn() {
        Ok(turn) => turn,
        Err(over) => return overloaded(&app, &s, &session, Some(reply), over),
    };
    if let Err(r) = app.reads.take(&session.principal.subject) {
        return refuse(&app, reply, &r);
    }
    let result = match data.as_ref().map_err(|_| NOT_JSON).and_then(SyncQuery::from_json) {
        Err(r) => Err(r),
        Ok(q) => PageReader::read(app.stream.log.as_ref(), &q)
            .await
            .map_err(|_| Rejection::new(ErrorCode::Unavailable, "storage unavailable")),
    };
    // The turn ends before the answer goes out: a client that sends its next
    // `events:sync` as soon as it has this page must find the turn free.
    drop(turn);
    match result {
        Ok(page) => answered(&app, reply.send(&page, None)),
        Err(r) => refuse(&app, reply, &r),
    }
}

async fn on_auth_refresh(s: Sock, data: Data, reply: Reply, app: SharedState, _slot: InFlight) {
    let Some(session) = session_of(&s) else {
        return;
    };
    if session.is_expired() {
        // Too late: the socket is being closed (contract §2).
        let late = Rejection::new(ErrorCode::TokenExpired, "Token expired");
        super::session::expire(&s, &session);
        return refuse(&app, reply, &late);
    }
    let token = data.ok().and_then(|v| v.get("token").and_then(Value::as_str).map(str::to_string));
    let verified = match &token {
        None => Err(AuthError::Required),
        Some(t) => super::revocation::authorize(&app, t).await,
    };
    let refused = match (verified, token) {
        (Ok(p), Some(token)) if session.principal.same_identity(&p) => {
            session.refresh(token, p.expires_at);
            let ok = RefreshOk { status: OkStatus::Ok, expires_at: iso(p.expires_at.saturating_mul(1000)) };
            answered(&app, reply.send(&ok, None));
            // The clock now runs to the new `exp`.
            return check_expiry(&s, &session, app.config.auth_expiry_warning);
        }
        (Ok(_), _) => Rejection::new(ErrorCode::Forbidden, "the new token is for another identity or role"),
        (Err(AuthError::Expired), _) => Rejection::new(ErrorCode::TokenExpired, "Token expired"),
        (Err(AuthError::Required), _) => Rejection::new(ErrorCode::InvalidToken, "token is required"),
        (Err(AuthError::Forbidden), _) => Rejection::new(ErrorCode::Forbidden, "Forbidden"),
        (Err(AuthError::Invalid), _) => Rejection::new(ErrorCode::InvalidToken, "Invalid token"),
    };
    refuse(&app, reply, &refused);
}
