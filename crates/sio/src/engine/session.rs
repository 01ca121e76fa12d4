//! One Engine.IO session: its send queue, which transport carries it, its
//! pong flag, and the namespace socket riding on it.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use tokio_util::sync::CancellationToken;

use super::pending::Ticket;
use crate::outbox::Outbox;
use crate::socket::{DisconnectReason, Socket};

/// Which transport opens a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TransportKind {
    /// HTTP long-polling.
    Polling,
    /// A websocket (from the start, or after an upgrade).
    Websocket,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    /// Polling; whether a GET and a POST are in progress (one of each at most).
    Polling {
        getting: bool,
        posting: bool,
    },
    /// A websocket answered the probe: polls end at once (with a noop).
    Upgrading,
    Websocket,
}

/// Why a poll or a post was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PollRefused {
    /// A second request of the same kind while one is open: the client is
    /// broken, and the session ends.
    Overlap,
    /// The session moved to a websocket.
    NotPolling,
}

/// The namespace socket and whether the session has ended, under one lock:
/// a connect that completes after the end is undone, never left joined.
#[derive(Debug)]
pub(crate) struct Slot<D> {
    pub(crate) socket: Option<Socket<D>>,
    pub(crate) finished: bool,
}

#[derive(Debug)]
pub(crate) struct Session<D> {
    pub(crate) sid: Box<str>,
    /// The query string of the request that opened it (an application may
    /// read its token there).
    pub(crate) query: Box<str>,
    pub(crate) outbox: Outbox,
    transport: Mutex<Transport>,
    /// Cancelled when the session ends, for whatever reason.
    pub(crate) closed: CancellationToken,
    /// Set to drop the transport without writing what is queued.
    aborted: AtomicBool,
    reason: OnceLock<DisconnectReason>,
    pong: AtomicBool,
    /// Joins the application refused on this session.
    refused_joins: std::sync::atomic::AtomicU32,
    /// Joins asked for on this session.
    joins: std::sync::atomic::AtomicU32,
    /// A poll answered the close packet (the polling session may go).
    close_delivered: AtomicBool,
    /// Binary attachments still to be read and ignored (of a refused binary
    /// event).
    pub(crate) skip_binary: AtomicUsize,
    pub(crate) slot: Mutex<Slot<D>>,
    /// When the application's timer for the socket is due
    /// ([`crate::Socket::set_timer`]).
    timer: Mutex<Option<tokio::time::Instant>>,
    /// Wakes the session's task to look at the timer again.
    pub(crate) timer_changed: tokio::sync::Notify,
    /// Its place among the sessions not yet joined, until its first join
    /// is accepted.
    pending: Mutex<Option<Ticket>>,
}

impl<D> Session<D> {
    pub(crate) fn new(query: &str, transport: TransportKind, queue_frames: usize, ticket: Ticket) -> Arc<Self> {
        let transport = match transport {
            TransportKind::Polling => Transport::Polling { getting: false, posting: false },
            TransportKind::Websocket => Transport::Websocket,
        };
        Arc::new(Self {
            sid: crate::sid::new(),
            query: query.into(),
            outbox: Outbox::new(queue_frames),
            transport: Mutex::new(transport),
            closed: CancellationToken::new(),
            aborted: AtomicBool::new(false),
            reason: OnceLock::new(),
            pong: AtomicBool::new(false),
            refused_joins: std::sync::atomic::AtomicU32::new(0),
            joins: std::sync::atomic::AtomicU32::new(0),
            close_delivered: AtomicBool::new(false),
            skip_binary: AtomicUsize::new(0),
            slot: Mutex::new(Slot { socket: None, finished: false }),
            timer: Mutex::new(None),
            timer_changed: tokio::sync::Notify::new(),
            pending: Mutex::new(Some(ticket)),
        })
    }

    fn transport_lock(&self) -> std::sync::MutexGuard<'_, Transport> {
        self.transport.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn slot(&self) -> std::sync::MutexGuard<'_, Slot<D>> {
        self.slot.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn transport(&self) -> Transport {
        *self.transport_lock()
    }

