//! Where a subscriber starts (contract §5) — the one rule, for a socket's
//! handshake (`auth.lastSeq`, `auth.streamId`) and for pages of the stream
//! (`events:sync`, `GET /api/realtime/events`: `since`, `streamId`).
//!
//! A position is worth resuming from only in the stream it came from and
//! only up to the store's head: a `streamId` of another stream, or a `seq`
//! beyond the head (a store that was wiped or replaced), means start from
//! the current state. A position older than retention is found while
//! reading (the store reports the gap), not here.

use serde_json::Value;
use wecare_proto::Seq;

/// What a subscriber says it has.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Claim {
    /// The last `seq` it processed; `None`: nothing yet.
    pub(crate) last_seq: Option<Seq>,
    /// The stream that position belongs to, when it says.
    pub(crate) stream_id: Option<String>,
}

/// Where it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StartFrom {
    /// Its position means nothing here: from the current state (a socket
    /// gets `drivers:snapshot`; a page is read from the start with `gap: true`).
    State,
    /// Every event after this `seq`.
    After(Seq),
}

impl Claim {
    /// From a socket handshake's `auth`: `lastSeq` as a number or a decimal
    /// string (anything else counts as none), `streamId` as a string.
    pub(crate) fn from_auth(auth: Option<&Value>) -> Self {
        let Some(auth) = auth else { return Self::default() };
        let last_seq = match auth.get("lastSeq") {
            Some(Value::Number(n)) => n.as_u64().map(Seq),
            Some(Value::String(s)) => s.parse().ok().map(Seq),
            _ => None,
        };
        let stream_id = auth.get("streamId").and_then(Value::as_str).map(str::to_owned);
        Self { last_seq, stream_id }
    }

    /// The position it could resume after in `stream_id`, before the head
    /// is known; `None`: it starts from the state whatever the head.
    pub(crate) fn resumable(&self, stream_id: &str) -> Option<Seq> {
        if self.stream_id.as_deref().is_some_and(|claimed| claimed != stream_id) {
            return None;
        }
        self.last_seq
    }

    /// The rule. `head` must be the store's own head, not a node's view of
    /// it: a node that lags other nodes' commits must not mistake its lag
    /// for a reset store.
    pub(crate) fn start(&self, stream_id: &str, head: Seq) -> StartFrom {
        match self.resumable(stream_id) {
            Some(last) if last <= head => StartFrom::After(last),
            _ => StartFrom::State,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn claim(auth: Value) -> Claim {
        Claim::from_auth(Some(&auth))
    }

    #[test]
    fn a_position_in_this_stream_up_to_the_head_resumes() {
        assert_eq!(claim(json!({ "lastSeq": 7, "streamId": "s1" })).start("s1", Seq(9)), StartFrom::After(Seq(7)));
        assert_eq!(claim(json!({ "lastSeq": "9" })).start("s1", Seq(9)), StartFrom::After(Seq(9)), "at the head");
        assert_eq!(claim(json!({ "lastSeq": 0 })).start("s1", Seq(0)), StartFrom::After(Seq::ZERO));
    }

    #[test]
    fn another_stream_or_beyond_the_head_starts_from_the_state() {
        assert_eq!(claim(json!({ "lastSeq": 7, "streamId": "old" })).start("s1", Seq(9)), StartFrom::State);
        assert_eq!(claim(json!({ "lastSeq": 10 })).start("s1", Seq(9)), StartFrom::State, "a store that was reset");
        assert_eq!(claim(json!({ "lastSeq": 10, "streamId": "old" })).resumable("s1"), None);
    }

    #[test]
    fn no_usable_position_starts_from_the_state() {
        assert_eq!(Claim::from_auth(None).start("s1", Seq(9)), StartFrom::State);
        for auth in
            [json!({}), json!({ "lastSeq": -1 }), json!({ "lastSeq": "x" }), json!({ "lastSeq": null }), json!("7")]
        {
            assert_eq!(claim(auth.clone()).start("s1", Seq(9)), StartFrom::State, "{auth}");
        }
    }
}
