//! [`ServerConfig`]: every setting of the server, validated once by the
//! binary (from flags and the contract's environment variables) and passed
//! in as a value; the library never reads the environment itself.

use std::path::PathBuf;
use std::time::Duration;

/// Settings of one server instance. `Default` is the contract's defaults
/// with an empty secret (callers must set one).
#[derive(Clone)]
pub struct ServerConfig {
    /// Folder of the embedded store. Defaults to `./data`.
    pub data_dir: PathBuf,
    /// `postgres://…`: store the stream in PostgreSQL, shared with any
    /// number of nodes, instead of the embedded store. Defaults to `None`.
    pub database_url: Option<String>,
    /// HS256 key of access tokens.
    pub jwt_secret: Vec<u8>,
    /// Origins allowed by CORS and for websocket upgrades.
    pub allowed_origins: Vec<String>,
    /// Roles that receive the stream (lower case). Defaults to
    /// `officer, admin, radio_center, executive, developer`.
    pub watcher_roles: Vec<String>,
    /// Seconds of grace on `exp`/`nbf`. Defaults to 0.
    pub jwt_leeway_secs: u64,
    /// Engine.IO ping interval. Defaults to 25 s.
    pub ping_interval: Duration,
    /// Engine.IO ping timeout. Defaults to 20 s.
    pub ping_timeout: Duration,
    /// Sustained fixes per second per driver. Defaults to 20.
    pub rate_limit_per_sec: u32,
    /// How long a driver's last socket must be gone before it is offline.
    /// Defaults to 15 s.
    pub presence_grace: Duration,
    /// How long before `exp` a socket is sent `auth:expiring`. Defaults to 60 s.
    pub auth_expiry_warning: Duration,
    /// How long events are kept in the stream. Defaults to 24 h.
    pub retention: Duration,
    /// Service secret of `POST /api/realtime/notify`; the route is off when `None`.
    pub notify_secret: Option<String>,
    /// Folder of the built Map Command page served at `/`; `None` serves a
    /// hint instead. Defaults to `None` (the binary sets `web/dist`).
    pub web_dir: Option<PathBuf>,
    /// How long a new connection may take to join `/locations` (send its
    /// CONNECT with a token) before it is closed. Defaults to 10 s.
    pub handshake_timeout: Duration,
    /// Sessions open at once that have not joined `/locations` yet; one
    /// more handshake is answered 503. Defaults to 10 000.
    pub max_pending_sessions: usize,
    /// Sockets one user may hold open; the oldest is closed beyond it.
    /// Defaults to 5.
    pub max_connections_per_user: usize,
    /// How long a shutdown may take to finish the accepted events and close
    /// the sockets (contract §9). Defaults to 10 s.
    pub shutdown_grace: Duration,
    /// Position forwarding to the WeCare backend (contract §10); off when
    /// `None`. Defaults to `None`.
    pub forward: Option<crate::forward::ForwardConfig>,
    /// Token checks with the WeCare backend (contract §10); off when
    /// `None`. Defaults to `None`.
    pub auth_check: Option<crate::gate::AuthCheckConfig>,
    /// Most calls a minute to the WeCare backend, forwards and token checks
    /// together (contract v1.3 §10). Defaults to 90.
    pub backend_max_calls_per_min: u32,
    /// Most open TCP connections; one more is answered 503 and closed.
    /// Defaults to 0: the process's file-descriptor limit less a reserve.
    pub max_connections: usize,
    /// How long a request head may take to arrive, and a keep-alive
    /// connection may sit idle between requests. Defaults to 10 s.
    pub header_read_timeout: Duration,
    /// Frames a socket may have queued unsent; a watcher that lets it fill
    /// falls behind (and is caught up from storage). It must hold a live
    /// delivery round with room to spare. Its memory is taken only as it
    /// fills. Defaults to 2048 (not an environment variable: tests lower it).
    pub socket_queue: usize,
}