    /// A GET (`get`) or POST starts on the polling transport.
    pub(crate) fn begin(&self, get: bool) -> Result<(), PollRefused> {
        let mut t = self.transport_lock();
        match &mut *t {
            Transport::Polling { getting, .. } if get => {
                if std::mem::replace(getting, true) {
                    return Err(PollRefused::Overlap);
                }
            }
            Transport::Polling { posting, .. } => {
                if std::mem::replace(posting, true) {
                    return Err(PollRefused::Overlap);
                }
            }
            // Packets a client posted before it switched are still read.
            _ if !get => {}
            // A poll sent as the probe succeeded: answered with a noop at once.
            Transport::Upgrading => {}
            Transport::Websocket => return Err(PollRefused::NotPolling),
        }
        Ok(())
    }

    /// The GET (`get`) or POST begun by [`Session::begin`] is over.
    pub(crate) fn end(&self, get: bool) {
        if let Transport::Polling { getting, posting } = &mut *self.transport_lock() {
            if get {
                *getting = false;
            } else {
                *posting = false;
            }
        }
    }

    /// A websocket answered the probe; a pending poll is ended with a noop.
    pub(crate) fn upgrading(&self) {
        *self.transport_lock() = Transport::Upgrading;
        self.outbox.wake();
    }

    /// The upgrade is done: the websocket carries everything from now on.
    pub(crate) fn upgraded(&self) {
        *self.transport_lock() = Transport::Websocket;
        self.outbox.wake();
    }

    /// The probing websocket went away before the upgrade: polling goes on.
    pub(crate) fn upgrade_failed(&self) {
        let mut t = self.transport_lock();
        if *t == Transport::Upgrading {
            *t = Transport::Polling { getting: false, posting: false };
        }
    }

    pub(crate) fn is_polling(&self) -> bool {
        matches!(self.transport(), Transport::Polling { .. })
    }

    pub(crate) fn set_timer(&self, at: Option<tokio::time::Instant>) {
        *self.timer.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = at;
        self.timer_changed.notify_one();
    }

    /// When the session's task must wake at the latest for the timer.
    pub(crate) fn timer(&self) -> Option<tokio::time::Instant> {
        *self.timer.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes the timer if it is due.
    pub(crate) fn take_due_timer(&self) -> bool {
        let mut t = self.timer.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let due = t.is_some_and(|at| at <= tokio::time::Instant::now());
        if due {
            *t = None;
        }
        due
    }

    /// A join was accepted: the session no longer holds a place among the
    /// pending ones.
    pub(crate) fn settle(&self) {
        self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
    }

    /// Counts a join asked for; the count so far.
    pub(crate) fn join_attempted(&self) -> u32 {
        self.joins.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Counts a refused join; the count so far.
    pub(crate) fn join_refused(&self) -> u32 {
        self.refused_joins.fetch_add(1, Ordering::AcqRel) + 1
    }

    pub(crate) fn pong_received(&self) {
        self.pong.store(true, Ordering::Release);
    }

    /// Whether a pong came since the last call.
    pub(crate) fn take_pong(&self) -> bool {
        self.pong.swap(false, Ordering::AcqRel)
    }

    /// Ends the session: no more frames are taken; what is queued is still
    /// written (a disconnect packet before the close). The first reason
    /// given is the one reported.
    pub(crate) fn close(&self, reason: DisconnectReason) {
        let _ = self.reason.set(reason);
        self.outbox.close();
        self.closed.cancel();
    }

    /// Ends the session without writing what is queued (its peer stopped
    /// reading).
    pub(crate) fn abort(&self, reason: DisconnectReason) {
        self.aborted.store(true, Ordering::Release);
        self.close(reason);
    }

    pub(crate) fn close_delivered(&self) {
        self.close_delivered.store(true, Ordering::Release);
        self.outbox.wake();
    }

    pub(crate) fn is_close_delivered(&self) -> bool {
        self.close_delivered.load(Ordering::Acquire)
    }

    pub(crate) fn is_aborted(&self) -> bool {
        self.aborted.load(Ordering::Acquire)
    }

    pub(crate) fn reason(&self) -> DisconnectReason {
        self.reason.get().copied().unwrap_or(DisconnectReason::TransportClose)
    }

    /// Whether a namespace socket has asked to join (the connect timeout
    /// stops: how long a join may take is the application's to bound — a
    /// recovering watcher's replay can be long).
    pub(crate) fn joined(&self) -> bool {
        self.slot().socket.is_some()
    }
}
