//! [`Reply`]: answering a client event — through its ack, or, when the
//! client sent no ack callback, as an `error` event for failures (as the
//! original server did).
//!
//! An answer is encoded once and written once. The socket's bounded send
//! queue refuses a write while it is full; it is full only while the peer
//! does not read (a driver receives nothing but acks; a watcher's stream
//! deliveries leave the queue when it falls behind), so the answer is
//! dropped and counted: an honest client times the ack out and asks again
//! (every client event is idempotent), and a peer that stopped reading is
//! closed by the write-stall bound (`transport::conn`). Retrying would hold
//! the answer, and the socket's handler, for a peer that may never read
//! again.

use serde::Serialize;
use wecare_proto::event;
use wecare_sio::Write;

use super::socket::Sock;
use crate::domain::validate::Rejection;
use wecare_proto::payload::WireError;

/// The socket and the ack id of the event being handled.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    socket: Sock,
    ack_id: Option<u64>,
}

impl Reply {
    pub(crate) fn new(socket: Sock, ack_id: Option<u64>) -> Self {
        Self { socket, ack_id }
    }

    /// Sends `body` as the ack, or — without an ack callback — `failure` as
    /// an `error` event (a success without a callback needs no answer).
    /// `false` when an answer was due and could not be written (dropped).
    pub(crate) fn send(self, body: &impl Serialize, failure: Option<&Rejection>) -> bool {
        let written = match (self.ack_id, failure) {
            (Some(id), _) => self.socket.ack(id, body),
            (None, Some(r)) => {
                self.socket.emit(event::ERROR, &WireError { code: r.code, message: r.message.to_string() })
            }
            (None, None) => return true,
        };
        // A socket already gone has nobody to answer: not a dropped answer.
        written != Write::Full
    }
}
