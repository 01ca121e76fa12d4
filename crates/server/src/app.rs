//! [`AppState`]: what every handler shares, built once by `serve`.

use std::sync::Arc;

use crate::config::ServerConfig;
use crate::domain::auth::TokenVerifier;
use crate::ingest::Ingest;
use crate::metrics::Metrics;
use crate::stream::StreamDeps;

#[derive(Debug)]
pub(crate) struct AppState {
    pub(crate) config: ServerConfig,
    pub(crate) verifier: TokenVerifier,
    pub(crate) ingest: Ingest,
    pub(crate) stream: Arc<StreamDeps>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) connections: crate::transport::connections::Connections,
    /// Shutdown: whether events are still taken, and which are in flight.
    pub(crate) drain: crate::shutdown::Drain,
    /// Set once the Socket.io layer is built (the layer needs the state first).
    pub(crate) io: std::sync::OnceLock<socketioxide::SocketIo>,
}

pub(crate) type SharedState = Arc<AppState>;
