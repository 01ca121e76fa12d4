//! `ApiError`: the one mapping from refusals to HTTP responses. Client
//! mistakes are answered, not logged; internal errors are logged once where
//! they happen and answered with a generic message.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use wecare_proto::ErrorCode;

use crate::domain::auth::AuthError;
use crate::domain::validate::Rejection;
use wecare_proto::payload::ErrorAck;

/// A REST refusal: status plus the contract's error body.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    body: ErrorAck,
}

/// Seconds a client should wait before retrying a refusal with `code`
/// (`Retry-After`), for the retryable ones.
pub(crate) fn retry_after(code: ErrorCode) -> Option<&'static str> {
    match code {
        ErrorCode::RateLimited => Some("1"),
        ErrorCode::Unavailable | ErrorCode::StorageUnavailable => Some("2"),
        _ => None,
    }
}

/// The code a REST refusal carries at its top level: an ack's `UNAVAILABLE`
/// is an HTTP 503 `STORAGE_UNAVAILABLE` (contract §6, v1.2).
pub(crate) fn rest_code(code: ErrorCode) -> ErrorCode {
    match code {
        ErrorCode::Unavailable => ErrorCode::StorageUnavailable,
        other => other,
    }
}

/// A REST refusal with `code` and a body of the handler's own: the
/// code's HTTP status, and `Retry-After` when a retry can succeed.
pub(crate) fn refusal(code: ErrorCode, body: &impl serde::Serialize) -> Response {
    let mut response = (status_of(code), Json(body)).into_response();
    if let Some(secs) = retry_after(code) {
        response.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static(secs));
    }
    response
}

impl ApiError {
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        let code = rest_code(code);
        Self { status: status_of(code), body: ErrorAck::new(code, message) }
    }

    pub(crate) fn payload(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidPayload, message)
    }

    pub(crate) fn status(status: StatusCode, code: ErrorCode, message: &str) -> Self {
        Self { status, body: ErrorAck::new(code, message) }
    }

    pub(crate) fn not_found() -> Self {
        Self { status: StatusCode::NOT_FOUND, body: ErrorAck::new(ErrorCode::InvalidPayload, "no such route") }
    }

    pub(crate) fn too_large() -> Self {
        Self {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            body: ErrorAck::new(ErrorCode::InvalidPayload, "body over 1 MiB"),
        }
    }
}

/// The HTTP status of a refusal with `code`.
pub(crate) fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::AuthRequired | ErrorCode::InvalidToken | ErrorCode::TokenExpired => StatusCode::UNAUTHORIZED,
        ErrorCode::Forbidden => StatusCode::FORBIDDEN,
        ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::Unavailable | ErrorCode::StorageUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        Self::new(e.code(), e.to_string())
    }
}

impl From<&Rejection> for ApiError {
    fn from(r: &Rejection) -> Self {
        Self::new(r.code, r.message)
    }
}

impl From<crate::storage::StorageError> for ApiError {
    fn from(e: crate::storage::StorageError) -> Self {
        tracing::error!(error = %e, "storage read failed");
        Self::new(ErrorCode::Unavailable, "storage unavailable")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status == status_of(self.body.code) {
            return refusal(self.body.code, &self.body);
        }
        (self.status, Json(self.body)).into_response()
    }
}
