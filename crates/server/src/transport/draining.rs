//! While a shutdown drains (contract §9), a new Engine.IO session is
//! refused with 503: the stock client treats that as a failed attempt and
//! retries with backoff (this node after its restart, or another node). Open
//! sessions — websocket or long-polling — keep being served until the drain
//! has answered every accepted event and closed them.

use axum::body::Body;
use axum::extract::State;
use axum::http::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use wecare_proto::ErrorCode;

use super::error::ApiError;
use super::state::SharedState;

pub(crate) async fn refuse_new_sessions(State(app): State<SharedState>, req: Request<Body>, next: Next) -> Response {
    let new_session = req.uri().path().starts_with("/socket.io")
        && !req.uri().query().is_some_and(|q| q.split('&').any(|kv| kv.starts_with("sid=")));
    if new_session && app.drain.is_draining() {
        return ApiError::new(ErrorCode::Unavailable, "server is shutting down; retry").into_response();
    }
    next.run(req).await
}
