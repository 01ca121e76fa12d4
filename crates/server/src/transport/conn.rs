//! One accepted TCP connection, guarded: a stream wrapper that ends the
//! connection when its writes stall (the peer stopped reading) and that
//! the rest of the server can end at once through a [`ConnHandle`] (an
//! eviction, an expired or revoked token) — ending means the TCP stream is
//! dropped, not a request to close that a full send queue can refuse.
//!
//! Why a wrapper: the Engine.IO layer writes a websocket's queue from a task
//! that, once a write is pending on a peer that does not read, waits for ever
//! and never sees the session being closed; the session's close in turn
//! waits for that task. Failing the pending write (stall, or kill) unblocks
//! both, and dropping the stream frees the socket.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// Ends one connection from anywhere. Cheap to clone; a request carries the
/// handle of its connection in its extensions.
#[derive(Debug, Clone, Default)]
pub(crate) struct ConnHandle(Arc<Kill>);

#[derive(Debug, Default)]
struct Kill {
    killed: AtomicBool,
    reader: AtomicWaker,
    writer: AtomicWaker,
    /// Since when a write has been pending (epoch ms; 0: none is).
    stalled_since_ms: std::sync::atomic::AtomicI64,
}

impl ConnHandle {
    /// Ends the connection: every pending and later read or write fails, so
    /// whoever holds the stream drops it. Idempotent.
    pub(crate) fn kill(&self) {
        if !self.0.killed.swap(true, Ordering::AcqRel) {
            self.0.reader.wake();
            self.0.writer.wake();
        }
    }

    pub(crate) fn is_killed(&self) -> bool {
        self.0.killed.load(Ordering::Acquire)
    }
}

/// Why a guarded connection ended early (for the metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// A write was pending longer than the stall bound.
    Stalled,
    /// [`ConnHandle::kill`].
    Killed,
}

/// Told once when a guarded connection ends early.
pub(crate) type OnEnded = Arc<dyn Fn(Ended) + Send + Sync>;

/// A stream whose writes may not stall for longer than `stall`, and that
/// its [`ConnHandle`] can end.
pub(crate) struct Guarded<S> {
    inner: S,
    handle: ConnHandle,
    stall: Duration,
    /// Running while a write (or flush) is pending.
    stalled: Option<Pin<Box<Sleep>>>,
    on_ended: OnEnded,
    reported: bool,
    /// Held while the stream lives (the connection count); `None` in tests.
    _slot: Option<super::listener::ConnSlot>,
}

impl<S> std::fmt::Debug for Guarded<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guarded").field("stall", &self.stall).field("killed", &self.handle.is_killed()).finish()
    }
}

impl<S> Guarded<S> {
    pub(crate) fn new(
        inner: S,
        handle: ConnHandle,
        stall: Duration,
        on_ended: OnEnded,
        slot: impl Into<Option<super::listener::ConnSlot>>,
    ) -> Self {
        Self { inner, handle, stall, stalled: None, on_ended, reported: false, _slot: slot.into() }
    }

    fn ended(&mut self, why: Ended) -> io::Error {
        if !self.reported {
            self.reported = true;
            (self.on_ended)(why);
        }
        match why {
            Ended::Stalled => io::Error::new(io::ErrorKind::TimedOut, "the peer stopped reading"),
            Ended::Killed => io::Error::new(io::ErrorKind::ConnectionAborted, "connection ended by the server"),
        }
    }

    /// Fails at once when killed; otherwise registers `cx` to hear of a kill.
    fn check_killed(&mut self, cx: &Context<'_>, writer: bool) -> Result<(), io::Error> {
        let waker = if writer { &self.handle.0.writer } else { &self.handle.0.reader };
        waker.register(cx.waker());
        if self.handle.is_killed() { Err(self.ended(Ended::Killed)) } else { Ok(()) }
    }

