//! Engine.IO v4 framing over websocket text frames: the open handshake,
//! the heartbeat and the `4` prefix that carries Socket.IO packets.

use std::time::Duration;

use serde::Deserialize;

/// Reply to a server ping without payload (the only kind sent on a
/// websocket-only connection; `2probe` belongs to the polling upgrade).
pub const PONG: &str = "3";

/// One decoded Engine.IO packet, borrowing from the frame text.
#[derive(Debug, PartialEq)]
pub enum EnginePacket<'a> {
    /// `0{json}`: the session parameters.
    Open(OpenInfo),
    /// `1`: the server closes the session.
    Close,
    /// `2[payload]`: a heartbeat ping; answer `3[payload]`.
    Ping(&'a str),
    /// `3[payload]`.
    Pong,
    /// `4...`: a Socket.IO packet.
    Message(&'a str),
    /// `5` (upgrade) or `6` (noop): meaningless on a websocket-only session.
    Other,
}

/// The parameters of the `open` packet.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenInfo {
    /// The Engine.IO session id.
    pub sid: String,
    /// Milliseconds between server pings.
    pub ping_interval: u64,
    /// Milliseconds the server waits for a pong.
    pub ping_timeout: u64,
    /// The largest frame the server accepts, in bytes.
    #[serde(default)]
    pub max_payload: u64,
}

impl OpenInfo {
    /// How long without a ping means the server is gone: the Engine.IO client
    /// rule, `pingInterval + pingTimeout`.
    pub fn heartbeat_deadline(&self) -> Duration {
        Duration::from_millis(self.ping_interval.saturating_add(self.ping_timeout))
    }
}

/// Why a frame is not a valid Engine.IO packet.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EngineDecodeError {
    /// A frame with no packet type.
    #[error("empty engine.io frame")]
    Empty,
    /// A packet type Engine.IO v4 does not have.
    #[error("unknown engine.io packet type {0:?}")]
    UnknownType(char),
    /// An open packet whose JSON is not the session parameters.
    #[error("malformed open packet: {0}")]
    BadOpen(String),
}

/// Decodes one websocket text frame.
pub fn decode(frame: &str) -> Result<EnginePacket<'_>, EngineDecodeError> {
    let mut chars = frame.chars();
    let kind = chars.next().ok_or(EngineDecodeError::Empty)?;
    let rest = chars.as_str();
    Ok(match kind {
        '0' => EnginePacket::Open(serde_json::from_str(rest).map_err(|e| EngineDecodeError::BadOpen(e.to_string()))?),
        '1' => EnginePacket::Close,
        '2' => EnginePacket::Ping(rest),
        '3' => EnginePacket::Pong,
        '4' => EnginePacket::Message(rest),
        '5' | '6' => EnginePacket::Other,
        other => return Err(EngineDecodeError::UnknownType(other)),
    })
}

/// The server's `open` packet: `0{"sid",upgrades,pingInterval,pingTimeout,maxPayload}`.
pub fn encode_open(
    sid: &str,
    upgrades: &[&str],
    ping_interval_ms: u64,
    ping_timeout_ms: u64,
    max_payload: u64,
) -> String {
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Open<'a> {
        sid: &'a str,
        upgrades: &'a [&'a str],
        ping_interval: u64,
        ping_timeout: u64,
        max_payload: u64,
    }
    let open = Open { sid, upgrades, ping_interval: ping_interval_ms, ping_timeout: ping_timeout_ms, max_payload };
    // Strings and numbers always serialize.
    let mut frame = String::from("0");
    frame.push_str(&serde_json::to_string(&open).unwrap_or_default());
    frame
}

/// The pong frame answering a ping that carried `payload`.
pub fn pong(payload: &str) -> String {
    let mut frame = String::with_capacity(1 + payload.len());
    frame.push_str(PONG);
    frame.push_str(payload);
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_packet_yields_session_parameters() {
        let frame = r#"0{"sid":"abc","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#;
        let EnginePacket::Open(info) = decode(frame).unwrap() else {
            panic!("not an open packet");
        };
        assert_eq!(info.sid, "abc");
        assert_eq!(info.max_payload, 1_000_000);
        assert_eq!(info.heartbeat_deadline(), Duration::from_secs(45));
    }

    #[test]
    fn the_servers_open_packet_decodes_as_the_client_reads_it() {
        let frame = encode_open("abc", &["websocket"], 25_000, 20_000, 1_048_576);
        assert!(frame.starts_with(r#"0{"sid":"abc","upgrades":["websocket"],"#), "{frame}");
        let EnginePacket::Open(info) = decode(&frame).unwrap() else { panic!("not an open packet") };
        assert_eq!((info.ping_interval, info.ping_timeout, info.max_payload), (25_000, 20_000, 1_048_576));
    }

    #[test]
    fn open_packet_without_max_payload_is_accepted() {
        let frame = r#"0{"sid":"s","pingInterval":1,"pingTimeout":2}"#;
        assert!(matches!(decode(frame), Ok(EnginePacket::Open(_))));
    }

    #[test]
    fn malformed_open_packet_is_an_error() {
        assert!(matches!(decode("0{\"sid\":1}"), Err(EngineDecodeError::BadOpen(_))));
    }

    #[test]
    fn heartbeat_and_message_packets_decode() {
        assert_eq!(decode("2").unwrap(), EnginePacket::Ping(""));
        assert_eq!(decode("2probe").unwrap(), EnginePacket::Ping("probe"));
        assert_eq!(decode("3").unwrap(), EnginePacket::Pong);
        assert_eq!(decode("1").unwrap(), EnginePacket::Close);
        assert_eq!(decode("6").unwrap(), EnginePacket::Other);
        assert_eq!(decode("42/x,[\"a\"]").unwrap(), EnginePacket::Message("2/x,[\"a\"]"));
    }

    #[test]
    fn empty_or_unknown_frames_are_errors() {
        assert_eq!(decode(""), Err(EngineDecodeError::Empty));
        assert_eq!(decode("9"), Err(EngineDecodeError::UnknownType('9')));
    }

    #[test]
    fn pong_echoes_the_ping_payload() {
        assert_eq!(pong(""), "3");
        assert_eq!(pong("probe"), "3probe");
    }

    #[test]
    fn heartbeat_deadline_saturates() {
        let info = OpenInfo { sid: String::new(), ping_interval: u64::MAX, ping_timeout: 5, max_payload: 0 };
        assert_eq!(info.heartbeat_deadline(), Duration::from_millis(u64::MAX));
    }
}
