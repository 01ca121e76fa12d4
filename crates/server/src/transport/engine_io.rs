//! The Socket.IO server of `/locations` in the HTTP stack: built from the
//! configuration, and a middleware that hands it every Engine.IO request.
//!
//! It wraps the whole router, not a route: otherwise a catch-all route such
//! as the page's would take Engine.IO requests first.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::socket::{Io, Locations};
use super::state::AppState;

/// The server of `/locations`, answering through `app`'s handlers.
pub(crate) fn build(app: &Arc<AppState>) -> Arc<Io> {
    let c = &app.config;
    let config = wecare_sio::Config {
        path: "/socket.io/".into(),
        namespace: wecare_proto::NAMESPACE.into(),
        ping_interval: c.ping_interval,
        ping_timeout: c.ping_timeout,
        max_payload: super::http::MAX_BODY,
        connect_timeout: c.handshake_timeout,
        max_pending_sessions: c.max_pending_sessions,
        // It must hold a live delivery round with room to spare: a round
        // larger than the queue sends a watcher that reads at full speed to
        // the storage catch-up, which renders every event again for it alone.
        queue_frames: c.socket_queue.max(1),
        ..wecare_sio::Config::default()
    };
    wecare_sio::Server::new(config, Arc::new(Locations { app: Arc::downgrade(app) }))
}

/// Engine.IO requests go to the Socket.IO server; the rest to the router.
pub(crate) async fn route(State(io): State<Arc<Io>>, req: Request, next: Next) -> Response {
    if io.handles(req.uri().path()) {
        return io.handle(req).await.map(Body::new);
    }
    next.run(req).await
}
