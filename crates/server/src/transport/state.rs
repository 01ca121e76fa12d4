//! [`AppState`]: what every handler shares, built once by `serve`. It lives
//! with the handlers (it holds transport parts: the Socket.IO server, read
//! budgets, relayed deliveries); the layers below never see it.

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
    /// Revocations and the backend's token checks.
    pub(crate) gate: crate::gate::Gate,
    pub(crate) ingest: Ingest,
    pub(crate) stream: Arc<StreamDeps>,
    pub(crate) metrics: Arc<Metrics>,
    /// This node's part in the cluster (a cluster of one on SQLite).
    pub(crate) cluster: Arc<dyn crate::cluster::Cluster>,
    pub(crate) presence: crate::presence::Presence,
    /// Relayed notifications waiting for other nodes' counts.
    pub(crate) pending: super::peers::PendingDeliveries,
    /// Shutdown: whether events are still taken, and which are in flight.
    pub(crate) drain: crate::shutdown::Drain,
    /// Every user's read budget (stream pages, snapshots, tracks).
    pub(crate) reads: super::limits::ReadBudget,
    /// Set once the Socket.IO server is built (it needs the state first).
    pub(crate) io: std::sync::OnceLock<Arc<super::socket::Io>>,
}

pub(crate) type SharedState = Arc<AppState>;
