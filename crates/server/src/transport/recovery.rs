//! Socket.IO's connection-state recovery, served from the durable stream
//! (contract §5, v1.3): an unchanged `socket.io-client` that reconnects
//! offers back the `pid` of its last CONNECT reply and the `offset` (the
//! `seq` string) of the last stream event it received; the events after it
//! are sent before the CONNECT reply, which carries the same `pid`.
//!
//! A `pid` is `<streamId>.<head>.<nonce>`: the stream, its head when the
//! session began (where a client that received nothing recovers from), and
//! a random part so that a fresh session never repeats an old `pid` (the
//! client takes an equal `pid` as "recovered").

use serde_json::Value;
use wecare_proto::Seq;

/// What a reconnecting client asks to recover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Request {
    /// Its `pid`, answered back when the recovery succeeds.
    pub(crate) pid: String,
    /// The events after this `seq` are what it missed.
    pub(crate) after: Seq,
}

/// A `pid` for a session of `stream_id` beginning at `head`.
pub(crate) fn new_pid(stream_id: &str, head: Seq) -> String {
    format!("{stream_id}.{}.{}", head.0, crate::random::hex_id(4))
}

/// The recovery `auth` asks for in `stream_id`: `pid` names this stream,
/// and `offset` (or, without one, the `pid`'s head) is where it resumes.
/// `None` for another stream, a malformed `pid` or `offset`, or no `pid`.
pub(crate) fn requested(auth: Option<&Value>, stream_id: &str) -> Option<Request> {
    let auth = auth?;
    let pid = auth.get("pid")?.as_str()?;
    let mut parts = pid.split('.');
    let (stream, head, _nonce) = (parts.next()?, parts.next()?, parts.next()?);
    if stream != stream_id || parts.next().is_some() {
        return None;
    }
    let after = match auth.get("offset") {
        Some(Value::String(offset)) => offset.parse().ok()?,
        // Nothing received in the last session.
        None | Some(Value::Null) => head.parse().ok()?,
        Some(_) => return None,
    };
    Some(Request { pid: pid.to_string(), after: Seq(after) })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_pid_of_this_stream_recovers_from_its_offset_or_else_its_head() {
        let pid = new_pid("s1", Seq(40));
        let auth = json!({ "token": "t", "pid": pid, "offset": "57" });
        assert_eq!(requested(Some(&auth), "s1"), Some(Request { pid: pid.clone(), after: Seq(57) }));
        let auth = json!({ "pid": pid });
        assert_eq!(requested(Some(&auth), "s1").map(|r| r.after), Some(Seq(40)));
    }

    #[test]
    fn another_stream_or_a_malformed_claim_is_not_recovered() {
        let pid = new_pid("s1", Seq(40));
        assert_eq!(requested(Some(&json!({ "pid": pid, "offset": "57" })), "s2"), None);
        assert_eq!(requested(Some(&json!({ "pid": pid, "offset": 57 })), "s1"), None);
        assert_eq!(requested(Some(&json!({ "pid": pid, "offset": "x" })), "s1"), None);
        assert_eq!(requested(Some(&json!({ "pid": "s1.40" })), "s1"), None);
        assert_eq!(requested(Some(&json!({ "pid": 5 })), "s1"), None);
        assert_eq!(requested(Some(&json!({ "token": "t" })), "s1"), None);
        assert_eq!(requested(None, "s1"), None);
    }

    #[test]
    fn fresh_pids_differ_at_the_same_head() {
        assert_ne!(new_pid("s1", Seq(3)), new_pid("s1", Seq(3)));
    }
}
