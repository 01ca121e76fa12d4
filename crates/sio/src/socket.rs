//! The namespace layer: a client joins with `auth`, sends events (with or
//! without an ack id), leaves; the server answers acks and emits events.
//! What the application does with them is behind [`Namespace`].

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use serde::Serialize;
use serde_json::value::RawValue;
use wecare_proto::codec::packet;

use crate::engine::Session;
use crate::outbox::{Frame, Write};

/// The application's side of the namespace.
pub trait Namespace: Send + Sync + 'static {
    /// What the application keeps per socket (its session).
    type Data: Send + Sync + 'static;

    /// A client asks to join. Events emitted on `socket` before this
    /// returns reach the client before the CONNECT reply (Socket.IO's
    /// connection-state recovery relies on that).
    fn connect(
        &self,
        socket: Socket<Self::Data>,
        handshake: Handshake,
    ) -> impl Future<Output = Result<Connected<Self::Data>, Refusal>> + Send + 'static;

    /// The CONNECT reply is queued: the socket has joined. Called once,
    /// on the join's task: start the socket's own work here.
    fn joined(&self, socket: &Socket<Self::Data>);

    /// An event of a joined socket, in the order the client sent them.
    /// Called on the connection's task: do the work elsewhere.
    fn event(&self, socket: &Socket<Self::Data>, event: Incoming<'_>);

    /// The socket's timer is due ([`Socket::set_timer`]); called on the
    /// session's task.
    fn timer(&self, _socket: &Socket<Self::Data>) {}

    /// A joined socket left, once, whatever the cause.
    fn disconnect(&self, socket: &Socket<Self::Data>, reason: DisconnectReason);
}

/// What a client sent to join.
#[derive(Debug)]
pub struct Handshake {
    /// The CONNECT packet's payload (`auth`), if any and if it is JSON.
    pub auth: Option<Box<RawValue>>,
    /// The query string of the request that opened the session.
    pub query: String,
}

/// A join the application accepted.
#[derive(Debug)]
pub struct Connected<D> {
    /// Kept with the socket ([`Socket::data`]).
    pub data: D,
    /// Sent beside `sid` in the CONNECT reply: the client keeps it and
    /// offers it back on its next connect (recovery).
    pub pid: Option<String>,
}

/// A join the application refused: `44{"message"}`.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// What the client reads as the error's message.
    pub message: String,
}

/// One event a client sent.
#[derive(Debug)]
pub struct Incoming<'a> {
    /// Its name.
    pub name: &'a str,
    /// Its first argument, as JSON text; `None` when it has none.
    pub data: Option<&'a str>,
    /// Set when the client waits for an answer ([`Socket::ack`]).
    pub ack_id: Option<u64>,
    /// The event carried binary attachments: they are not read (this wire
    /// is text), and `data` holds their placeholders.
    pub binary: bool,
}

/// Why a socket left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The client left the namespace.
    ClientNamespaceDisconnect,
    /// The client closed the session.
    ClientClose,
    /// The connection closed.
    TransportClose,
    /// The connection failed, or the client broke the protocol.
    TransportError,
    /// No pong within the ping timeout.
    PingTimeout,
    /// The session never joined the namespace in time.
    ConnectTimeout,
    /// A message over the payload bound.
    PayloadTooLarge,
    /// The server ended it ([`Socket::disconnect`]).
    ServerDisconnect,
    /// The server ended it without writing what was queued.
    ServerAbort,
    /// The server is shutting down ([`crate::Server::close_all`]).
    ServerShutdown,
    /// The client kept asking to join (after refusals, or leaving and
    /// joining again).
    TooManyJoins,
}

/// Room made for a serialised answer's JSON: a fix's ack (`status`, `id`,
/// `seq`) fits, so the frame is allocated once.
const ANSWER_ROOM: usize = 192;

/// A client's socket in the namespace. Cloning it is cheap.
pub struct Socket<D>(Arc<Inner<D>>);

struct Inner<D> {
    id: Box<str>,
    namespace: Arc<str>,
    session: Arc<Session<D>>,
    data: OnceLock<D>,
    connected: AtomicBool,
}

impl<D> Clone for Socket<D> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<D> std::fmt::Debug for Socket<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socket").field("id", &self.0.id).field("session", &self.0.session.sid).finish_non_exhaustive()
    }
}

/// Encodes an event once, for any number of sockets of `namespace`
/// ([`Socket::emit_frame`]). `args_json`: its arguments after the name, as
/// JSON values separated by commas (usually one).
pub(crate) fn event_frame(namespace: &str, name: &str, args_json: &str) -> Frame {
    Frame::from(packet::encode_event(namespace, None, name, args_json))
}

impl<D> Socket<D> {
    pub(crate) fn new(namespace: Arc<str>, session: Arc<Session<D>>) -> Self {
        Self(Arc::new(Inner {
            id: crate::sid::new(),
            namespace,
            session,
            data: OnceLock::new(),
            connected: AtomicBool::new(false),
        }))
    }

