//! [`Reply`]: answering a client event — through its ack, or, when the
//! client sent no ack callback, as an `error` event for failures (as the
//! original server did).
//!
//! An answer is encoded once and written once. socketioxide refuses a write
//! while the socket's bounded send queue is full; the queue is full only
//! while the peer does not read (a driver receives nothing but acks; a
//! watcher's stream deliveries leave the queue when it falls behind), so
//! the answer is dropped and counted: an honest client times the ack out
//! and asks again (every client event is idempotent), and a peer that
//! stopped reading is closed by the write-stall bound (`transport::conn`).
//! Retrying would hold the answer, and the socket's handler, for a peer that
//! may never read again.

use std::convert::Infallible;
use std::sync::Arc;

use serde::Serialize;
use socketioxide::adapter::LocalAdapter;
use socketioxide::extract::AckSender;
use socketioxide::handler::{FromMessageParts, Value as WireValue};
use socketioxide::socket::Socket;
use wecare_proto::event;

use crate::domain::validate::Rejection;
use wecare_proto::payload::WireError;

/// Extractor: the socket and the ack id of the event being handled.
#[derive(Clone)]
pub(crate) struct Reply {
    socket: Arc<Socket<LocalAdapter>>,
    ack_id: Option<i64>,
}

impl FromMessageParts<LocalAdapter> for Reply {
    type Error = Infallible;
    fn from_message_parts(
        s: &Arc<Socket<LocalAdapter>>,
        _: &mut WireValue,
        ack_id: &Option<i64>,
    ) -> Result<Self, Infallible> {
        Ok(Self { socket: Arc::clone(s), ack_id: *ack_id })
    }
}

impl Reply {
    /// Sends `body` as the ack, or — without an ack callback — `failure` as
    /// an `error` event (a success without a callback needs no answer).
    /// `false` when an answer was due and could not be written (dropped).
    pub(crate) fn send(self, body: &impl Serialize, failure: Option<&Rejection>) -> bool {
        let sent = if self.ack_id.is_some() {
            let mut unused = WireValue::Bytes(bytes::Bytes::new());
            let Ok(ack) = AckSender::from_message_parts(&self.socket, &mut unused, &self.ack_id);
            ack.send(body)
        } else if let Some(r) = failure {
            self.socket.emit(event::ERROR, &WireError { code: r.code, message: r.message.to_string() })
        } else {
            return true;
        };
        sent.is_ok()
    }
}
