//! HTTP long-polling: the handshake, the GET that waits for packets, the
//! POST that carries the client's, and the session's one task (its
//! heartbeat) while no websocket carries it.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Body;
use hyper::{Response, StatusCode, header};
use wecare_proto::codec::engine;

use super::heartbeat::Heartbeat;
use super::pending::Ticket;
use super::query::EngineError;
use super::session::{PollRefused, Session, TransportKind};
use super::{ResponseBody, Server};
use crate::outbox::Outbox;
use crate::socket::{DisconnectReason, Namespace};

/// Packets of one polling payload are separated by a record separator.
const SEPARATOR: char = '\u{1e}';

fn text(body: impl Into<Bytes>, content_type: &'static str) -> Response<ResponseBody> {
    let mut res = Response::new(Full::new(body.into()));
    res.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static(content_type));
    res
}

/// A new polling session: the `open` packet.
pub(super) fn open<N: Namespace>(server: &Arc<Server<N>>, query: &str, ticket: Ticket) -> Response<ResponseBody> {
    let c = &server.config;
    let session = Session::new(query, TransportKind::Polling, c.queue_frames, ticket);
    let open = engine::encode_open(
        &session.sid,
        &["websocket"],
        millis(c.ping_interval),
        millis(c.ping_timeout),
        c.max_payload as u64,
    );
    server.register(&session);
    tokio::spawn(run(Arc::clone(server), session));
    text(open, "text/plain; charset=UTF-8")
}

pub(super) fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The heartbeat of a polling session, until a websocket takes it over or
/// it ends; then its socket's disconnect is reported, and it stays
/// reachable until a poll has taken its last packets (a disconnect, an
/// `auth:expired`) and the close packet, or the close grace passes.
async fn run<N: Namespace>(server: Arc<Server<N>>, session: Arc<Session<N::Data>>) {
    let c = &server.config;
    let mut heartbeat = Heartbeat::new(c.ping_interval, c.ping_timeout, Some(c.connect_timeout));
    loop {
        tokio::select! {
            () = session.closed.cancelled() => break,
            () = session.timer_changed.notified() => {}
            () = tokio::time::sleep_until(Server::<N>::wake_at(&session, &heartbeat)) => {
                if !session.is_polling() {
                    // The websocket's task owns the session now.
                    return;
                }
                if let Err(reason) = server.on_wake(&session, &mut heartbeat) {
                    session.close(reason);
                    break;
                }
            }
        }
    }
    server.finish(&session);
    // A live client polls again within a round trip; a gone one is not
    // waited for long (a shutdown waits for every session to end).
    let told = session.outbox.wait_until(|_: &Outbox| session.is_close_delivered());
    let _ = tokio::time::timeout(c.close_grace, told).await;
    server.remove(&session);
}

/// Ends the GET or POST begun on the session however the request ends.
struct InProgress<'a, D> {
    session: &'a Session<D>,
    get: bool,
}

impl<D> Drop for InProgress<'_, D> {
    fn drop(&mut self) {
        self.session.end(self.get);
    }
}

fn begin<'a, N: Namespace>(session: &'a Session<N::Data>, get: bool) -> Result<InProgress<'a, N::Data>, EngineError> {
    match session.begin(get) {
        Ok(()) => Ok(InProgress { session, get }),
        Err(PollRefused::Overlap) => {
            session.close(DisconnectReason::TransportError);
            Err(EngineError::BadRequest)
        }
        Err(PollRefused::NotPolling) => Err(EngineError::BadRequest),
    }
}

/// A GET: waits for packets, then answers them all; a noop when a
/// websocket takes over; the close packet last when the session ended.
pub(super) async fn poll<N: Namespace>(
    server: &Arc<Server<N>>,
    session: &Arc<Session<N::Data>>,
) -> Response<ResponseBody> {
    let _in_progress = match begin::<N>(session, true) {
        Ok(g) => g,
        Err(e) => return e.response(),
    };
    session.outbox.wait_until(|o: &Outbox| o.has_work() || !session.is_polling()).await;
    let mut frames = Vec::new();
    let closed = session.outbox.take(&mut frames);
    let mut body = String::with_capacity(frames.iter().map(|f| f.len() + 1).sum::<usize>() + 1);
    for f in &frames {
        if !body.is_empty() {
            body.push(SEPARATOR);
        }
        body.push_str(f);
    }
    // The close packet goes alone, after the last frames were answered:
    // the client reads a payload's packets a tick after its close packet,
    // so a disconnect sent with it would be read as a lost transport.
    if body.is_empty() {
        body.push(if closed { '1' } else { '6' });
    }
    session.outbox.written();
    if closed && frames.is_empty() {
        server.remove(session);
        session.close_delivered();
    }
    text(body, "text/plain; charset=UTF-8")
}

/// A POST: the client's packets, read within the payload bound.
pub(super) async fn post<N, B>(
    server: &Arc<Server<N>>,
    session: &Arc<Session<N::Data>>,
    body: B,
) -> Response<ResponseBody>
where
    N: Namespace,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let _in_progress = match begin::<N>(session, false) {
        Ok(g) => g,
        Err(e) => return e.response(),
    };
    let bytes = match Limited::new(body, server.config.max_payload).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            let too_large = e.downcast_ref::<http_body_util::LengthLimitError>().is_some();
            let (reason, error) = if too_large {
                (DisconnectReason::PayloadTooLarge, EngineError::PayloadTooLarge)
            } else {
                (DisconnectReason::TransportError, EngineError::BadRequest)
            };
            session.close(reason);
            return error.response();
        }
    };
    let Ok(payload) = std::str::from_utf8(&bytes) else {
        session.close(DisconnectReason::TransportError);
        return EngineError::BadRequest.response();
    };
    for packet in payload.split(SEPARATOR) {
        if let Err(reason) = server.on_text(session, packet) {
            session.close(reason);
            break;
        }
    }
    let mut res = text("ok", "text/html");
    *res.status_mut() = StatusCode::OK;
    res
}