    /// The socket's id (not the Engine.IO session's).
    pub fn id(&self) -> &str {
        &self.0.id
    }

    /// The application's data, once the join was accepted.
    pub fn data(&self) -> Option<&D> {
        self.0.data.get()
    }

    /// Whether the join was accepted and the socket has not left.
    pub fn is_connected(&self) -> bool {
        self.0.connected.load(Ordering::Acquire)
    }

    /// Has [`Namespace::timer`] called for this socket at `at`, on its
    /// session's own task (a socket's timers cost no task of their own);
    /// `None` cancels. A later call replaces an earlier one.
    pub fn set_timer(&self, at: Option<std::time::Instant>) {
        self.0.session.set_timer(at.map(tokio::time::Instant::from_std));
    }

    /// How long the transport has been writing frames it took and not yet
    /// finished (its peer may have stopped reading); `None` when idle.
    pub fn stalled_for(&self) -> Option<std::time::Duration> {
        self.0.session.outbox.writing_for()
    }

    /// Emits `name` with `data`.
    pub fn emit(&self, name: &str, data: &impl Serialize) -> Write {
        self.push_serialized(packet::event_prefix(&self.0.namespace, name, ANSWER_ROOM), data)
    }

    /// Emits `name` with `data_json` (valid JSON).
    pub fn emit_raw(&self, name: &str, data_json: &str) -> Write {
        self.emit_frame(event_frame(&self.0.namespace, name, data_json))
    }

    /// Encodes an event of this namespace once, for any number of sockets
    /// ([`Socket::emit_frame`]); `args_json` as for [`crate::Server::event_frame`].
    pub fn event_frame(&self, name: &str, args_json: &str) -> Frame {
        event_frame(&self.0.namespace, name, args_json)
    }

    /// Queues a frame encoded by [`Socket::event_frame`] for this namespace.
    pub fn emit_frame(&self, frame: Frame) -> Write {
        self.0.session.outbox.push(frame)
    }

    /// Answers the event that carried `ack_id`.
    pub fn ack(&self, ack_id: u64, data: &impl Serialize) -> Write {
        self.push_serialized(packet::ack_prefix(&self.0.namespace, ack_id, ANSWER_ROOM), data)
    }

    /// Queues `prefix` + `data` as JSON + `]`: serialised into the frame
    /// itself (an ack per fix is on the hot path). `Gone` if `data` cannot
    /// be serialised.
    fn push_serialized(&self, prefix: String, data: &impl Serialize) -> Write {
        let mut frame = prefix.into_bytes();
        if serde_json::to_writer(&mut frame, data).is_err() {
            return Write::Gone;
        }
        frame.push(b']');
        // serde_json writes UTF-8; the check is a pass over a short frame.
        match String::from_utf8(frame) {
            Ok(frame) => self.0.session.outbox.push(Frame::from(frame)),
            Err(_) => Write::Gone,
        }
    }

    /// Leaves the namespace from the server's side and ends the session
    /// once what is queued (the disconnect packet last) is written.
    /// `Full` when the queue has no room for the disconnect packet.
    pub fn disconnect(&self) -> Write {
        let w = self.0.session.outbox.push(Frame::from(packet::encode_disconnect(&self.0.namespace)));
        if w == Write::Sent {
            self.0.session.close(DisconnectReason::ServerDisconnect);
        }
        w
    }

    /// Drops the connection now, without writing what is queued (its peer
    /// stopped reading).
    pub fn close_now(&self) {
        self.0.session.abort(DisconnectReason::ServerAbort);
    }

    /// The join was accepted: the CONNECT reply goes out (after whatever
    /// the application emitted while connecting). False when the session
    /// ended meanwhile: the application must undo the join.
    pub(crate) fn joined(&self, connected: Connected<D>) -> bool {
        let _ = self.0.data.set(connected.data);
        let slot = self.0.session.slot();
        if slot.finished {
            return false;
        }
        self.0.connected.store(true, Ordering::Release);
        drop(slot);
        let mut reply = String::with_capacity(64);
        reply.push_str("{\"sid\":\"");
        reply.push_str(&self.0.id);
        reply.push('"');
        if let Some(pid) = connected.pid {
            reply.push_str(",\"pid\":");
            reply.push_str(&serde_json::Value::from(pid).to_string());
        }
        reply.push('}');
        self.0.session.outbox.push_control(Frame::from(packet::encode_connect(&self.0.namespace, Some(&reply))));
        true
    }

    /// The join was refused.
    pub(crate) fn refused(&self, refusal: &Refusal) {
        self.0
            .session
            .outbox
            .push_control(Frame::from(packet::encode_connect_error(&self.0.namespace, &refusal.message)));
    }

    /// Marks the socket gone; true if it had joined (its disconnect is due).
    pub(crate) fn left(&self) -> bool {
        self.0.connected.swap(false, Ordering::AcqRel)
    }
}
