//! The websocket transport: a session opened on a websocket, or a polling
//! session's upgrade (`2probe` → `3probe`, then `5`). One task per
//! connection reads, writes and keeps the heartbeat.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::Full;
use hyper::{Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use wecare_proto::codec::engine;

use super::heartbeat::Heartbeat;
use super::pending::Ticket;
use super::polling::millis;
use super::query::EngineError;
use super::session::{Session, TransportKind};
use super::{ResponseBody, Server};
use crate::outbox::{Frame, Outbox};
use crate::socket::{DisconnectReason, Namespace};

type Ws = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// The `101 Switching Protocols` answer, once the request is a websocket
/// handshake.
fn switching<B>(req: &Request<B>) -> Result<Response<ResponseBody>, EngineError> {
    let h = req.headers();
    let has = |name: header::HeaderName, want: &str| {
        h.get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(want)))
    };
    if !has(header::UPGRADE, "websocket") || !has(header::CONNECTION, "upgrade") {
        return Err(EngineError::BadRequest);
    }
    if h.get(header::SEC_WEBSOCKET_VERSION).and_then(|v| v.to_str().ok()) != Some("13") {
        return Err(EngineError::BadRequest);
    }
    let key = h.get(header::SEC_WEBSOCKET_KEY).ok_or(EngineError::BadRequest)?;
    let mut res = Response::new(Full::new(Bytes::new()));
    *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let hs = res.headers_mut();
    hs.insert(header::CONNECTION, header::HeaderValue::from_static("Upgrade"));
    hs.insert(header::UPGRADE, header::HeaderValue::from_static("websocket"));
    let accept =
        header::HeaderValue::from_str(&derive_accept_key(key.as_bytes())).map_err(|_| EngineError::BadRequest)?;
    hs.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    Ok(res)
}

fn ws_config<N: Namespace>(server: &Server<N>) -> WebSocketConfig {
    let c = &server.config;
    WebSocketConfig::default()
        .read_buffer_size(c.ws_read_buffer)
        .write_buffer_size(c.ws_write_buffer)
        .max_message_size(Some(c.max_payload))
        .max_frame_size(Some(c.max_payload))
}

/// Takes the connection once hyper has switched it, then runs `then`.
fn on_upgraded<N: Namespace, B, F, Fut>(
    server: &Arc<Server<N>>,
    req: Request<B>,
    then: F,
) -> Result<Response<ResponseBody>, EngineError>
where
    B: Send + 'static,
    F: FnOnce(Ws) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let res = switching(&req)?;
    let config = ws_config(server);
    tokio::spawn(async move {
        match hyper::upgrade::on(req).await {
            Ok(upgraded) => {
                let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config)).await;
                // A task of its own: the connection's one long-lived task
                // holds its loop alone, not the request it came from.
                tokio::spawn(then(ws));
            }
            Err(e) => tracing::debug!(error = %e, "websocket upgrade failed"),
        }
    });
    Ok(res)
}

/// A session that starts on a websocket: the `open` packet is its first
/// message.
pub(super) fn open<N: Namespace, B: Send + 'static>(
    server: &Arc<Server<N>>,
    req: Request<B>,
    query: &str,
    ticket: Ticket,
) -> Result<Response<ResponseBody>, EngineError> {
    let c = &server.config;
    let session = Session::new(query, TransportKind::Websocket, c.queue_frames, ticket);
    let open =
        engine::encode_open(&session.sid, &[], millis(c.ping_interval), millis(c.ping_timeout), c.max_payload as u64);
    session.outbox.push_control(Frame::from(open));
    let server2 = Arc::clone(server);
    // The closure returns `run`'s future itself (no async block around it
    // that would keep a second copy of the websocket in the task).
    let res = on_upgraded(server, req, move |ws| {
        server2.register(&session);
        run(server2, session, ws, Start::New)
    })?;
    Ok(res)
}

/// How a websocket begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// It opened the session.
    New,
    /// It takes over a polling session: the probe first.
    Upgrade,
}

/// A polling session's websocket: the probe, then the switch.
pub(super) fn upgrade<N: Namespace, B: Send + 'static>(
    server: &Arc<Server<N>>,
    req: Request<B>,
    session: Arc<Session<N::Data>>,
) -> Result<Response<ResponseBody>, EngineError> {
    let server2 = Arc::clone(server);
    on_upgraded(server, req, move |ws| run(server2, session, ws, Start::Upgrade))
}

