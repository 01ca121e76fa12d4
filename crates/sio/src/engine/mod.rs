//! Engine.IO v4 sessions over HTTP: the request router, the session
//! registry, and what both transports do with a packet.

mod heartbeat;
mod pending;
mod polling;
mod query;
mod session;
mod websocket;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Body;
use hyper::{Method, Request, Response};
use serde_json::value::RawValue;
use wecare_proto::codec::packet::{self, PacketKind};

pub(crate) use session::Session;

use crate::config::Config;
use crate::outbox::Frame;
use crate::socket::{DisconnectReason, Handshake, Incoming, Namespace, Refusal, Socket};
use pending::PendingSessions;
use query::{EngineError, Query};

/// The Engine.IO / Socket.IO server of one namespace.
pub struct Server<N: Namespace> {
    pub(crate) config: Config,
    namespace_name: Arc<str>,
    pub(crate) ns: Arc<N>,
    sessions: Mutex<Registry<N::Data>>,
    pending: PendingSessions,
    /// Told when the last session goes.
    emptied: tokio::sync::Notify,
}

/// The open sessions by id.
type Registry<D> = HashMap<Box<str>, Arc<Session<D>>>;

impl<N: Namespace> std::fmt::Debug for Server<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("config", &self.config).finish_non_exhaustive()
    }
}

/// Refused joins after which a session is closed.
const MAX_REFUSED_JOINS: u32 = 8;
/// Joins one session may ask for (a client that leaves and joins again).
const MAX_JOINS: u32 = 16;

/// The body of every answer.
pub type ResponseBody = Full<Bytes>;

impl<N: Namespace> Server<N> {
    /// A server of `config.namespace`, answering through `ns`.
    pub fn new(config: Config, ns: Arc<N>) -> Arc<Self> {
        let namespace_name = Arc::from(config.namespace.as_str());
        let pending = PendingSessions::new(config.max_pending_sessions);
        Arc::new(Self {
            config,
            namespace_name,
            ns,
            sessions: Mutex::default(),
            pending,
            emptied: tokio::sync::Notify::new(),
        })
    }

    /// Whether `path` is Engine.IO's.
    pub fn handles(&self, path: &str) -> bool {
        path == self.config.path
            || path.strip_suffix('/').is_some_and(|p| self.config.path.strip_suffix('/') == Some(p))
    }

    /// Encodes an event once for any number of sockets ([`Socket::emit_frame`]).
    /// `args_json`: its arguments after the name, as JSON values separated
    /// by commas (usually one).
    pub fn event_frame(&self, name: &str, args_json: &str) -> Frame {
        crate::socket::event_frame(&self.namespace_name, name, args_json)
    }

    /// The joined sockets.
    pub fn sockets(&self) -> Vec<Socket<N::Data>> {
        let sessions: Vec<_> = self.registry().values().cloned().collect();
        sessions.iter().filter_map(|s| s.slot().socket.clone()).filter(Socket::is_connected).collect()
    }

    /// The joined socket with id `id`.
    pub fn socket(&self, id: &str) -> Option<Socket<N::Data>> {
        self.sockets().into_iter().find(|s| s.id() == id)
    }

    /// Waits until no session is open (after [`Server::disconnect_all`]).
    pub async fn all_ended(&self) {
        loop {
            let emptied = self.emptied.notified();
            tokio::pin!(emptied);
            emptied.as_mut().enable();
            if self.registry().is_empty() {
                return;
            }
            emptied.await;
        }
    }

    /// Open sessions (joined or not).
    pub fn session_count(&self) -> usize {
        self.registry().len()
    }

    /// Open sessions that have not joined yet ([`Config::max_pending_sessions`]).
    pub fn pending_sessions(&self) -> usize {
        self.pending.held()
    }

