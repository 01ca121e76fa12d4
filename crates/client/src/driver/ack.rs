//! Reading the reply to a `location:batch` (or the HTTP fallback body): which fixes leave the outbox,
//! which are resent with the same id, which go to the dead letters, and whether the token was refused.

use serde_json::Value;
use tracing::{debug, warn};
use wecare_proto::ErrorCode;

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

/// The error object's code, when it is one this SDK knows (a newer
/// server's code is `None`: judged by its `retryable` flag alone).
fn error_code(err: &Value) -> Option<ErrorCode> {
    err.get("code").cloned().and_then(|c| serde_json::from_value(c).ok())
}

/// The token was refused: a fresh one may get the same fixes through.
fn is_auth_code(err: &Value) -> bool {
    matches!(error_code(err), Some(ErrorCode::TokenExpired | ErrorCode::InvalidToken | ErrorCode::AuthRequired))
}

/// Whether an error object may succeed if sent again: the wire's
/// `retryable` flag, else the code's.
fn retryable(err: &Value) -> bool {
    err.get("retryable")
        .and_then(Value::as_bool)
        .unwrap_or_else(|| error_code(err).is_some_and(ErrorCode::is_retryable))
}

fn code_and_message(err: &Value) -> (String, String) {
    let text = |k: &str| err.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
    (text("code"), text("message"))
}

/// Interprets the reply to `location:batch` (or the REST body) for `batch`.
pub(super) fn interpret_ack(batch: &[OutboxEntry], ack: &Value) -> AckOutcome {
    let mut out = AckOutcome::default();
    let status = ack.get("status").and_then(Value::as_str);
    let results = ack.get("results").and_then(Value::as_array);
    match (status, results) {
        (Some("ok"), Some(results)) if results.len() == batch.len() => {
            for (entry, result) in batch.iter().zip(results) {
                if result.get("status").and_then(Value::as_str) == Some("ok") {
                    out.remove.push(entry.id.clone());
                    if let Some(seq) = result.get("seq").and_then(Value::as_u64) {
                        out.last_ack = Some((entry.id.clone(), seq));
                    }
                    continue;
                }
                let (code, message) = code_and_message(result);
                if retryable(result) {
                    out.retry = true;
                } else if is_auth_code(result) {
                    out.reauth = true;
                } else {
                    out.park.push((entry.id.clone(), code, message));
                }
            }
        }
        (Some("error"), _) => {
            let (code, message) = code_and_message(ack);
            if retryable(ack) {
                out.retry = true;
            } else if is_auth_code(ack) {
                out.reauth = true;
            } else if error_code(ack) == Some(ErrorCode::Forbidden) {
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
        _ => {
            debug!(%ack, "unexpected batch reply; retrying later");
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
            {"status": "ok", "id": "id0", "seq": 7, "duplicate": false},
            {"status": "ok", "id": "id1", "seq": 3, "duplicate": true},
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
    fn retryable_falls_back_to_the_code_when_the_flag_is_missing() {
        let batch = entries(1);
        let out =
            interpret_ack(&batch, &json!({"status": "ok", "results": [{"status": "error", "code": "UNAVAILABLE"}]}));
        assert!(out.retry && out.park.is_empty());
    }

    #[test]
    fn batch_level_errors() {
        let batch = entries(2);
        let expired = interpret_ack(&batch, &json!({"status": "error", "code": "TOKEN_EXPIRED", "message": "x"}));
        assert!(expired.reauth && expired.park.is_empty() && expired.remove.is_empty());
        let forbidden = interpret_ack(&batch, &json!({"status": "error", "code": "FORBIDDEN", "message": "x"}));
        assert!(forbidden.retry && forbidden.park.is_empty());
        let bad = interpret_ack(&batch, &json!({"status": "error", "code": "INVALID_PAYLOAD", "message": "bad"}));
        assert_eq!(bad.park.len(), 2);
        let garbage = interpret_ack(&batch, &json!({"status": "ok", "results": [{}]}));
        assert!(garbage.retry && garbage.remove.is_empty(), "a result count mismatch keeps everything");
    }
}
