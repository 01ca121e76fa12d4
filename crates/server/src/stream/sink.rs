//! [`WatcherSink`]: where the stream writes one watcher's frames. The
//! stream (its fan-out and each watcher's life, [`super::watcher`]) knows
//! nothing of sockets: the transport implements this for its socket, the
//! watcher's tests for a bounded buffer.

use serde_json::value::RawValue;

use crate::domain::event::SharedEvent;

/// Outcome of writing one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Write {
    /// Queued for the watcher.
    Sent,
    /// Its send queue is full: nothing was queued; try again once it drained.
    Full,
    /// The watcher is gone: nothing more will be queued.
    Gone,
}

/// One watcher's bounded send queue.
pub(crate) trait WatcherSink: Send + Sync + std::fmt::Debug + 'static {
    /// Queues the frame `event` with payload `json`. Never waits: a full
    /// queue answers [`Write::Full`], and the stream paces or lets the
    /// watcher fall behind (it never drops a frame silently).
    fn send(&self, event: &'static str, json: &RawValue) -> Write;
    /// Queues a stream event (a socket sends it with its `seq` as the
    /// recovery offset, encoded once for all watchers).
    fn send_event(&self, ev: &SharedEvent) -> Write {
        self.send(ev.kind.name(), &ev.json)
    }
    /// Who it is, for logs.
    fn name(&self) -> String;
}