    /// Handshakes refused because [`Config::max_pending_sessions`] were
    /// pending.
    pub fn busy_refusals(&self) -> u64 {
        self.pending.refused()
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry<N::Data>> {
        self.sessions.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn session(&self, sid: &str) -> Option<Arc<Session<N::Data>>> {
        self.registry().get(sid).cloned()
    }

    fn register(&self, session: &Arc<Session<N::Data>>) {
        self.registry().insert(session.sid.clone(), Arc::clone(session));
    }

    fn remove(&self, session: &Session<N::Data>) {
        let mut registry = self.registry();
        registry.remove(&session.sid);
        if registry.is_empty() {
            self.emptied.notify_waiters();
        }
    }

    /// Answers one Engine.IO request (any method, the path already matched).
    pub async fn handle<B>(self: &Arc<Self>, req: Request<B>) -> Response<ResponseBody>
    where
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let raw_query = req.uri().query().unwrap_or("").to_string();
        let q = Query::parse(&raw_query);
        let result = match q.check() {
            Err(e) => Err(e),
            Ok(q) => match (q.transport, q.sid.as_deref(), req.method()) {
                ("polling", None, &Method::GET) => self.admit().map(|t| polling::open(self, q.raw, t)),
                ("polling", None, _) => Err(EngineError::BadHandshakeMethod),
                ("websocket", None, &Method::GET) => self.admit().and_then(|t| websocket::open(self, req, q.raw, t)),
                ("polling", Some(sid), m) => match self.session(sid) {
                    None => Err(EngineError::UnknownSid),
                    Some(s) if m == Method::GET => Ok(polling::poll(self, &s).await),
                    Some(s) if m == Method::POST => Ok(polling::post(self, &s, req.into_body()).await),
                    Some(_) => Err(EngineError::BadRequest),
                },
                ("websocket", Some(sid), &Method::GET) => match self.session(sid) {
                    None => Err(EngineError::UnknownSid),
                    Some(s) if s.is_polling() => websocket::upgrade(self, req, s),
                    Some(_) => Err(EngineError::BadRequest),
                },
                _ => Err(EngineError::BadRequest),
            },
        };
        result.unwrap_or_else(EngineError::response)
    }

    /// A place for a new session, or the refusal when too many are pending.
    fn admit(&self) -> Result<pending::Ticket, EngineError> {
        self.pending.admit().ok_or(EngineError::Busy)
    }

    /// Handles one Engine.IO packet of `session` (either transport). An
    /// error ends the session for that reason.
    pub(crate) fn on_text(
        self: &Arc<Self>,
        session: &Arc<Session<N::Data>>,
        text: &str,
    ) -> Result<(), DisconnectReason> {
        match text.as_bytes().first() {
            Some(b'4') => self.on_message(session, &text[1..]),
            Some(b'3') => {
                session.pong_received();
                Ok(())
            }
            Some(b'1') => Err(DisconnectReason::ClientClose),
            // In v4 only the server pings (a probe is answered by the
            // upgrading websocket): a client's ping is not answered, so a
            // peer that sends pings and never reads queues nothing.
            Some(b'2' | b'5' | b'6') => Ok(()),
            // A base64 binary attachment on polling.
            Some(b'b') => self.on_binary(session),
            _ => Err(DisconnectReason::TransportError),
        }
    }

    /// A binary message: an attachment of a refused binary event is skipped;
    /// any other is a protocol fault.
    pub(crate) fn on_binary(&self, session: &Session<N::Data>) -> Result<(), DisconnectReason> {
        let skip = &session.skip_binary;
        skip.fetch_update(std::sync::atomic::Ordering::AcqRel, std::sync::atomic::Ordering::Acquire, |n| {
            n.checked_sub(1)
        })
        .map(|_| ())
        .map_err(|_| DisconnectReason::TransportError)
    }

    fn on_message(self: &Arc<Self>, session: &Arc<Session<N::Data>>, msg: &str) -> Result<(), DisconnectReason> {
        let p = packet::decode(msg).map_err(|_| DisconnectReason::TransportError)?;
        let attachments = packet::attachment_count(msg);
        if attachments > 0 {
            session.skip_binary.fetch_add(attachments, std::sync::atomic::Ordering::AcqRel);
        }
        if p.namespace != &*self.namespace_name {
            if p.kind == PacketKind::Connect {
                // Within the queue's bound: a peer that asks again and again
                // without reading fills its own queue, then is not answered.
                let refused = packet::encode_connect_error(p.namespace, "Invalid namespace");
                let _ = session.outbox.push(Frame::from(refused));
            }
            return Ok(());
        }
        match p.kind {
            PacketKind::Connect => self.on_connect(session, p.payload),
            PacketKind::Event | PacketKind::BinaryEvent => {
                let socket = session.slot().socket.clone();
                let Some(socket) = socket.filter(Socket::is_connected) else { return Ok(()) };
                let args = packet::event_args(p.payload).map_err(|_| DisconnectReason::TransportError)?;
                let data = args.data.map(|r| &p.payload[r]);
                let binary = p.kind == PacketKind::BinaryEvent;
                self.ns.event(&socket, Incoming { name: &args.name, data, ack_id: p.ack_id, binary });
            }
            PacketKind::Disconnect => {
                let socket = session.slot().socket.take();
                if let Some(socket) = socket
                    && socket.left()
                {
                    self.ns.disconnect(&socket, DisconnectReason::ClientNamespaceDisconnect);
                }
            }
            // This server asks for no acks; a client sends no connect errors.
            PacketKind::Ack | PacketKind::BinaryAck | PacketKind::ConnectError => {}
        }
        Ok(())
    }

    fn on_connect(self: &Arc<Self>, session: &Arc<Session<N::Data>>, payload: &str) {
        let socket = {
            let mut slot = session.slot();
            if slot.socket.is_some() || slot.finished {
                return;
            }
            // Leaving and joining again on one session is allowed, but not
            // for ever: every join costs the application its checks.
            if session.join_attempted() > MAX_JOINS {
                drop(slot);
                return session.close(DisconnectReason::TooManyJoins);
            }
            let socket = Socket::new(Arc::clone(&self.namespace_name), Arc::clone(session));
            slot.socket = Some(socket.clone());
            socket
        };
        // A payload that is not JSON is taken as no `auth` at all.
        let auth = (!payload.is_empty()).then(|| RawValue::from_string(payload.to_string()).ok()).flatten();
        let handshake = Handshake { auth, query: session.query.to_string() };
        let joining = self.ns.connect(socket.clone(), handshake);
        let (server, session) = (Arc::clone(self), Arc::clone(session));
        tokio::spawn(async move {
            match joining.await {
                Ok(connected) => {
                    // Accepted: out of the pending sessions before the
                    // CONNECT reply is queued, so a client that has its
                    // reply sees its place freed.
                    session.settle();
                    if socket.joined(connected) {
                        server.ns.joined(&socket);
                    } else {
                        server.ns.disconnect(&socket, session.reason());
                    }
                }
                Err(refusal) => server.refuse(&session, &socket, &refusal),
            }
        });
    }

    fn refuse(&self, session: &Session<N::Data>, socket: &Socket<N::Data>, refusal: &Refusal) {
        let mut slot = session.slot();
        if slot.socket.as_ref().is_some_and(|s| s.id() == socket.id()) {
            slot.socket = None;
        }
        drop(slot);
        socket.refused(refusal);
        // A client may try again on the same session (`socket.connect()`
        // after a `connect_error`), but not for ever: each try costs the
        // application a token check.
        if session.join_refused() >= MAX_REFUSED_JOINS {
            session.close(DisconnectReason::TooManyJoins);
        }
    }

    /// When a session's task must wake: for its heartbeat, or for its
    /// socket's timer.
    pub(crate) fn wake_at(session: &Session<N::Data>, heartbeat: &heartbeat::Heartbeat) -> tokio::time::Instant {
        let beat = heartbeat.wake_at();
        session.timer().map_or(beat, |t| t.min(beat))
    }

    /// The session's task woke: the heartbeat, then the socket's timer if
    /// it is due.
    pub(crate) fn on_wake(
        &self,
        session: &Session<N::Data>,
        heartbeat: &mut heartbeat::Heartbeat,
    ) -> Result<(), DisconnectReason> {
        heartbeat.tick(session)?;
        if session.take_due_timer() {
            let socket = session.slot().socket.clone();
            if let Some(socket) = socket.filter(Socket::is_connected) {
                self.ns.timer(&socket);
            }
        }
        Ok(())
    }

    /// The session ended: its socket's disconnect is reported (once).
    pub(crate) fn finish(&self, session: &Session<N::Data>) {
        let socket = {
            let mut slot = session.slot();
            slot.finished = true;
            slot.socket.take()
        };
        if let Some(socket) = socket
            && socket.left()
        {
            self.ns.disconnect(&socket, session.reason());
        }
    }

    /// Ends every session once what is queued for it is written (shutdown):
    /// a transport close, not a namespace disconnect, so that clients
    /// reconnect by themselves (here after a restart, or elsewhere).
    pub fn close_all(&self) {
        let sessions: Vec<_> = self.registry().values().cloned().collect();
        for s in sessions {
            s.close(DisconnectReason::ServerShutdown);
        }
    }
}
