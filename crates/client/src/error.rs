//! [`ClientError`]: everything that can go wrong when connecting or emitting.

/// An error of the socket client.
///
/// Match on the variant, never on the message text: the text is for humans
/// and may change.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server refused the namespace connection (`connect_error`); `message`
    /// is the server's `err.message`, e.g. `"Invalid token"`.
    #[error("connection refused by the server: {message}")]
    ConnectRefused {
        /// The server's `err.message`, verbatim.
        message: String,
    },
    /// The websocket upgrade was answered with a non-101 HTTP status (e.g. 403
    /// for a refused `Origin`).
    #[error("websocket upgrade refused with HTTP status {status}")]
    HttpStatus {
        /// The HTTP status code of the refusal.
        status: u16,
    },
    /// The connect handshake or an ack did not complete in time.
    #[error("timed out")]
    Timeout,
    /// The connection is closed (or closed while the call was waiting).
    #[error("connection closed")]
    Closed,
    /// A socket-level I/O error.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// A websocket-level error other than I/O (framing, size limits).
    #[error("websocket error: {0}")]
    WebSocket(String),
    /// The server sent something this client does not understand.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The [`ConnectOptions`](crate::ConnectOptions) are unusable (bad URL,
    /// unsupported scheme, invalid header).
    #[error("invalid options: {0}")]
    InvalidOptions(String),
    /// A payload could not be serialized.
    #[error("json error: {0}")]
    Json(#[from] serde_json::Error),
}

impl From<tokio_tungstenite::tungstenite::Error> for ClientError {
    fn from(err: tokio_tungstenite::tungstenite::Error) -> Self {
        use tokio_tungstenite::tungstenite::Error as WsError;
        match err {
            WsError::Io(e) => Self::Io(e),
            WsError::Http(response) => Self::HttpStatus { status: response.status().as_u16() },
            WsError::ConnectionClosed | WsError::AlreadyClosed => Self::Closed,
            WsError::Url(e) => Self::InvalidOptions(e.to_string()),
            WsError::HttpFormat(e) => Self::InvalidOptions(e.to_string()),
            other => Self::WebSocket(other.to_string()),
        }
    }
}