/// `2probe` → `3probe` (polls now end with a noop), then `5`: true once
/// the websocket carries the session.
async fn probe<N: Namespace>(server: &Server<N>, session: &Session<N::Data>, ws: &mut Ws) -> bool {
    let deadline = tokio::time::Instant::now() + server.config.ping_timeout;
    let mut probed = false;
    loop {
        let msg = tokio::select! {
            m = tokio::time::timeout_at(deadline, ws.next()) => m,
            () = session.closed.cancelled() => return false,
        };
        match msg {
            Ok(Some(Ok(Message::Text(t)))) if t.as_str() == "2probe" => {
                if ws.send(Message::text("3probe")).await.is_err() {
                    return false;
                }
                probed = true;
                session.upgrading();
            }
            Ok(Some(Ok(Message::Text(t)))) if t.as_str() == "5" && probed => {
                session.upgraded();
                return true;
            }
            Ok(Some(Ok(_))) => {}
            _ => return false,
        }
    }
}

/// Reads, writes and pings until the session ends; then reports it. An
/// upgrade that fails leaves the session to polling.
async fn run<N: Namespace>(server: Arc<Server<N>>, session: Arc<Session<N::Data>>, mut ws: Ws, start: Start) {
    if start == Start::Upgrade && !probe(&server, &session, &mut ws).await {
        return session.upgrade_failed();
    }
    let c = &server.config;
    let connect_timeout = (start == Start::New).then_some(c.connect_timeout);
    let mut heartbeat = Heartbeat::new(c.ping_interval, c.ping_timeout, connect_timeout);
    let mut batch = Vec::new();
    // Reading stops at a protocol fault (what is queued is still written);
    // a connection that closed or failed ends the task at once.
    let mut reading = true;
    let reason = loop {
        // Unbiased: a client that never stops sending still gets its acks.
        tokio::select! {
            msg = ws.next(), if reading => {
                let handled = match msg {
                    Some(Ok(Message::Text(t))) => server.on_text(&session, &t),
                    Some(Ok(Message::Binary(_))) => server.on_binary(&session),
                    // Websocket pings are answered by the library.
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => Ok(()),
                    Some(Ok(Message::Close(_))) | None => break DisconnectReason::TransportClose,
                    Some(Err(WsError::Capacity(_))) => break DisconnectReason::PayloadTooLarge,
                    Some(Err(_)) => break DisconnectReason::TransportError,
                };
                if let Err(reason) = handled {
                    reading = false;
                    session.close(reason);
                }
            }
            // An abort closes the queue too: one wait sees both (a second
            // waiter on the queue could take the one wake-up meant for this).
            () = session.outbox.wait_until(Outbox::has_work) => {
                if session.is_aborted() {
                    break session.reason();
                }
                let closed = session.outbox.take(&mut batch);
                let written = tokio::select! {
                    r = write(&mut ws, &mut batch) => r,
                    () = session.outbox.wait_until(|_: &Outbox| session.is_aborted()) => Err(()),
                };
                session.outbox.written();
                if written.is_err() {
                    session.close(DisconnectReason::TransportError);
                    break session.reason();
                }
                if closed {
                    // The close handshake, reading what the peer still sends
                    // until its close: a connection dropped with unread input
                    // is reset, and a reset can discard the last frames
                    // (acks) before the peer has read them.
                    // Boxed: it runs once, at the end; an idle session's task
                    // does not carry its space.
                    let closing = Box::pin(async {
                        let _ = ws.close(None).await;
                        while let Some(Ok(_)) = ws.next().await {}
                    });
                    let _ = tokio::time::timeout(c.close_grace, closing).await;
                    break session.reason();
                }
            }
            () = session.timer_changed.notified() => {}
            () = tokio::time::sleep_until(Server::<N>::wake_at(&session, &heartbeat)) => {
                if let Err(reason) = server.on_wake(&session, &mut heartbeat) {
                    session.close(reason);
                }
            }
        }
    };
    session.close(reason);
    server.finish(&session);
    server.remove(&session);
}

/// Frames of batch space a websocket keeps between writes: a live watcher's
/// round fits; the space of a larger burst (a catch-up) is given back.
const KEEP_BATCH: usize = 64;

async fn write(ws: &mut Ws, batch: &mut Vec<Frame>) -> Result<(), ()> {
    for frame in batch.drain(..) {
        ws.feed(Message::Text(frame)).await.map_err(|_| ())?;
    }
    if batch.capacity() > KEEP_BATCH {
        batch.shrink_to(KEEP_BATCH);
    }
    ws.flush().await.map_err(|_| ())
}
