//! A watcher's socket as the stream's [`WatcherSink`]: socketioxide's
//! bounded per-socket send queue (`max_buffer_size`) answers `Full`.

use serde_json::value::RawValue;
use socketioxide::extract::SocketRef;
use socketioxide::{SendError, SocketError};

use crate::stream::sink::{WatcherSink, Write};

/// The socket of a watcher.
#[derive(Debug)]
pub(crate) struct SocketSink(pub(crate) SocketRef);

impl WatcherSink for SocketSink {
    fn send(&self, event: &'static str, json: &RawValue) -> Write {
        match self.0.emit(event, json) {
            Ok(()) => Write::Sent,
            Err(SendError::Socket(SocketError::InternalChannelFull)) => Write::Full,
            Err(_) => Write::Gone,
        }
    }

    fn name(&self) -> String {
        self.0.id.to_string()
    }
}
