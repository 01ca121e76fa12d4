//! [`SocketClient`]: the handshake (websocket upgrade, Engine.IO open,
//! namespace connect) and the cheap, cloneable handle that emits on the
//! connection.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tracing::debug;

use crate::connection::{self, DisconnectReason, Shared, Ws};
use crate::endpoint::Endpoint;
use crate::engine::{self, EnginePacket, OpenInfo};
use crate::packet::{self, PacketKind};
use crate::tls;
use crate::{ClientError, ConnectOptions, ServerEvent};

/// How long [`SocketClient::close`] waits for the goodbye frames to be written.
const CLOSE_FLUSH_LIMIT: Duration = Duration::from_secs(2);

/// A handle to one Socket.IO namespace connection.
///
/// Cloning is cheap; all clones share the connection. The connection closes
/// when [`close`](Self::close) is called, when the server ends it, or when
/// the last handle is dropped.
#[derive(Debug, Clone)]
pub struct SocketClient {
    handle: Arc<Handle>,
}

#[derive(Debug)]
struct Handle {
    shared: Arc<Shared>,
    sid: String,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.stop(DisconnectReason::ClientDisconnect);
    }
}

impl SocketClient {
    /// Connects and joins the namespace. Returns the handle and the channel
    /// of server events (bounded by
    /// [`ConnectOptions::event_buffer`], whose docs say what a full channel does).
    ///
    /// # Errors
    /// [`ClientError::ConnectRefused`] when the server rejects the namespace
    /// connection (`connect_error`), [`ClientError::HttpStatus`] when it
    /// refuses the upgrade, [`ClientError::Certificate`] or
    /// [`ClientError::Tls`] when the TLS handshake fails, [`ClientError::Timeout`] after
    /// [`ConnectOptions::connect_timeout`], [`ClientError::InvalidOptions`],
    /// and I/O or protocol errors.
    pub async fn connect(opts: ConnectOptions) -> Result<(SocketClient, mpsc::Receiver<ServerEvent>), ClientError> {
        tokio::time::timeout(opts.connect_timeout, Self::handshake(opts)).await.map_err(|_| ClientError::Timeout)?
    }

    async fn handshake(opts: ConnectOptions) -> Result<(SocketClient, mpsc::Receiver<ServerEvent>), ClientError> {
        if !opts.namespace.starts_with('/') || opts.namespace.contains(',') {
            return Err(ClientError::InvalidOptions(format!(
                "namespace {:?} must start with '/' and contain no ','",
                opts.namespace
            )));
        }
        let endpoint = Endpoint::parse(&opts.url, &opts.query)?;
        let mut request = endpoint.ws_url.as_str().into_client_request()?;
        for (name, value) in &opts.extra_headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| ClientError::InvalidOptions(format!("header {name:?}: {e}")))?;
            let value =
                HeaderValue::from_str(value).map_err(|e| ClientError::InvalidOptions(format!("header {name}: {e}")))?;
            request.headers_mut().append(name, value);
        }
        let stream = tls::dial(&endpoint, &opts.tls).await?;
        let (mut ws, _response) = tokio_tungstenite::client_async_with_config(request, stream, None).await?;
        let open = read_open(&mut ws).await?;
        let auth = if opts.auth.is_null() { None } else { Some(serde_json::to_string(&opts.auth)?) };
        let connect = packet::encode_connect(&opts.namespace, auth.as_deref());
        ws.send(Message::text(connect)).await?;
        let sid = join_namespace(&mut ws, &opts.namespace).await?;
        debug!(namespace = %opts.namespace, %sid, engine_sid = %open.sid, "socket connected");
        let (events_tx, events_rx) = mpsc::channel(opts.event_buffer.max(1));
        let shared = connection::spawn(ws, opts.namespace, open.heartbeat_deadline(), opts.event_mode, events_tx);
        let client = SocketClient { handle: Arc::new(Handle { shared, sid }) };
        Ok((client, events_rx))
    }

    /// The Socket.IO session id the server assigned to this namespace connection.
    pub fn sid(&self) -> &str {
        &self.handle.sid
    }

    /// Emits `event` with `data`, without asking for an ack.
    ///
    /// # Errors
    /// [`ClientError::Closed`] when the connection is gone.
    pub async fn emit(&self, event: &str, data: &serde_json::Value) -> Result<(), ClientError> {
        let data_json = serde_json::to_string(data)?;
        self.emit_raw(event, &data_json).await
    }

    /// Emits `event` with pre-serialized `data_json` (which must be valid
    /// JSON: it is copied into the frame unchecked), without an ack.
    ///
    /// # Errors
    /// [`ClientError::Closed`] when the connection is gone.
    pub async fn emit_raw(&self, event: &str, data_json: &str) -> Result<(), ClientError> {
        let shared = &self.handle.shared;
        let frame = packet::encode_event(&shared.namespace, None, event, data_json);
        shared.send(frame).await
    }

    /// Emits `event` with `data` and waits for the server's ack; returns its
    /// first argument (`null` if the ack had none).
    ///
    /// # Errors
    /// [`ClientError::Timeout`] when no ack arrived within `timeout` (counted
    /// from the call, queueing included), [`ClientError::Closed`] when the
    /// connection ended first.
    pub async fn emit_with_ack(
        &self,
        event: &str,
        data: &serde_json::Value,
        timeout: Duration,
    ) -> Result<serde_json::Value, ClientError> {
        let data_json = serde_json::to_string(data)?;
        self.emit_raw_with_ack(event, &data_json, timeout).await
    }

    /// [`emit_with_ack`](Self::emit_with_ack) with pre-serialized
    /// `data_json`, which must be valid JSON (it is copied unchecked).
    ///
    /// # Errors
    /// As [`emit_with_ack`](Self::emit_with_ack).
    pub async fn emit_raw_with_ack(
        &self,
        event: &str,
        data_json: &str,
        timeout: Duration,
    ) -> Result<serde_json::Value, ClientError> {
        let deadline = Instant::now() + timeout;
        let shared = &self.handle.shared;
        let pending = shared.acks.register()?;
        let frame = packet::encode_event(&shared.namespace, Some(pending.id()), event, data_json);
        tokio::time::timeout_at(deadline, shared.send(frame)).await.map_err(|_| ClientError::Timeout)??;
        pending.wait(deadline).await
    }

    /// Whether the connection is up (it never comes back once down: connect
    /// again for a new one).
    pub fn is_connected(&self) -> bool {
        self.handle.shared.is_connected()
    }

    /// Leaves the namespace (`41`), closes the websocket, and returns once
    /// pending acks have failed with [`ClientError::Closed`] and
    /// [`ServerEvent::Disconnected`] (`"io client disconnect"`) is queued.
    /// Calling it again, or after the server closed, returns at once.
    pub async fn close(&self) {
        let shared = &self.handle.shared;
        shared.record_reason(DisconnectReason::ClientDisconnect);
        shared.close_gracefully(CLOSE_FLUSH_LIMIT).await;
        shared.stop(DisconnectReason::ClientDisconnect);
        shared.terminated().await;
    }
}

