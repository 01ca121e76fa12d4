//! Ack and result objects, identical on the socket and over REST.

use serde::Serialize;
use wecare_proto::{ErrorCode, Seq};

use crate::clock::iso;
use crate::domain::validate::Rejection;
use crate::ingest::Outcome;

/// `{status:"ok", id, seq, timestamp, duplicate, adjusted?}` or
/// `{status:"error", code, message, retryable}`.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(crate) enum AckItem<'a> {
    Ok {
        status: &'static str,
        id: &'a str,
        seq: Seq,
        timestamp: String,
        duplicate: bool,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        adjusted: bool,
    },
    Error(ErrorBody),
}

/// `{status:"error", code, message, retryable}`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ErrorBody {
    status: &'static str,
    pub(crate) code: ErrorCode,
    message: String,
    retryable: bool,
}

impl ErrorBody {
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { status: "error", code, message: message.into(), retryable: code.is_retryable() }
    }
}

impl From<&Rejection> for ErrorBody {
    fn from(r: &Rejection) -> Self {
        Self::new(r.code, r.message)
    }
}

impl<'a> From<&'a Outcome> for AckItem<'a> {
    fn from(o: &'a Outcome) -> Self {
        match o {
            Ok(a) => AckItem::Ok {
                status: "ok",
                id: a.id.as_str(),
                seq: a.seq,
                timestamp: iso(a.received),
                duplicate: a.duplicate,
                adjusted: a.adjusted,
            },
            Err(r) => AckItem::Error(r.into()),
        }
    }
}

/// `{status:"ok", results:[...]}` for batches and REST.
#[derive(Debug, Serialize)]
pub(crate) struct BatchAck<'a> {
    status: &'static str,
    results: Vec<AckItem<'a>>,
}

impl<'a> BatchAck<'a> {
    pub(crate) fn new(outcomes: &'a [Outcome]) -> Self {
        Self { status: "ok", results: outcomes.iter().map(AckItem::from).collect() }
    }
}

/// `{code, message}`: the `error` event for a failure without an ack callback.
#[derive(Debug, Serialize)]
pub(crate) struct ErrorEvent<'a> {
    pub(crate) code: ErrorCode,
    pub(crate) message: &'a str,
}
