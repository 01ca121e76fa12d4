//! Reading the reply to a `location:batch` (or the HTTP fallback body): which fixes leave the outbox,
//! which are resent with the same id, which go to the dead letters, and whether the token was refused.

use serde::Deserialize;
use serde_json::Value;
use tracing::{debug, warn};
use wecare_proto::ErrorCode;
use wecare_proto::payload::{BatchAck, ErrorAck, LocationResult, ReceivedCode};

use crate::outbox::OutboxEntry;

/// What an ack (or an HTTP 200 body) says about a batch.
#[derive(Debug, Default, PartialEq)]
pub(super) struct AckOutcome {
    pub(super) remove: Vec<String>,
    pub(super) park: Vec<(String, String, String)>,
    pub(super) retry: bool,
    pub(super) reauth: bool,
    pub(super) last_ack: Option<(String, u64)>,
}

/// The reply to a batch, as the contract shapes it (a refused REST batch's
/// `results` are not needed: its first refusal judges the batch). Codes
/// this SDK does not know are kept as sent ([`ReceivedCode`]).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Reply {
    Batch(BatchAck<ReceivedCode>),
    Refused(ErrorAck<ReceivedCode>),
}

/// The token was refused: a fresh one may get the same fixes through.
fn is_auth_code(err: &ErrorAck<ReceivedCode>) -> bool {
    matches!(err.code.known(), Some(ErrorCode::TokenExpired | ErrorCode::InvalidToken | ErrorCode::AuthRequired))
}

fn code_and_message(err: &ErrorAck<ReceivedCode>) -> (String, String) {
    (err.code.as_str().to_owned(), err.message.clone())
}

/// Interprets the reply to `location:batch` (or the REST body) for `batch`.
pub(super) fn interpret_ack(batch: &[OutboxEntry], ack: &Value) -> AckOutcome {
    let mut out = AckOutcome::default();
    match Reply::deserialize(ack) {
        Ok(Reply::Batch(reply)) if reply.results.len() == batch.len() => {
            for (entry, result) in batch.iter().zip(reply.results) {
                let err = match result {
                    LocationResult::Ok(ok) => {
                        out.remove.push(entry.id.clone());
                        out.last_ack = Some((entry.id.clone(), ok.seq.0));
                        continue;
                    }
                    LocationResult::Error(err) => err,
                };
                if err.retryable {
                    out.retry = true;
                } else if is_auth_code(&err) {
                    out.reauth = true;
                } else {
                    let (code, message) = code_and_message(&err);
                    out.park.push((entry.id.clone(), code, message));
                }
            }
        }
        Ok(Reply::Refused(err)) => {
            let (code, message) = code_and_message(&err);
            if err.retryable {
                out.retry = true;
            } else if is_auth_code(&err) {
                out.reauth = true;
            } else if err.code.known() == Some(ErrorCode::Forbidden) {
                // The whole batch refused: the token is not a driver's. The
                // fixes are fine; keep them for a token that is.
                warn!(%message, "server refused the batch as FORBIDDEN; keeping the fixes");
                out.retry = true;
            } else {
                for entry in batch {
                    out.park.push((entry.id.clone(), code.clone(), message.clone()));
                }
            }
        }
        Ok(Reply::Batch(reply)) => {
            warn!(
                sent = batch.len(),
                results = reply.results.len(),
                "batch ack with a result count that does not match; retrying later"
            );
            out.retry = true;
        }
        Err(e) => {
            // Not a contract ack: keep every fix and send again later.
            debug!(%ack, error = %e, "unexpected batch reply; retrying later");
            out.retry = true;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn entries(n: usize) -> Vec<OutboxEntry> {
        (0..n)
            .map(|i| OutboxEntry { id: format!("id{i}"), payload: json!({"id": format!("id{i}")}), created_at_ms: 0 })
            .collect()
    }

    #[test]
    fn per_item_results_are_sorted_into_remove_retry_and_park() {
        let batch = entries(4);
        let ack = json!({"status": "ok", "results": [
            {"status": "ok", "id": "id0", "seq": 7, "timestamp": "2026-12-07T10:00:00.000Z", "duplicate": false},
            {"status": "ok", "id": "id1", "seq": 3, "timestamp": "2026-12-07T10:00:00.000Z", "duplicate": true},
            {"status": "error", "code": "RATE_LIMITED", "message": "slow down", "retryable": true},
            {"status": "error", "code": "INVALID_COORDINATES", "message": "lat", "retryable": false},
        ]});
        let out = interpret_ack(&batch, &ack);
        assert_eq!(out.remove, vec!["id0".to_owned(), "id1".to_owned()]);
        assert_eq!(out.park, vec![("id3".to_owned(), "INVALID_COORDINATES".to_owned(), "lat".to_owned())]);
        assert!(out.retry && !out.reauth);
        assert_eq!(out.last_ack, Some(("id1".to_owned(), 3)));
    }

    #[test]
    fn a_code_this_sdk_does_not_know_is_judged_by_its_retryable_flag_and_kept_as_sent() {
        let batch = entries(2);
        let ack = json!({"status": "ok", "results": [
            {"status": "error", "code": "SOMETHING_NEWER", "message": "later", "retryable": true},
            {"status": "error", "code": "ALSO_NEWER", "message": "never", "retryable": false},
        ]});
        let out = interpret_ack(&batch, &ack);
        assert!(out.retry && !out.reauth && out.remove.is_empty());
        assert_eq!(out.park, vec![("id1".to_owned(), "ALSO_NEWER".to_owned(), "never".to_owned())]);
    }

    #[test]
    fn a_reply_that_is_not_a_contract_ack_keeps_every_fix_for_later() {
        let batch = entries(1);
        // `retryable` is missing: nothing is parked or removed on a guess.
        let out = interpret_ack(
            &batch,
            &json!({"status": "ok", "results": [{"status": "error", "code": "INVALID_PAYLOAD"}]}),
        );
        assert!(out.retry && out.park.is_empty() && out.remove.is_empty());
    }

    #[test]
    fn batch_level_errors() {
        let batch = entries(2);
        let expired = interpret_ack(
            &batch,
            &json!({"status": "error", "code": "TOKEN_EXPIRED", "message": "x", "retryable": false}),
        );
        assert!(expired.reauth && expired.park.is_empty() && expired.remove.is_empty());
        let forbidden =
            interpret_ack(&batch, &json!({"status": "error", "code": "FORBIDDEN", "message": "x", "retryable": false}));
        assert!(forbidden.retry && forbidden.park.is_empty());
        let bad = interpret_ack(
            &batch,
            &json!({"status": "error", "code": "INVALID_PAYLOAD", "message": "bad", "retryable": false}),
        );
        assert_eq!(bad.park.len(), 2);
        let garbage = interpret_ack(&batch, &json!({"status": "ok", "results": [{}]}));
        assert!(garbage.retry && garbage.remove.is_empty(), "a result count mismatch keeps everything");
    }
}
