//! [`ConnectOptions`]: where and how to connect, per connection.

use std::time::Duration;

use crate::TlsConfig;

/// How [`SocketClient`](crate::SocketClient) hands server events to the
/// application.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum EventMode {
    /// [`ServerEvent::Event`](crate::ServerEvent::Event) with the first
    /// argument parsed into a `serde_json::Value`. Convenient; one JSON tree
    /// (several allocations) per event.
    #[default]
    Parsed,
    /// [`ServerEvent::Raw`](crate::ServerEvent::Raw): the frame is validated
    /// and the arguments located, but nothing is built; the consumer
    /// deserializes what it needs (e.g. only `id`). For high-rate consumers
    /// such as benchmark watchers.
    Raw,
}

/// Options of one connection.
///
/// Build with [`ConnectOptions::new`] and adjust the public fields.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// The server's base URL, `http://HOST:PORT` or, with TLS,
    /// `https://HOST[:PORT]` (`ws://` and `wss://` are accepted too; the
    /// default ports are 80 and 443). The Socket.IO path `/socket.io/` is
    /// appended.
    pub url: String,
    /// Which CAs are trusted for an `https://`/`wss://` URL. Defaults to
    /// [`TlsConfig::default`]: Mozilla's roots.
    pub tls: TlsConfig,
    /// The namespace to join, e.g. `"/locations"`.
    pub namespace: String,
    /// The handshake `auth` payload, e.g. `{"token": "..."}`; `null` sends none.
    pub auth: serde_json::Value,
    /// Upper bound for TCP connect, websocket upgrade and namespace connect
    /// together. Defaults to 10 s.
    pub connect_timeout: Duration,
    /// Extra HTTP headers on the upgrade request (e.g. `Origin`). Defaults to none.
    pub extra_headers: Vec<(String, String)>,
    /// Extra query parameters on the upgrade URL (e.g. `token`), percent-encoded
    /// by the client. Defaults to none.
    pub query: Vec<(String, String)>,
    /// How events are delivered. Defaults to [`EventMode::Parsed`].
    pub event_mode: EventMode,
    /// Capacity of the event channel. When it is full, the connection's reader
    /// waits for the application (backpressure): it reads no more frames, so
    /// acks and heartbeats wait too, and a server that sees its pings go
    /// unanswered for `pingTimeout` drops the connection. Defaults to 1024.
    pub event_buffer: usize,
}

impl ConnectOptions {
    /// Options for `url`, `namespace` and handshake `auth`, with the defaults
    /// documented on each field.
    pub fn new(url: impl Into<String>, namespace: impl Into<String>, auth: serde_json::Value) -> Self {
        Self {
            url: url.into(),
            tls: TlsConfig::default(),
            namespace: namespace.into(),
            auth,
            connect_timeout: Duration::from_secs(10),
            extra_headers: Vec::new(),
            query: Vec::new(),
            event_mode: EventMode::default(),
            event_buffer: 1024,
        }
    }

    /// Options for the WeCare namespace, [`wecare_proto::NAMESPACE`].
    pub fn locations(url: impl Into<String>, auth: serde_json::Value) -> Self {
        Self::new(url, wecare_proto::NAMESPACE, auth)
    }
}
