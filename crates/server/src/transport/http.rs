//! REST routes (contract §6): the HTTP fallback for drivers and watchers,
//! and the health and metrics endpoints.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;
use tokio::time::Instant;
use wecare_proto::{ErrorCode, Seq};

use super::ack;
use super::error::{ApiError, refusal, rest_code};
use super::events_page::{EventsPage, PageReader, SyncQuery, nothing_new, parse_count};
use super::state::SharedState;
use crate::clock::parse_time;
use crate::domain::auth::{AuthError, Principal};
use crate::domain::fields::SentFields;
use crate::domain::validate::{self, Rejection};
use crate::transport::socket::SHUTTING_DOWN;
use wecare_proto::payload::{self, RefusedBatch};

/// Largest accepted body.
pub(crate) const MAX_BODY: usize = 1024 * 1024;
/// Longest long-poll.
const MAX_WAIT: Duration = Duration::from_secs(30);
/// Most fixes one track request returns.
const TRACK_LIMIT: usize = 10_000;

pub(crate) fn routes(state: SharedState) -> Router {
    let secret_layer = axum::middleware::from_fn_with_state(std::sync::Arc::clone(&state), require_secret);
    Router::new()
        .route("/api/driver-locations", post(post_locations))
        .route("/api/realtime/locations", post(post_locations))
        .route("/api/realtime/status", post(post_status))
        .route("/api/realtime/events", get(get_events))
        .route("/api/realtime/latest", get(get_latest))
        .route("/api/realtime/drivers/{driver_id}/track", get(get_track))
        // The service secret is checked before the body is read (and the
        // route is a 404 when no secret is set, whatever the body's size).
        .route("/api/realtime/notify", post(post_notify).route_layer(secret_layer.clone()))
        .route("/api/realtime/revoke", post(super::revocation::post_revoke).route_layer(secret_layer))
        .route("/api/realtime/logout", post(super::revocation::post_logout))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/", get(super::web::index))
        .route("/{*path}", get(super::web::asset))
        .fallback(|| async { ApiError::not_found() })
        .method_not_allowed_fallback(|| async {
            ApiError::status(StatusCode::METHOD_NOT_ALLOWED, ErrorCode::InvalidPayload, "method not allowed")
        })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// The principal of `Authorization: Bearer <token>`.
struct Bearer(Principal);

impl FromRequestParts<SharedState> for Bearer {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, app: &SharedState) -> Result<Self, ApiError> {
        let token = bearer_token(&parts.headers).ok_or(AuthError::Required)?;
        Ok(Self(super::revocation::authorize(app, token).await?))
    }
}

/// The token of `Authorization: Bearer <token>`.
pub(crate) fn bearer_token(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
}

impl Bearer {
    fn watcher(self) -> Result<Principal, ApiError> {
        if self.0.is_watcher() { Ok(self.0) } else { Err(forbidden()) }
    }

    fn driver(self) -> Result<Principal, ApiError> {
        if self.0.driver_id().is_some() { Ok(self.0) } else { Err(forbidden()) }
    }
}

fn forbidden() -> ApiError {
    ApiError::new(ErrorCode::Forbidden, "Forbidden")
}

/// Query parameters; a malformed query string is a JSON 400 like every error.
struct Params<T>(T);

impl<T: serde::de::DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| Self(v))
            .map_err(|_| ApiError::payload("malformed query string"))
    }
}

/// A JSON body: 413 over [`MAX_BODY`], 400 when it is not JSON.
struct JsonBody(Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::too_large()
            } else {
                ApiError::payload("unreadable body")
            }
        })?;
        // `1e400` is no JSON a double can hold: an out-of-range coordinate.
        serde_json::from_slice(&bytes).map(Self).map_err(|e| ApiError::from(&validate::unparsable(&e)))
    }
}

