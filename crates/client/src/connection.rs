//! A live connection: the reader task (heartbeat, acks, events) and the
//! writer task (the only owner of the websocket sink), and the state they
//! share with the [`SocketClient`](crate::SocketClient) handles.
//!
//! Both tasks end when the connection ends; the reader is the one place that
//! turns an ending into [`ServerEvent::Disconnected`] and failed acks.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_util::sync::CancellationToken;
use tracing::{debug, trace};

use crate::ack::AckRegistry;
use crate::engine::{self, EnginePacket};
use crate::event::{RawEvent, ServerEvent};
use crate::packet::{self, PacketKind};
use crate::{ClientError, EventMode};

pub(crate) type Ws = WebSocketStream<crate::tls::Stream>;

/// Frames waiting for the writer. Bounded: emitters wait when it is full.
const OUTGOING_BUFFER: usize = 1024;
/// Frames the writer feeds before one flush.
const WRITE_BATCH: usize = 64;

/// Why a connection ended, in the Socket.IO client's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DisconnectReason {
    ServerDisconnect,
    ClientDisconnect,
    TransportClose,
    TransportError,
    PingTimeout,
}

impl DisconnectReason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::ServerDisconnect => "io server disconnect",
            Self::ClientDisconnect => "io client disconnect",
            Self::TransportClose => "transport close",
            Self::TransportError => "transport error",
            Self::PingTimeout => "ping timeout",
        }
    }
}

/// A frame for the writer, or the request to close gracefully.
#[derive(Debug)]
pub(crate) enum Outgoing {
    Frame(Message),
    /// Send `41` and a websocket close, then report on `done`.
    Close {
        done: oneshot::Sender<()>,
    },
}

/// State shared by the handles and both tasks.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) namespace: String,
    pub(crate) acks: AckRegistry,
    outgoing: mpsc::Sender<Outgoing>,
    connected: AtomicBool,
    /// The first recorded reason wins.
    reason: Mutex<Option<DisconnectReason>>,
    /// Tells both tasks to stop.
    shutdown: CancellationToken,
    /// Cancelled by the reader once the connection is fully torn down.
    terminated: CancellationToken,
}

impl Shared {
    pub(crate) fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire) && !self.shutdown.is_cancelled()
    }

    /// Queues a frame for the writer, waiting while the queue is full.
    pub(crate) async fn send(&self, frame: String) -> Result<(), ClientError> {
        if !self.is_connected() {
            return Err(ClientError::Closed);
        }
        self.outgoing.send(Outgoing::Frame(Message::text(frame))).await.map_err(|_| ClientError::Closed)
    }

    /// Records why the connection ends, unless a reason is already known.
    pub(crate) fn record_reason(&self, reason: DisconnectReason) {
        let mut slot = self.reason.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        slot.get_or_insert(reason);
    }

    /// Records `reason` and tells both tasks to stop.
    pub(crate) fn stop(&self, reason: DisconnectReason) {
        self.record_reason(reason);
        self.shutdown.cancel();
    }

    /// Asks the writer to leave the namespace and close the websocket, and
    /// waits (at most `limit`) until it has.
    pub(crate) async fn close_gracefully(&self, limit: Duration) {
        if !self.is_connected() {
            return;
        }
        let (done, flushed) = oneshot::channel();
        let graceful = async {
            if self.outgoing.send(Outgoing::Close { done }).await.is_ok() {
                let _ = flushed.await;
            }
        };
        let _ = tokio::time::timeout(limit, graceful).await;
    }

    /// Resolves once the reader has torn the connection down.
    pub(crate) async fn terminated(&self) {
        self.terminated.cancelled().await;
    }

    fn reason(&self) -> DisconnectReason {
        self.reason
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .unwrap_or(DisconnectReason::TransportClose)
    }
}

