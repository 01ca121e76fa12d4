//! Tokens at the edge, for their whole life (contract §2, §10): a token is
//! admitted at the handshake, on every REST call and on `auth:refresh`
//! only if its signature and `exp` hold and it is not revoked; a live
//! socket whose token is revoked — by `POST /api/realtime/revoke` or
//! `/logout` on any node, or at the WeCare backend (`AUTH_CHECK_URL`,
//! asked again every interval) — gets `auth:expired { reason: "revoked" }`
//! and is closed. A logout the backend reports is remembered here like a
//! revocation (until the token expires, across restarts and nodes): the
//! backend forgets its own logout list when it restarts.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use wecare_proto::payload;

use super::error::ApiError;
use super::session::{self, Session};
use super::state::SharedState;
use crate::clock::now_ms;
use crate::cluster::BusMessage;
use crate::domain::auth::{AuthError, Principal};
use crate::domain::revocation::{Revocation, Revoked, USER_REVOCATION_SECS, token_hash};
use crate::gate::{Purpose, RECHECK_POSTPONED, Refusal};

/// How often revocations are read back from the store, in case a message
/// from another node was missed.
const RELOAD_EVERY: Duration = Duration::from_secs(5);

fn now_secs() -> i64 {
    now_ms().div_euclid(1000)
}

/// The principal of `token`, if the gate admits it. A revoked (or, with
/// `AUTH_CHECK_FAIL=closed`, unverifiable) token is `Invalid token`.
pub(crate) async fn authorize(app: &SharedState, token: &str) -> Result<Principal, AuthError> {
    let principal = app.verifier.verify(token, now_secs())?;
    let hash = token_hash(token);
    match app.gate.admit(token, &hash, &principal, Purpose::Admission, &app.metrics).await {
        Ok(()) => Ok(principal),
        Err(Refusal::LoggedOutAtBackend { .. }) => {
            remember_logout(app, hash, &principal).await;
            Err(AuthError::Invalid)
        }
        Err(_) => Err(AuthError::Invalid),
    }
}

/// Remembers that the backend logged this token out: a revocation of the
/// token until its `exp`, kept in the store and announced to the other
/// nodes (which cut their sockets of it).
async fn remember_logout(app: &SharedState, hash: String, principal: &Principal) {
    let now = now_secs();
    let until = principal.expires_at.max(now);
    let revocation = Revocation { what: Revoked::Token(hash), at_secs: now, until_secs: until };
    if let Err(e) = remember(app, revocation).await {
        // Still refused here for the check interval (the gate's cache).
        tracing::warn!(error = %e, "a logout the backend reported is not stored");
    }
}

/// Stores `revocation`, applies it on this node at once (cutting the
/// sockets it refuses) and tells the other nodes. Returns the sockets cut here.
async fn remember(app: &SharedState, revocation: Revocation) -> Result<usize, crate::storage::StorageError> {
    app.stream.log.revoke(revocation.clone()).await?;
    app.gate.revocations.add(revocation);
    let disconnected = sweep(app);
    if let Err(e) = app.cluster.publish(BusMessage::Revoked).await {
        // The other nodes read the store within a few seconds anyway.
        tracing::warn!(error = %e, "revocation not announced to the other nodes");
    }
    Ok(disconnected)
}

/// While `socket` lives, asks the backend about its token every check
/// interval (answers are cached per token, so sockets sharing a token cost
/// one call).
pub(crate) fn watch_socket(app: &SharedState, socket: super::socket::Sock, session: Arc<Session>) {
    let Some(every) = app.gate.check_interval() else {
        return;
    };
    let app = Arc::clone(app);
    app.stream.tracker.clone().spawn(async move {
        let mut wait = every;
        loop {
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = session.closed.cancelled() => return,
            }
            wait = every;
            let (token, hash) = session.token();
            match app.gate.admit(&token, &hash, &session.principal, Purpose::Recheck, &app.metrics).await {
                Ok(()) => {}
                Err(Refusal::Postponed) => wait = RECHECK_POSTPONED,
                Err(Refusal::Revoked { at_ms }) => return session::cut(&socket, &session, at_ms, "revoked"),
                Err(Refusal::LoggedOutAtBackend { at_ms }) => {
                    session::cut(&socket, &session, at_ms, "revoked");
                    return remember_logout(&app, hash, &session.principal).await;
                }
                Err(Refusal::Unverifiable) => return session::cut(&socket, &session, now_ms(), "unverifiable"),
            }
        }
    });
}

