//! A page of the stream as `events:sync` and `GET /api/realtime/events`
//! return it: `{ status, streamId, events: [{type, ...}], lastSeq, gap }`.

use serde_json::Value;
use serde_json::value::RawValue;
use wecare_proto::{ErrorCode, Seq, payload};

use crate::domain::validate::Rejection;
use crate::storage::{EventLog, StorageError};
use crate::stream::resume::{Claim, StartFrom};

const DEFAULT_LIMIT: usize = 500;
const MAX_LIMIT: usize = 1000;

/// A validated request for a page.
#[derive(Debug, Clone)]
pub(crate) struct SyncQuery {
    /// `since` (0 when absent) and `streamId`: where the page starts
    /// ([`crate::stream::resume`]).
    pub(crate) claim: Claim,
    pub(crate) limit: usize,
}

fn bad(message: &'static str) -> Rejection {
    Rejection::new(ErrorCode::InvalidPayload, message)
}

/// A non-negative integer given as a JSON number or a decimal string.
pub(crate) fn parse_count(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

impl SyncQuery {
    pub(crate) fn new(since: Option<u64>, limit: Option<u64>, stream_id: Option<String>) -> Self {
        let limit = limit.map_or(DEFAULT_LIMIT, |l| (l as usize).clamp(1, MAX_LIMIT));
        Self { claim: Claim { last_seq: Some(Seq(since.unwrap_or(0))), stream_id }, limit }
    }

    /// From an `events:sync` payload `{ since, limit, streamId? }`.
    pub(crate) fn from_json(v: &Value) -> Result<Self, Rejection> {
        // Contract §5: the payload is `{ since, limit }`; `null` is not one.
        let Value::Object(obj) = v else {
            return Err(bad("payload must be an object { since, limit }"));
        };
        let field = |k: &str| -> Result<Option<u64>, Rejection> {
            match obj.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => parse_count(v).map(Some).ok_or(bad("since and limit must be non-negative integers")),
            }
        };
        let stream_id = obj.get("streamId").and_then(Value::as_str).map(str::to_owned);
        Ok(Self::new(field("since")?, field("limit")?, stream_id))
    }
}

/// A page as it is sent: the events already encoded (each once, when it
/// was committed or read).
pub(crate) type EventsPage = payload::EventsPage<Box<RawValue>>;

/// Reads pages.
pub(crate) struct PageReader;

impl PageReader {
    /// The page `q` asks for. A position that means nothing here (another
    /// stream's, or beyond the head of a store that was reset) is answered
    /// from the start with `gap: true`, as one older than retention.
    pub(crate) async fn read(log: &dyn EventLog, q: &SyncQuery) -> Result<EventsPage, StorageError> {
        let stream_id = log.stream_id();
        let (page, from_state) = match q.claim.resumable(stream_id) {
            Some(since) => {
                // The store's own head comes with the page (see `Claim::start`).
                let page = log.read_after(since, q.limit).await?;
                match q.claim.start(stream_id, page.head) {
                    StartFrom::After(_) => (page, false),
                    StartFrom::State => (log.read_after(Seq::ZERO, q.limit).await?, true),
                }
            }
            None => (log.read_after(Seq::ZERO, q.limit).await?, true),
        };
        let mut json = String::with_capacity(page.events.len() * 256 + 2);
        json.push('[');
        for (i, ev) in page.events.iter().enumerate() {
            if i > 0 {
                json.push(',');
            }
            json.push_str(&ev.typed_json());
        }
        json.push(']');
        let last_seq = page.events.last().map_or(page.head, |e| e.seq);
        Ok(EventsPage {
            status: payload::OkStatus::Ok,
            stream_id: log.stream_id().to_string(),
            events: RawValue::from_string(json).map_err(|e| StorageError::Corrupt(e.to_string()))?,
            last_seq,
            gap: page.gap || from_state,
        })
    }
}

/// No events and no gap: nothing a long-poll would wake a client for.
pub(crate) fn nothing_new(page: &EventsPage) -> bool {
    page.events.get() == "[]" && !page.gap
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sync_payload_must_be_an_object() {
        for v in [Value::Null, json!("since=0"), json!([0]), json!(3)] {
            assert_eq!(SyncQuery::from_json(&v).unwrap_err().code, ErrorCode::InvalidPayload, "{v}");
        }
        let q = SyncQuery::from_json(&json!({"since": "5", "limit": 5000})).unwrap();
        assert_eq!((q.claim.last_seq, q.limit, q.claim.stream_id), (Some(Seq(5)), MAX_LIMIT, None));
        let q = SyncQuery::from_json(&json!({"streamId": "other"})).unwrap();
        assert_eq!((q.claim.last_seq, q.claim.stream_id.as_deref()), (Some(Seq::ZERO), Some("other")));
    }
}
