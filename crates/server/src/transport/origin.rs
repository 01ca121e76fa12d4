//! Cross-origin rules: CORS for polling and REST, and the `Origin` check of
//! websocket upgrades (browsers do not apply CORS to websockets, so the
//! server must; OWASP ASVS 4.4.2). Requests without `Origin` (native apps,
//! servers) are not refused for it.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, Method, Request, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// The allowed origins, exact match.
#[derive(Debug, Clone)]
pub(crate) struct Origins(Arc<Vec<String>>);

impl Origins {
    pub(crate) fn new(list: &[String]) -> Self {
        Self(Arc::new(list.to_vec()))
    }

    fn allows(&self, origin: &HeaderValue) -> bool {
        origin.to_str().is_ok_and(|o| self.0.iter().any(|a| a == o))
    }

    pub(crate) fn cors(&self) -> CorsLayer {
        let me = self.clone();
        CorsLayer::new()
            .allow_origin(AllowOrigin::predicate(move |o, _| me.allows(o)))
            .allow_credentials(true)
            .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
    }
}

/// Refuses a websocket upgrade whose `Origin` is not allowed.
pub(crate) async fn guard_ws_origin(State(origins): State<Origins>, req: Request<Body>, next: Next) -> Response {
    // Any upgrade, however its header is spelled ("WebSocket", a list, a
    // value the websocket layer would still take): the guard must not be
    // easier to pass than the upgrade it guards.
    let is_upgrade = req.headers().contains_key(header::UPGRADE);
    if is_upgrade
        && let Some(origin) = req.headers().get(header::ORIGIN)
        && !origins.allows(origin)
    {
        return (StatusCode::FORBIDDEN, "origin not allowed").into_response();
    }
    next.run(req).await
}