/// Starts the reader and writer of a connected socket.
pub(crate) fn spawn(
    ws: Ws,
    namespace: String,
    heartbeat: Duration,
    mode: EventMode,
    events: mpsc::Sender<ServerEvent>,
) -> Arc<Shared> {
    let (outgoing, outgoing_rx) = mpsc::channel(OUTGOING_BUFFER);
    let shared = Arc::new(Shared {
        namespace,
        acks: AckRegistry::default(),
        outgoing,
        connected: AtomicBool::new(true),
        reason: Mutex::new(None),
        shutdown: CancellationToken::new(),
        terminated: CancellationToken::new(),
    });
    let (sink, stream) = ws.split();
    // Neither task outlives the connection: both stop on `shutdown`, which
    // the reader triggers on every way out.
    tokio::spawn(write_loop(sink, outgoing_rx, Arc::clone(&shared)));
    tokio::spawn(read_loop(stream, Arc::clone(&shared), heartbeat, mode, events));
    shared
}

enum Flow {
    Continue,
    /// A ping arrived: the server is alive.
    Heartbeat,
    Stop(DisconnectReason),
}

async fn read_loop(
    mut stream: SplitStream<Ws>,
    shared: Arc<Shared>,
    heartbeat: Duration,
    mode: EventMode,
    events: mpsc::Sender<ServerEvent>,
) {
    let mut events = Some(events);
    let deadline = tokio::time::sleep(heartbeat);
    tokio::pin!(deadline);
    let cause = loop {
        // Frames before the deadline: a ping that is already buffered (the
        // reader was waiting on a full event channel) must count.
        let frame = tokio::select! {
            biased;
            () = shared.shutdown.cancelled() => break None,
            frame = stream.next() => frame,
            () = &mut deadline => break Some(DisconnectReason::PingTimeout),
        };
        let flow = match frame {
            None => Flow::Stop(DisconnectReason::TransportClose),
            Some(Err(e)) => {
                debug!(error = %e, "websocket read failed");
                Flow::Stop(DisconnectReason::TransportError)
            }
            Some(Ok(Message::Text(text))) => on_text(&shared, text, mode, &mut events).await,
            Some(Ok(Message::Close(_))) => Flow::Stop(DisconnectReason::TransportClose),
            // Binary attachments are not supported; websocket ping/pong is
            // answered by tungstenite itself.
            Some(Ok(_)) => Flow::Continue,
        };
        match flow {
            Flow::Continue => {}
            Flow::Heartbeat => deadline.as_mut().reset(Instant::now() + heartbeat),
            Flow::Stop(reason) => break Some(reason),
        }
    };
    if let Some(reason) = cause {
        shared.stop(reason);
    }
    drop(stream);
    let reason = shared.reason();
    debug!(namespace = %shared.namespace, reason = reason.as_str(), "socket disconnected");
    shared.connected.store(false, Ordering::Release);
    shared.acks.close();
    shared.terminated.cancel();
    // This may wait for an application that does not read; the connection
    // itself is already released.
    if let Some(events) = events {
        let _ = events.send(ServerEvent::Disconnected { reason: reason.as_str().to_owned() }).await;
    }
}

