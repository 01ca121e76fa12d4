//! A session's send queue: encoded Engine.IO packets waiting for the
//! transport (the websocket task, or the next long-poll).
//!
//! Bounded in frames. A full queue refuses the write and says so
//! ([`Write::Full`]) instead of waiting: the caller decides (a watcher goes
//! back to the store; an ack is dropped and counted). Nothing is allocated
//! for an idle session, and the memory of a burst is given back once it
//! has been written.

use std::collections::VecDeque;
use std::sync::Mutex;

use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// One encoded Engine.IO packet (`4` prefix included). Cloning it shares
/// the bytes: one encoding can be queued on any number of sessions.
pub type Frame = Utf8Bytes;

/// What became of a frame given to a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Write {
    /// Queued for the transport.
    Sent,
    /// The queue is full (its peer reads slower than it is written to).
    Full,
    /// The session is closed.
    Gone,
}

/// A queue that kept more than this after a burst gives its memory back
/// once it is empty.
const KEEP_CAPACITY: usize = 16;

#[derive(Debug, Default)]
struct State {
    frames: VecDeque<Frame>,
    /// No more frames are taken; what is queued is still written.
    closed: bool,
    /// Since when the frames last taken have been being written.
    writing_since: Option<std::time::Instant>,
}

#[derive(Debug)]
pub(crate) struct Outbox {
    state: Mutex<State>,
    /// Wakes the one reader (the websocket task or the pending poll).
    ready: Notify,
    cap: usize,
}

impl Outbox {
    pub(crate) fn new(cap: usize) -> Self {
        Self { state: Mutex::default(), ready: Notify::new(), cap: cap.max(1) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues `frame` unless the queue is full or closed.
    pub(crate) fn push(&self, frame: Frame) -> Write {
        let mut s = self.lock();
        if s.closed {
            return Write::Gone;
        }
        if s.frames.len() >= self.cap {
            return Write::Full;
        }
        s.frames.push_back(frame);
        drop(s);
        self.ready.notify_one();
        Write::Sent
    }

    /// Queues `frame` whatever the bound (control packets: a pong, the
    /// noop that ends a poll during an upgrade), unless closed.
    pub(crate) fn push_control(&self, frame: Frame) {
        let mut s = self.lock();
        if !s.closed {
            s.frames.push_back(frame);
        }
        drop(s);
        self.ready.notify_one();
    }

    /// Moves every queued frame into `into`; true once the queue is closed
    /// (then what was taken is the last of it). The frames count as being
    /// written until [`Outbox::written`].
    pub(crate) fn take(&self, into: &mut Vec<Frame>) -> bool {
        let mut s = self.lock();
        into.extend(s.frames.drain(..));
        s.writing_since = (!into.is_empty()).then(std::time::Instant::now);
        if s.frames.capacity() > KEEP_CAPACITY {
            s.frames.shrink_to(KEEP_CAPACITY);
        }
        s.closed
    }

    /// The frames last taken are written out.
    pub(crate) fn written(&self) {
        self.lock().writing_since = None;
    }

    /// How long the frames last taken have been being written.
    pub(crate) fn writing_for(&self) -> Option<std::time::Duration> {
        self.lock().writing_since.map(|t| t.elapsed())
    }

    /// Takes no more frames; the reader is woken to write what is queued
    /// and end.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_one();
    }

    /// Wakes the reader without a frame (it re-reads the session's state).
    pub(crate) fn wake(&self) {
        self.ready.notify_one();
    }

    /// Waits until `ready()` holds, re-checking after every wake-up. The
    /// state is the truth; the notification only says "look again", so a
    /// wake-up lost to a cancelled wait cannot strand a frame.
    pub(crate) async fn wait_until(&self, ready: impl Fn(&Self) -> bool) {
        loop {
            let notified = self.ready.notified();
            if ready(self) {
                return;
            }
            notified.await;
        }
    }

    /// Whether a frame is queued or the queue is closed.
    pub(crate) fn has_work(&self) -> bool {
        let s = self.lock();
        s.closed || !s.frames.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(s: &'static str) -> Frame {
        Frame::from_static(s)
    }

    #[test]
    fn a_full_queue_refuses_and_a_closed_one_is_gone() {
        let q = Outbox::new(2);
        assert_eq!(q.push(frame("4a")), Write::Sent);
        assert_eq!(q.push(frame("4b")), Write::Sent);
        assert_eq!(q.push(frame("4c")), Write::Full);
        q.push_control(frame("3"));
        let mut out = Vec::new();
        assert!(!q.take(&mut out));
        assert_eq!(
            out.iter().map(|f| f.as_str()).collect::<Vec<_>>(),
            ["4a", "4b", "3"],
            "a control packet passes the bound"
        );
        assert!(q.writing_for().is_some(), "taken frames count as being written until written");
        q.written();
        assert_eq!(q.writing_for(), None);
        q.close();
        assert_eq!(q.push(frame("4d")), Write::Gone);
        assert!(q.take(&mut Vec::new()));
    }

    #[test]
    fn a_burst_gives_its_memory_back() {
        let q = Outbox::new(4096);
        for _ in 0..1000 {
            let _ = q.push(frame("4x"));
        }
        q.take(&mut Vec::new());
        assert!(q.lock().frames.capacity() <= KEEP_CAPACITY);
    }

    #[tokio::test]
    async fn a_waiter_sees_a_frame_pushed_before_it_waited() {
        let q = std::sync::Arc::new(Outbox::new(4));
        let _ = q.push(frame("4a"));
        tokio::time::timeout(std::time::Duration::from_secs(5), q.wait_until(Outbox::has_work)).await.unwrap();
        let q2 = std::sync::Arc::clone(&q);
        q.take(&mut Vec::new());
        let waiter = tokio::spawn(async move { q2.wait_until(Outbox::has_work).await });
        tokio::task::yield_now().await;
        let _ = q.push(frame("4b"));
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter).await.unwrap().unwrap();
    }
}
