//! `ApiError`: the one mapping from refusals to HTTP responses. Client
//! mistakes are answered, not logged; internal errors are logged once where
//! they happen and answered with a generic message.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use wecare_proto::ErrorCode;

use super::ack::ErrorBody;
use crate::domain::auth::AuthError;
use crate::domain::validate::Rejection;

/// A REST refusal: status plus the contract's error body.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    body: ErrorBody,
}

impl ApiError {
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { status: status_of(code), body: ErrorBody::new(code, message) }
    }

    pub(crate) fn payload(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidPayload, message)
    }

    pub(crate) fn status(status: StatusCode, code: ErrorCode, message: &str) -> Self {
        Self { status, body: ErrorBody::new(code, message) }
    }

    pub(crate) fn not_found() -> Self {
        Self { status: StatusCode::NOT_FOUND, body: ErrorBody::new(ErrorCode::InvalidPayload, "no such route") }
    }

    pub(crate) fn too_large() -> Self {
        Self {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            body: ErrorBody::new(ErrorCode::InvalidPayload, "body over 1 MiB"),
        }
    }
}

/// The HTTP status of a refusal with `code`.
pub(crate) fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::AuthRequired | ErrorCode::InvalidToken | ErrorCode::TokenExpired => StatusCode::UNAUTHORIZED,
        ErrorCode::Forbidden => StatusCode::FORBIDDEN,
        ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
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
        (self.status, Json(self.body)).into_response()
    }
}