/// Handles one text frame.
async fn on_text(
    shared: &Shared,
    text: Utf8Bytes,
    mode: EventMode,
    events: &mut Option<mpsc::Sender<ServerEvent>>,
) -> Flow {
    let frame = text.as_str();
    let msg = match engine::decode(frame) {
        Ok(EnginePacket::Message(msg)) => msg,
        Ok(EnginePacket::Ping(payload)) => {
            return match shared.send(engine::pong(payload)).await {
                Ok(()) => Flow::Heartbeat,
                Err(_) => Flow::Stop(DisconnectReason::TransportError),
            };
        }
        Ok(EnginePacket::Close) => return Flow::Stop(DisconnectReason::TransportClose),
        Ok(EnginePacket::Open(_) | EnginePacket::Pong | EnginePacket::Other) => {
            return Flow::Continue;
        }
        Err(e) => {
            debug!(error = %e, "ignoring malformed engine.io frame");
            return Flow::Continue;
        }
    };
    let packet = match packet::decode(msg) {
        Ok(packet) => packet,
        Err(e) => {
            debug!(error = %e, "ignoring malformed socket.io packet");
            return Flow::Continue;
        }
    };
    if packet.namespace != shared.namespace {
        trace!(namespace = packet.namespace, "ignoring packet for another namespace");
        return Flow::Continue;
    }
    match packet.kind {
        PacketKind::Event => {
            let payload = packet::span_of(frame, packet.payload);
            // Acks requested by the server are not answered: no event of the
            // contract asks a client for one.
            let event = match decode_event(text, payload, mode) {
                Ok(event) => event,
                Err(e) => {
                    debug!(error = %e, "ignoring malformed event");
                    return Flow::Continue;
                }
            };
            if let Some(tx) = events {
                // Waiting here is the backpressure; a shutdown (close, last
                // handle dropped) must still get through.
                tokio::select! {
                    biased;
                    sent = tx.send(event) => if sent.is_err() {
                        // The application dropped the receiver; acks still work.
                        *events = None;
                    },
                    () = shared.shutdown.cancelled() => {}
                }
            }
            Flow::Continue
        }
        PacketKind::Ack => {
            if let Some(id) = packet.ack_id {
                let result = packet::first_ack_arg(packet.payload).map_err(|e| ClientError::Protocol(e.to_string()));
                shared.acks.complete(id, result);
            }
            Flow::Continue
        }
        PacketKind::BinaryAck => {
            if let Some(id) = packet.ack_id {
                let err = ClientError::Protocol("binary acks are not supported".into());
                shared.acks.complete(id, Err(err));
            }
            Flow::Continue
        }
        PacketKind::Disconnect | PacketKind::ConnectError => Flow::Stop(DisconnectReason::ServerDisconnect),
        PacketKind::Connect | PacketKind::BinaryEvent => Flow::Continue,
    }
}

fn decode_event(text: Utf8Bytes, payload: std::ops::Range<usize>, mode: EventMode) -> Result<ServerEvent, ClientError> {
    let protocol = |e: &dyn std::fmt::Display| ClientError::Protocol(e.to_string());
    match mode {
        EventMode::Raw => RawEvent::new(text, payload).map(ServerEvent::Raw).map_err(|e| protocol(&e)),
        EventMode::Parsed => {
            let payload = text.as_str().get(payload).unwrap_or_default();
            let args = packet::event_args(payload).map_err(|e| protocol(&e))?;
            let data = match args.data {
                Some(span) => {
                    let json = payload.get(span).unwrap_or("null");
                    serde_json::from_str(json).map_err(|e| protocol(&e))?
                }
                None => serde_json::Value::Null,
            };
            Ok(ServerEvent::Event { name: args.name.into_owned(), data })
        }
    }
}

enum Written {
    Open,
    Closed,
}

async fn write_loop(mut sink: SplitSink<Ws, Message>, mut rx: mpsc::Receiver<Outgoing>, shared: Arc<Shared>) {
    loop {
        let step = tokio::select! {
            biased;
            () = shared.shutdown.cancelled() => break,
            step = write_next(&mut sink, &mut rx, &shared.namespace) => step,
        };
        match step {
            Ok(Some(Written::Open)) => {}
            Ok(Some(Written::Closed) | None) => break,
            Err(e) => {
                debug!(error = %e, "websocket write failed");
                shared.stop(DisconnectReason::TransportError);
                break;
            }
        }
    }
}

/// Waits for the next frame, then writes it and whatever else is queued
/// (up to [`WRITE_BATCH`]) with one flush. `None` when every sender is gone.
async fn write_next(
    sink: &mut SplitSink<Ws, Message>,
    rx: &mut mpsc::Receiver<Outgoing>,
    namespace: &str,
) -> Result<Option<Written>, tokio_tungstenite::tungstenite::Error> {
    let Some(mut item) = rx.recv().await else {
        return Ok(None);
    };
    let mut fed = 0;
    loop {
        match item {
            Outgoing::Frame(message) => sink.feed(message).await?,
            Outgoing::Close { done } => {
                sink.feed(Message::text(packet::encode_disconnect(namespace))).await?;
                sink.send(Message::Close(None)).await?;
                let _ = done.send(());
                return Ok(Some(Written::Closed));
            }
        }
        fed += 1;
        match rx.try_recv() {
            Ok(next) if fed < WRITE_BATCH => item = next,
            Ok(next) => {
                sink.flush().await?;
                fed = 0;
                item = next;
            }
            Err(_) => break,
        }
    }
    sink.flush().await?;
    Ok(Some(Written::Open))
}