/// The defaults, once, in the units of the flags and environment variables
/// that set them (ms, hours, comma-separated lists): `ServerConfig::default()`
/// and the binary's flags both read them, so the two cannot drift apart.
pub mod defaults {
    /// `DATA_DIR`.
    pub const DATA_DIR: &str = "./data";
    /// `WATCHER_ROLES`: the contract's watcher roles.
    pub const WATCHER_ROLES: &str = "officer,admin,radio_center,executive,developer";
    /// `ALLOWED_ORIGINS` outside production: the local dev servers.
    pub const DEV_ORIGINS: &str = "http://localhost:5173,http://localhost:5174,http://localhost:3000";
    /// `JWT_LEEWAY_SECONDS`.
    pub const JWT_LEEWAY_SECONDS: u64 = 0;
    /// `PING_INTERVAL_MS`.
    pub const PING_INTERVAL_MS: u64 = 25_000;
    /// `PING_TIMEOUT_MS`.
    pub const PING_TIMEOUT_MS: u64 = 20_000;
    /// `RATE_LIMIT_PER_SEC`.
    pub const RATE_LIMIT_PER_SEC: u32 = 20;
    /// `PRESENCE_GRACE_MS`.
    pub const PRESENCE_GRACE_MS: u64 = 15_000;
    /// `AUTH_EXPIRY_WARNING_MS`.
    pub const AUTH_EXPIRY_WARNING_MS: u64 = 60_000;
    /// `RETENTION_HOURS`.
    pub const RETENTION_HOURS: f64 = 24.0;
    /// `HANDSHAKE_TIMEOUT_MS`.
    pub const HANDSHAKE_TIMEOUT_MS: u64 = 10_000;
    /// `MAX_PENDING_SESSIONS`: sessions not yet joined. A legitimate
    /// session is pending for about one round trip (plus its token check),
    /// so even a whole fleet reconnecting at once stays far below it.
    pub const MAX_PENDING_SESSIONS: usize = 10_000;
    /// `MAX_CONNECTIONS_PER_USER`.
    pub const MAX_CONNECTIONS_PER_USER: usize = 5;
    /// `SHUTDOWN_GRACE_MS`.
    pub const SHUTDOWN_GRACE_MS: u64 = 10_000;
    /// `FORWARD_METHOD`.
    pub const FORWARD_METHOD: &str = "PUT";
    /// `FORWARD_MIN_INTERVAL_MS` (v1.3: the deployed Map moves from socket
    /// events and polls only every 10 s; the backend keeps a row per forward).
    pub const FORWARD_MIN_INTERVAL_MS: u64 = 10_000;
    /// `FORWARD_TOKEN_ROLE`: the least of the roles the WeCare backend
    /// admits to its driver-locations route.
    pub const FORWARD_TOKEN_ROLE: &str = "driver";
    /// `BACKEND_MAX_CALLS_PER_MIN`: the WeCare backend allows 100 requests a
    /// minute per client address on all of `/api`; 90 leaves it a margin.
    pub const BACKEND_MAX_CALLS_PER_MIN: u32 = 90;
    /// `MAX_CONNECTIONS`: 0 = the file-descriptor limit less a reserve.
    pub const MAX_CONNECTIONS: usize = 0;
    /// `HEADER_READ_TIMEOUT_MS`.
    pub const HEADER_READ_TIMEOUT_MS: u64 = 10_000;
    /// `AUTH_CHECK_INTERVAL_MS`.
    pub const AUTH_CHECK_INTERVAL_MS: u64 = 60_000;
    /// `AUTH_CHECK_FAIL`.
    pub const AUTH_CHECK_FAIL: &str = "open";
}

/// Splits a comma-separated list, trimming items and dropping empty ones.
pub fn split_list(s: &str) -> Vec<String> {
    s.split(',').map(str::trim).filter(|x| !x.is_empty()).map(str::to_string).collect()
}

impl Default for ServerConfig {
    fn default() -> Self {
        use defaults as d;
        Self {
            data_dir: PathBuf::from(d::DATA_DIR),
            database_url: None,
            jwt_secret: Vec::new(),
            allowed_origins: split_list(d::DEV_ORIGINS),
            watcher_roles: split_list(d::WATCHER_ROLES),
            jwt_leeway_secs: d::JWT_LEEWAY_SECONDS,
            ping_interval: Duration::from_millis(d::PING_INTERVAL_MS),
            ping_timeout: Duration::from_millis(d::PING_TIMEOUT_MS),
            rate_limit_per_sec: d::RATE_LIMIT_PER_SEC,
            presence_grace: Duration::from_millis(d::PRESENCE_GRACE_MS),
            auth_expiry_warning: Duration::from_millis(d::AUTH_EXPIRY_WARNING_MS),
            retention: Duration::from_secs_f64(d::RETENTION_HOURS * 3600.0),
            notify_secret: None,
            max_connections_per_user: d::MAX_CONNECTIONS_PER_USER,
            handshake_timeout: Duration::from_millis(d::HANDSHAKE_TIMEOUT_MS),
            max_pending_sessions: d::MAX_PENDING_SESSIONS,
            web_dir: None,
            shutdown_grace: Duration::from_millis(d::SHUTDOWN_GRACE_MS),
            forward: None,
            auth_check: None,
            backend_max_calls_per_min: d::BACKEND_MAX_CALLS_PER_MIN,
            max_connections: d::MAX_CONNECTIONS,
            header_read_timeout: Duration::from_millis(d::HEADER_READ_TIMEOUT_MS),
            socket_queue: crate::stream::fanout::SOCKET_QUEUE,
        }
    }
}

impl std::fmt::Debug for ServerConfig {
    // Secrets stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("data_dir", &self.data_dir)
            .field("database", &self.database_url.as_ref().map(|_| "postgres"))
            .field("allowed_origins", &self.allowed_origins)
            .field("watcher_roles", &self.watcher_roles)
            .field("jwt_leeway_secs", &self.jwt_leeway_secs)
            .field("ping_interval", &self.ping_interval)
            .field("ping_timeout", &self.ping_timeout)
            .field("rate_limit_per_sec", &self.rate_limit_per_sec)
            .field("presence_grace", &self.presence_grace)
            .field("auth_expiry_warning", &self.auth_expiry_warning)
            .field("retention", &self.retention)
            .field("notify", &self.notify_secret.is_some())
            .field("max_connections_per_user", &self.max_connections_per_user)
            .field("max_pending_sessions", &self.max_pending_sessions)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("forward", &self.forward)
            .field("auth_check", &self.auth_check)
            .field("backend_max_calls_per_min", &self.backend_max_calls_per_min)
            .field("max_connections", &self.max_connections)
            .field("header_read_timeout", &self.header_read_timeout)
            .field("socket_queue", &self.socket_queue)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_trimmed() {
        assert_eq!(split_list(" a, b ,,c "), vec!["a", "b", "c"]);
    }
}
