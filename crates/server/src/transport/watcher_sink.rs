//! A watcher's socket as the stream's [`WatcherSink`]: the socket's
//! bounded send queue answers `Full`.

use serde_json::value::RawValue;

use super::socket::Sock;
use crate::stream::sink::{WatcherSink, Write};

/// The socket of a watcher.
#[derive(Debug)]
pub(crate) struct SocketSink(pub(crate) Sock);

impl WatcherSink for SocketSink {
    fn send(&self, event: &'static str, json: &RawValue) -> Write {
        match self.0.emit_raw(event, json.get()) {
            wecare_sio::Write::Sent => Write::Sent,
            wecare_sio::Write::Full => Write::Full,
            wecare_sio::Write::Gone => Write::Gone,
        }
    }

    fn name(&self) -> String {
        self.0.id().to_string()
    }
}
