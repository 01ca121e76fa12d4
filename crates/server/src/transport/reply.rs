//! [`Reply`]: answering a client event — through its ack, or, when the
//! client sent no ack callback, as an `error` event for failures (as the
//! original server did).
//!
//! An answer is never dropped: socketioxide refuses a write while the
//! socket's bounded send buffer is full (a watcher receiving a burst), and
//! its `AckSender` is consumed by a failed send. `Reply` keeps what is needed
//! to make a fresh sender and retries until the buffer drains, the socket
//! closes, or [`GIVE_UP`] passes (the heartbeat then closes a stuck socket).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use socketioxide::adapter::LocalAdapter;
use socketioxide::extract::AckSender;
use socketioxide::handler::{FromMessageParts, Value as WireValue};
use socketioxide::socket::Socket;
use socketioxide::{SendError, SocketError};
use wecare_proto::event;

use super::ack::ErrorEvent;
use crate::domain::validate::Rejection;

const RETRY: Duration = Duration::from_millis(2);
const GIVE_UP: Duration = Duration::from_secs(10);

/// Extractor: the socket and the ack id of the event being handled.
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
    pub(crate) async fn send(self, body: &impl Serialize, failure: Option<&Rejection>) {
        let mut waited = Duration::ZERO;
        loop {
            let sent = if self.ack_id.is_some() {
                let mut unused = WireValue::Bytes(bytes::Bytes::new());
                let Ok(ack) = AckSender::from_message_parts(&self.socket, &mut unused, &self.ack_id);
                ack.send(body)
            } else if let Some(r) = failure {
                self.socket.emit(event::ERROR, &ErrorEvent { code: r.code, message: r.message })
            } else {
                return;
            };
            match sent {
                Err(SendError::Socket(SocketError::InternalChannelFull)) if waited < GIVE_UP => {
                    tokio::time::sleep(RETRY).await;
                    waited += RETRY;
                }
                _ => return,
            }
        }
    }
}
