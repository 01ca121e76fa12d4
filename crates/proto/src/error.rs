//! Stable error codes carried by acks, `error` events and REST bodies.

use serde::{Deserialize, Serialize};

/// A wire error code. The string form is what travels; `is_retryable` tells a
/// client whether sending the same message again can succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum ErrorCode {
    /// No token was presented.
    AuthRequired,
    /// Bad signature, format, algorithm or claims.
    InvalidToken,
    /// The token's `exp` is in the past.
    TokenExpired,
    /// A valid token that may not do this (role, or `driverId` spoofing).
    Forbidden,
    /// Not an object, wrong types, oversize, bad id, unknown event.
    InvalidPayload,
    /// Missing, non-finite or out-of-range coordinates.
    InvalidCoordinates,
    /// Over the per-driver rate.
    RateLimited,
    /// Storage could not commit.
    Unavailable,
    /// Storage could not commit: the code of an HTTP 503 (contract §6, v1.2).
    /// Socket acks and REST `results` items say [`ErrorCode::Unavailable`].
    StorageUnavailable,
}

impl ErrorCode {
    /// Every code, in a fixed order (for per-code tables such as metrics).
    pub const ALL: [ErrorCode; 9] = [
        Self::AuthRequired,
        Self::InvalidToken,
        Self::TokenExpired,
        Self::Forbidden,
        Self::InvalidPayload,
        Self::InvalidCoordinates,
        Self::RateLimited,
        Self::Unavailable,
        Self::StorageUnavailable,
    ];

    /// The code as it appears on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::AuthRequired => "AUTH_REQUIRED",
            Self::InvalidToken => "INVALID_TOKEN",
            Self::TokenExpired => "TOKEN_EXPIRED",
            Self::Forbidden => "FORBIDDEN",
            Self::InvalidPayload => "INVALID_PAYLOAD",
            Self::InvalidCoordinates => "INVALID_COORDINATES",
            Self::RateLimited => "RATE_LIMITED",
            Self::Unavailable => "UNAVAILABLE",
            Self::StorageUnavailable => "STORAGE_UNAVAILABLE",
        }
    }

    /// Whether the same message may succeed if sent again later.
    pub const fn is_retryable(self) -> bool {
        matches!(self, Self::RateLimited | Self::Unavailable | Self::StorageUnavailable)
    }

    /// The exact `connect_error` message for handshake failures (contract §2);
    /// `None` for codes that never reject a handshake.
    pub const fn handshake_message(self) -> Option<&'static str> {
        match self {
            Self::AuthRequired => Some("Authentication required"),
            Self::InvalidToken => Some("Invalid token"),
            Self::TokenExpired => Some("Token expired"),
            Self::Forbidden => Some("Forbidden"),
            _ => None,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_form_matches_as_str() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }

    #[test]
    fn only_rate_limit_and_unavailable_are_retryable() {
        assert!(ErrorCode::Unavailable.is_retryable());
        assert!(!ErrorCode::InvalidCoordinates.is_retryable());
        assert!(!ErrorCode::Forbidden.is_retryable());
    }
}