async fn post_locations(State(app): State<SharedState>, who: Bearer, JsonBody(body): JsonBody) -> Response {
    let Some(_accepting) = app.drain.accept() else {
        return ApiError::from(&SHUTTING_DOWN).into_response();
    };
    let who = match who.driver() {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    if body.get("updates").is_some() {
        let items = match validate::batch_items(&body) {
            Ok(items) => items,
            Err(r) => return ApiError::from(&r).into_response(),
        };
        let outcomes = app.ingest.fixes(&who, items.iter().map(SentFields::from_value).collect()).await;
        return Json(ack::batch(&outcomes)).into_response();
    }
    if !body.is_object() {
        return ApiError::payload("body must be one update or { updates: [...] }").into_response();
    }
    // One update: 200 with its result as the socket acks it; refused, the
    // HTTP status of its code (contract §6, v1.2), so a client that checks
    // only `response.ok` does not count a refused fix as delivered.
    let outcomes = app.ingest.fixes(&who, vec![SentFields::from_value(&body)]).await;
    match outcomes.first() {
        Some(Err(r)) => refusal(rest_code(r.code), &refused_batch(r, &outcomes)),
        _ => Json(ack::batch(&outcomes)).into_response(),
    }
}

/// `{ status: "error", code, message, results: [<the error item>] }`.
fn refused_batch(r: &Rejection, outcomes: &[crate::ingest::Outcome]) -> RefusedBatch {
    RefusedBatch {
        error: payload::ErrorAck::new(rest_code(r.code), r.message),
        results: outcomes.iter().map(ack::result).collect(),
    }
}

async fn post_status(State(app): State<SharedState>, who: Bearer, JsonBody(body): JsonBody) -> Response {
    let Some(_accepting) = app.drain.accept() else {
        return ApiError::from(&SHUTTING_DOWN).into_response();
    };
    let who = match who.driver() {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let outcome = app.ingest.status(&who, &body).await;
    match &outcome {
        Ok(_) => Json(ack::result(&outcome)).into_response(),
        Err(r) => refusal(r.code, &ack::result(&outcome)),
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventsParams {
    since: Option<String>,
    limit: Option<String>,
    wait_ms: Option<String>,
    stream_id: Option<String>,
}

fn count_param(v: Option<&String>, name: &str) -> Result<Option<u64>, ApiError> {
    v.map(|s| {
        parse_count(&Value::String(s.clone()))
            .ok_or_else(|| ApiError::payload(format!("{name} must be a non-negative integer")))
    })
    .transpose()
}

async fn get_events(
    State(app): State<SharedState>,
    who: Bearer,
    Params(params): Params<EventsParams>,
) -> Result<Json<EventsPage>, ApiError> {
    let who = who.watcher()?;
    app.reads.take(&who.subject).map_err(|r| ApiError::from(&r))?;
    let since = count_param(params.since.as_ref(), "since")?;
    let limit = count_param(params.limit.as_ref(), "limit")?;
    let wait =
        count_param(params.wait_ms.as_ref(), "waitMs")?.map_or(Duration::ZERO, Duration::from_millis).min(MAX_WAIT);
    let query = SyncQuery::new(since, limit, params.stream_id);
    let deadline = Instant::now() + wait;
    let mut head = app.stream.head.clone();
    loop {
        // Mark the head seen before reading, so a commit after the read wakes us.
        head.borrow_and_update();
        let page = PageReader::read(app.stream.log.as_ref(), &query).await?;
        if !nothing_new(&page) || Instant::now() >= deadline {
            return Ok(Json(page));
        }
        let woke = tokio::select! {
            r = head.changed() => r.is_ok(),
            () = tokio::time::sleep_until(deadline) => false,
            () = app.drain.requested().cancelled() => false,
        };
        if !woke {
            return Ok(Json(PageReader::read(app.stream.log.as_ref(), &query).await?));
        }
    }
}

async fn get_latest(State(app): State<SharedState>, who: Bearer) -> Result<Response, ApiError> {
    let who = who.watcher()?;
    let snap = app.stream.snapshots.get(app.stream.log.as_ref()).await?;
    // A snapshot costs reads by its size: a loop of them is a loop of big copies.
    let cost = snap.json.len() / super::limits::SNAPSHOT_BYTES_PER_READ;
    app.reads.take_n(&who.subject, cost).map_err(|r| ApiError::from(&r))?;
    // The shared encoding, as it is: no per-request serialization.
    Ok(([(header::CONTENT_TYPE, "application/json")], snap.json.clone()).into_response())
}

#[derive(Debug, Deserialize)]
struct TrackParams {
    from: Option<String>,
    to: Option<String>,
}

fn time_param(v: Option<&String>, name: &str) -> Result<Option<i64>, ApiError> {
    v.map(|s| {
        let as_json = s.parse::<i64>().map(Value::from).unwrap_or_else(|_| Value::String(s.clone()));
        parse_time(&as_json).ok_or_else(|| ApiError::payload(format!("{name} is not a time")))
    })
    .transpose()
}

async fn get_track(
    State(app): State<SharedState>,
    who: Bearer,
    Path(driver_id): Path<String>,
    Params(params): Params<TrackParams>,
) -> Result<Json<payload::Track<Vec<Box<RawValue>>>>, ApiError> {
    let who = who.watcher()?;
    app.reads.take(&who.subject).map_err(|r| ApiError::from(&r))?;
    let from = time_param(params.from.as_ref(), "from")?.unwrap_or(0);
    let to = time_param(params.to.as_ref(), "to")?.unwrap_or(i64::MAX);
    let driver = wecare_proto::DriverId::new(driver_id);
    let events = app.stream.log.track(driver.clone(), from, to, TRACK_LIMIT).await?;
    let fixes = events.iter().filter_map(|e| RawValue::from_string(e.json.get().to_string()).ok()).collect();
    Ok(Json(payload::Track { status: payload::OkStatus::Ok, driver_id: driver.as_str().to_string(), fixes }))
}

#[derive(Debug, Deserialize)]
struct NotifyBody {
    rooms: Vec<String>,
    event: String,
    #[serde(default)]
    data: Value,
}

/// Constant-time equality, so the service secret cannot be guessed byte by byte.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The service routes (notify, revoke) take `Authorization: Bearer
/// <NOTIFY_SECRET>`, checked before the body is read (a refused caller
/// learns nothing from its body); they are off (404) without the secret.
/// Refuses a request without the service secret before anything reads its
/// body (a route layer of the service routes).
async fn require_secret(State(app): State<SharedState>, req: Request, next: axum::middleware::Next) -> Response {
    match service_secret(&app, req.headers()) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

pub(crate) fn service_secret(app: &SharedState, headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
    let Some(secret) = app.config.notify_secret.as_deref() else {
        return Err(ApiError::not_found());
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(AuthError::Required)?;
    if !same_secret(presented.as_bytes(), secret.as_bytes()) {
        return Err(AuthError::Invalid.into());
    }
    Ok(())
}

/// `POST /api/realtime/notify`: the WeCare backend's best-effort pushes
/// (`notification:*`) to `user:<id>` / `role:<role>` rooms (contract §8).
async fn post_notify(State(app): State<SharedState>, body: Bytes) -> Result<Json<payload::Notified>, ApiError> {
    let body: NotifyBody =
        serde_json::from_slice(&body).map_err(|_| ApiError::payload("expected { rooms, event, data }"))?;
    if !body.event.starts_with("notification:") || body.event.len() > 64 {
        return Err(ApiError::payload("only notification:* events may be relayed"));
    }
    if body.rooms.is_empty() || body.rooms.len() > 100 || body.rooms.iter().any(|r| r.is_empty() || r.len() > 200) {
        return Err(ApiError::payload("rooms must hold 1 to 100 room names"));
    }
    // Encoded once; `delivered` counts the sockets it was written to, on
    // every node (a socket that closed meanwhile or whose send queue is
    // full is not).
    let data = serde_json::value::to_raw_value(&body.data).map_err(|_| ApiError::payload("data is not JSON"))?;
    let delivered = super::peers::notify(&app, body.rooms, body.event, data).await;
    Ok(Json(payload::Notified { status: payload::OkStatus::Ok, delivered: delivered as u64 }))
}

async fn healthz() -> Json<Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// What `GET /readyz` answers (and the `wecare_ready` gauge says).
fn is_ready(app: &SharedState) -> bool {
    app.stream.log.is_writable() && app.cluster.is_healthy() && !app.drain.is_draining()
}

async fn readyz(State(app): State<SharedState>) -> Response {
    let ready = is_ready(&app);
    let seq: Seq = app.stream.log.head();
    let body = serde_json::json!({ "status": if ready { "ok" } else { "unavailable" }, "seq": seq });
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body)).into_response()
}

async fn metrics(State(app): State<SharedState>) -> Response {
    let node = crate::metrics::NodeFacts {
        damaged_rows: app.stream.log.damaged_rows(),
        ready: is_ready(&app),
        data_dir_space: crate::metrics::disk_space(&app.config.data_dir),
        pending_sessions: app.io.get().map_or(0, |io| io.pending_sessions()),
        busy_handshakes: app.io.get().map_or(0, |io| io.busy_refusals()),
    };
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], app.metrics.render(&node)).into_response()
}
