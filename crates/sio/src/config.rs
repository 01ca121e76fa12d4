//! What a [`crate::Server`] needs to know.

use std::time::Duration;

/// The transport's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// The request path of Engine.IO (`/socket.io/`).
    pub path: String,
    /// The one namespace clients may join (`/locations`).
    pub namespace: String,
    /// How often the server pings.
    pub ping_interval: Duration,
    /// How long it waits for the pong before the session is dead.
    pub ping_timeout: Duration,
    /// The largest message (websocket) or POST body (polling), in bytes.
    pub max_payload: usize,
    /// How long a new session may take to join the namespace.
    pub connect_timeout: Duration,
    /// The most sessions open at once that have not joined yet (from the
    /// handshake until a join is accepted): one more handshake is answered
    /// `503` with `Retry-After`. Each ends by its connect timeout, but
    /// opening one costs no token, so without a bound a peer opening them
    /// faster than they time out grows the server without limit.
    pub max_pending_sessions: usize,
    /// The most frames a session's send queue holds.
    pub queue_frames: usize,
    /// A websocket's read buffer, in bytes: fixes are small; a large batch
    /// just takes more reads.
    pub ws_read_buffer: usize,
    /// How much a websocket gathers before it writes, in bytes. The
    /// library keeps that buffer at the largest size it ever reached for
    /// the connection's life, so it is kept small: a watcher after a burst
    /// (a catch-up) would otherwise hold up to twice 128 KiB for good. A
    /// write per 16 KiB is still about forty frames a call.
    pub ws_write_buffer: usize,
    /// How long a websocket the server closed may take to finish the close
    /// handshake before its connection is dropped: the stock client closes
    /// at once; one that ignores the close does not keep the connection.
    pub close_grace: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            path: "/socket.io/".into(),
            namespace: "/".into(),
            ping_interval: Duration::from_secs(25),
            ping_timeout: Duration::from_secs(20),
            max_payload: 1 << 20,
            connect_timeout: Duration::from_secs(45),
            max_pending_sessions: 10_000,
            queue_frames: 2048,
            ws_read_buffer: 256,
            ws_write_buffer: 16 * 1024,
            close_grace: Duration::from_secs(1),
        }
    }
}