/// Cuts this node's sockets whose tokens the store's revocations refuse.
fn sweep(app: &SharedState) -> usize {
    let Some(io) = app.io.get() else {
        return 0;
    };
    let mut cut = 0;
    for s in io.sockets() {
        let Some(session) = s.data().cloned() else {
            continue;
        };
        if session.is_revoked() {
            continue;
        }
        let (_, hash) = session.token();
        if let Some(at_ms) = app.gate.revoked_here(&hash, &session.principal) {
            session::cut(&s, &session, at_ms, "revoked");
            cut += 1;
        }
    }
    cut
}

/// Reads the revocations from the store and cuts the sockets they refuse.
pub(crate) async fn reload(app: &SharedState) {
    match app.stream.log.revocations(now_secs()).await {
        Ok(all) => {
            app.gate.revocations.replace(all);
            sweep(app);
        }
        Err(e) => tracing::warn!(error = %e, "revocations not read"),
    }
}

/// Loads the revocations (they survive restarts) before the server takes
/// its first connection, then keeps them current until it stops.
pub(crate) async fn start_reloader(app: &SharedState) {
    reload(app).await;
    let app = Arc::clone(app);
    app.stream.tracker.clone().spawn(async move {
        loop {
            tokio::select! {
                () = tokio::time::sleep(RELOAD_EVERY) => {}
                () = app.stream.stop.cancelled() => return,
            }
            reload(&app).await;
        }
    });
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RevokeBody {
    user_id: Option<Value>,
    token: Option<String>,
}

/// `POST /api/realtime/revoke` (`Authorization: Bearer <NOTIFY_SECRET>`):
/// `{ userId }` revokes every token of that user issued at or before this
/// second, `{ token }` that token; both until they expire, across restarts
/// and nodes.
pub(crate) async fn post_revoke(State(app): State<SharedState>, body: Bytes) -> Result<Json<impl Serialize>, ApiError> {
    let body: RevokeBody =
        serde_json::from_slice(&body).map_err(|_| ApiError::payload("expected { userId } or { token }"))?;
    let now = now_secs();
    let revocation = match (body.user_id, body.token) {
        (Some(Value::String(u)), None) if !u.is_empty() && u.len() <= 256 => {
            Revocation { what: Revoked::User(u), at_secs: now, until_secs: now + USER_REVOCATION_SECS }
        }
        (Some(Value::Number(n)), None) => {
            Revocation { what: Revoked::User(n.to_string()), at_secs: now, until_secs: now + USER_REVOCATION_SECS }
        }
        (None, Some(t)) if !t.trim().is_empty() && t.len() <= 8192 => {
            // Kept until the token would have expired (its `exp`, read
            // without trusting it: a forged one only costs a row).
            let until = token_exp(&t).unwrap_or(now + USER_REVOCATION_SECS).max(now);
            Revocation { what: Revoked::Token(token_hash(&t)), at_secs: now, until_secs: until }
        }
        _ => return Err(ApiError::payload("expected { userId } or { token }")),
    };
    let disconnected = remember(&app, revocation).await?;
    Ok(Json(payload::RevokedBody { status: payload::OkStatus::Ok, disconnected: disconnected as u64 }))
}

/// `POST /api/realtime/logout` with the user's own bearer (contract v1.3
/// §10): revokes that token at once — its sockets get `auth:expired
/// { reason: "revoked" }` — until it expires, across restarts and nodes.
/// No service secret: a token can only revoke itself. The user's other
/// tokens (another device) keep working. Logging out a token that is
/// already revoked is fine (200); an expired or forged one is a 401 like
/// any REST call.
pub(crate) async fn post_logout(
    State(app): State<SharedState>,
    headers: HeaderMap,
) -> Result<Json<impl Serialize>, ApiError> {
    let token = super::http::bearer_token(&headers).ok_or(AuthError::Required)?;
    let principal = app.verifier.verify(token, now_secs())?;
    let now = now_secs();
    let revocation =
        Revocation { what: Revoked::Token(token_hash(token)), at_secs: now, until_secs: principal.expires_at.max(now) };
    remember(&app, revocation).await?;
    Ok(Json(payload::LoggedOut { status: payload::OkStatus::Ok }))
}

/// A token's `exp` claim, read without checking the signature.
fn token_exp(token: &str) -> Option<i64> {
    use base64::Engine;
    let payload = token.trim().split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("exp")?.as_f64().map(|e| e as i64)
}