/// Reads the Engine.IO open packet, the server's first frame.
async fn read_open(ws: &mut Ws) -> Result<OpenInfo, ClientError> {
    loop {
        match next_text(ws).await? {
            Some(text) => {
                return match engine::decode(text.as_str()) {
                    Ok(EnginePacket::Open(info)) => Ok(info),
                    Ok(other) => Err(ClientError::Protocol(format!("expected engine.io open packet, got {other:?}"))),
                    Err(e) => Err(ClientError::Protocol(e.to_string())),
                };
            }
            None => continue,
        }
    }
}

/// Waits for the namespace connect reply; answers pings meanwhile.
async fn join_namespace(ws: &mut Ws, namespace: &str) -> Result<String, ClientError> {
    loop {
        let Some(text) = next_text(ws).await? else {
            continue;
        };
        let msg = match engine::decode(text.as_str()) {
            Ok(EnginePacket::Message(msg)) => msg,
            Ok(EnginePacket::Ping(payload)) => {
                ws.send(Message::text(engine::pong(payload))).await?;
                continue;
            }
            Ok(EnginePacket::Close) => return Err(ClientError::Closed),
            Ok(_) => continue,
            Err(e) => return Err(ClientError::Protocol(e.to_string())),
        };
        let packet = packet::decode(msg).map_err(|e| ClientError::Protocol(e.to_string()))?;
        if packet.namespace != namespace {
            continue;
        }
        match packet.kind {
            PacketKind::Connect => return Ok(connect_sid(packet.payload)),
            PacketKind::ConnectError => {
                return Err(ClientError::ConnectRefused { message: connect_error_message(packet.payload) });
            }
            PacketKind::Disconnect => return Err(ClientError::Closed),
            _ => continue,
        }
    }
}

/// The next text frame; `None` for frames to skip; `Closed` at the end.
async fn next_text(ws: &mut Ws) -> Result<Option<Utf8Bytes>, ClientError> {
    match ws.next().await {
        Some(Ok(Message::Text(text))) => Ok(Some(text)),
        Some(Ok(Message::Close(_))) | None => Err(ClientError::Closed),
        Some(Ok(_)) => Ok(None),
        Some(Err(e)) => Err(e.into()),
    }
}

/// The `sid` of a connect reply `{"sid": ...}`; empty if absent.
fn connect_sid(payload: &str) -> String {
    #[derive(Deserialize)]
    struct Connected {
        sid: String,
    }
    serde_json::from_str::<Connected>(payload).map(|c| c.sid).unwrap_or_default()
}

/// The message of a `connect_error`: `{"message": ...}` in protocol v5, a
/// bare string in v4.
fn connect_error_message(payload: &str) -> String {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ConnectError {
        V5 { message: String },
        V4(String),
    }
    match serde_json::from_str::<ConnectError>(payload) {
        Ok(ConnectError::V5 { message } | ConnectError::V4(message)) => message,
        Err(_) => payload.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_error_message_reads_v5_and_v4_forms() {
        assert_eq!(
            connect_error_message(r#"{"message":"Invalid token","data":{"code":"INVALID_TOKEN"}}"#),
            "Invalid token"
        );
        assert_eq!(connect_error_message(r#""Forbidden""#), "Forbidden");
        assert_eq!(connect_error_message("garbage"), "garbage");
    }

    #[test]
    fn connect_sid_is_read_from_the_reply() {
        assert_eq!(connect_sid(r#"{"sid":"Xy1"}"#), "Xy1");
        assert_eq!(connect_sid(""), "");
    }
}
