//! A watcher's socket as the stream's [`WatcherSink`]: the socket's
//! bounded send queue answers `Full`.

use serde_json::value::RawValue;

use super::socket::Sock;
use crate::domain::event::SharedEvent;
use crate::stream::sink::{WatcherSink, Write};

/// The socket of a watcher.
#[derive(Debug)]
pub(crate) struct SocketSink(pub(crate) Sock);

impl WatcherSink for SocketSink {
    fn send(&self, event: &'static str, json: &RawValue) -> Write {
        written(self.0.emit_raw(event, json.get()))
    }

    /// A stream event carries one more argument, its `seq` as a string:
    /// the offset `socket.io-client` keeps for recovery (contract §5).
    fn send_event(&self, ev: &SharedEvent) -> Write {
        let frame = ev.frame.get_or_init(|| {
            let args = format!("{},\"{}\"", ev.json.get(), ev.seq.0);
            self.0.event_frame(ev.kind.name(), &args)
        });
        written(self.0.emit_frame(frame.clone()))
    }

    fn name(&self) -> String {
        self.0.id().to_string()
    }
}

fn written(w: wecare_sio::Write) -> Write {
    match w {
        wecare_sio::Write::Sent => Write::Sent,
        wecare_sio::Write::Full => Write::Full,
        wecare_sio::Write::Gone => Write::Gone,
    }
}
