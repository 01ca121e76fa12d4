//! Acks and results, identical on the socket and over REST: the wire's
//! payloads ([`wecare_proto::payload`]) made from what ingest decided.

use wecare_proto::payload::{BatchAck, ErrorAck, LocationOkAck, LocationResult, OkStatus};

use crate::clock::iso;
use crate::domain::validate::Rejection;
use crate::ingest::Outcome;

/// `{status:"ok", id, seq, timestamp, duplicate, adjusted?}` or the refusal.
pub(crate) fn result(o: &Outcome) -> LocationResult {
    match o {
        Ok(a) => LocationResult::Ok(LocationOkAck {
            status: OkStatus::Ok,
            id: a.id.as_str().to_string(),
            seq: a.seq,
            timestamp: iso(a.received),
            duplicate: a.duplicate,
            adjusted: a.adjusted,
        }),
        Err(r) => LocationResult::Error(refusal(r)),
    }
}

/// `{status:"error", code, message, retryable}`.
pub(crate) fn refusal(r: &Rejection) -> ErrorAck {
    ErrorAck::new(r.code, r.message)
}

/// `{status:"ok", results:[...]}` for batches and REST.
pub(crate) fn batch(outcomes: &[Outcome]) -> BatchAck {
    BatchAck { status: OkStatus::Ok, results: outcomes.iter().map(result).collect() }
}
