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
    /// The server's TLS certificate was refused. Nothing was sent: the
    /// connection ends in the handshake. Certificates are always verified;
    /// a server with a private CA needs that CA in the
    /// [`TlsConfig`](crate::TlsConfig).
    #[error("server certificate refused ({problem}): {detail}")]
    Certificate {
        /// What is wrong with it.
        problem: CertificateProblem,
        /// The TLS library's description, for humans.
        detail: String,
    },
    /// The TLS handshake failed for another reason than the certificate
    /// (no common protocol version or cipher suite, an alert from the server).
    #[error("tls error: {0}")]
    Tls(String),
    /// The [`ConnectOptions`](crate::ConnectOptions) or the
    /// [`TlsConfig`](crate::TlsConfig) are unusable (bad URL, unsupported
    /// scheme, invalid header, unreadable CA certificate).
    #[error("invalid options: {0}")]
    InvalidOptions(String),
    /// A payload could not be serialized.
    #[error("json error: {0}")]
    Json(#[from] serde_json::Error),
}

/// Why a server certificate was refused (see [`ClientError::Certificate`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CertificateProblem {
    /// Not issued by a trusted CA: a private CA that is not in the
    /// [`TlsConfig`](crate::TlsConfig), or a self-signed certificate.
    UnknownIssuer,
    /// Valid, but not for the host of the URL.
    NameMismatch,
    /// Past its validity period.
    Expired,
    /// Before its validity period (or this machine's clock is behind).
    NotYetValid,
    /// Revoked by its issuer.
    Revoked,
    /// Anything else (bad encoding, bad signature, wrong key usage, ...).
    Other,
}

impl std::fmt::Display for CertificateProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::UnknownIssuer => "not issued by a trusted CA",
            Self::NameMismatch => "not valid for this host name",
            Self::Expired => "expired",
            Self::NotYetValid => "not valid yet",
            Self::Revoked => "revoked",
            Self::Other => "invalid",
        })
    }
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