    /// A write-side poll came back `Pending`: starts or checks the stall timer.
    fn pending_write(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let stall = self.stall;
        let since = &self.handle.0.stalled_since_ms;
        let timer = self.stalled.get_or_insert_with(|| {
            since.store(crate::clock::now_ms().max(1), Ordering::Release);
            Box::pin(tokio::time::sleep(stall))
        });
        if timer.as_mut().poll(cx).is_ready() {
            self.handle.kill();
            return Poll::Ready(Err(self.ended(Ended::Stalled)));
        }
        Poll::Pending
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if let Err(e) = self.check_killed(cx, false) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> Guarded<S> {
    fn poll_write_side<T>(
        &mut self,
        cx: &mut Context<'_>,
        op: impl FnOnce(Pin<&mut S>, &mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if let Err(e) = self.check_killed(cx, true) {
            return Poll::Ready(Err(e));
        }
        match op(Pin::new(&mut self.inner), cx) {
            Poll::Ready(r) => {
                if self.stalled.take().is_some() {
                    self.handle.0.stalled_since_ms.store(0, Ordering::Release);
                }
                Poll::Ready(r)
            }
            Poll::Pending => match self.pending_write(cx) {
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                _ => Poll::Pending,
            },
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_write_side(cx, |s, cx| s.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_side(cx, |s, cx| s.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_write_side(cx, AsyncWrite::poll_flush)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_write_side(cx, AsyncWrite::poll_shutdown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn recorder() -> (OnEnded, Arc<Mutex<Vec<Ended>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = Arc::clone(&seen);
        (Arc::new(move |e| s.lock().unwrap().push(e)), seen)
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_the_peer_never_reads_fails_after_the_stall_bound() {
        // A tiny pipe whose far end never reads: the second write blocks.
        let (near, _far) = tokio::io::duplex(16);
        let (on_ended, seen) = recorder();
        let handle = ConnHandle::default();
        let mut g = Guarded::new(near, handle.clone(), Duration::from_secs(20), on_ended, None);
        g.write_all(&[0; 16]).await.unwrap();
        let started = tokio::time::Instant::now();
        let err = g.write_all(&[0; 16]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(20));
        assert!(handle.is_killed(), "a stalled connection is ended for good");
        assert_eq!(*seen.lock().unwrap(), vec![Ended::Stalled]);
    }

    #[tokio::test(start_paused = true)]
    async fn progress_resets_the_stall_timer() {
        let (near, mut far) = tokio::io::duplex(16);
        let (on_ended, seen) = recorder();
        let mut g = Guarded::new(near, ConnHandle::default(), Duration::from_secs(20), on_ended, None);
        let reader = tokio::spawn(async move {
            let mut buf = [0; 16];
            for _ in 0..10 {
                tokio::time::sleep(Duration::from_secs(15)).await;
                far.read_exact(&mut buf).await.unwrap();
            }
        });
        for _ in 0..10 {
            g.write_all(&[1; 16]).await.expect("a slow reader is not a dead one");
        }
        reader.await.unwrap();
        assert!(seen.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_kill_ends_pending_reads_and_writes_at_once() {
        let (near, _far) = tokio::io::duplex(16);
        let (on_ended, seen) = recorder();
        let handle = ConnHandle::default();
        let g = Guarded::new(near, handle.clone(), Duration::from_secs(3600), on_ended, None);
        let (mut r, mut w) = tokio::io::split(g);
        let read = tokio::spawn(async move { r.read(&mut [0; 8]).await });
        let write = tokio::spawn(async move {
            w.write_all(&[0; 16]).await?;
            w.write_all(&[0; 16]).await
        });
        tokio::task::yield_now().await;
        handle.kill();
        let read = tokio::time::timeout(Duration::from_secs(5), read).await.unwrap().unwrap();
        let write = tokio::time::timeout(Duration::from_secs(5), write).await.unwrap().unwrap();
        assert_eq!(read.unwrap_err().kind(), io::ErrorKind::ConnectionAborted);
        assert_eq!(write.unwrap_err().kind(), io::ErrorKind::ConnectionAborted);
        assert_eq!(*seen.lock().unwrap(), vec![Ended::Killed], "reported once");
    }
}
