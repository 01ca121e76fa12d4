//! Socket.IO v5 packets: `<type>[<attachments>-][<namespace>,][<ack id>][json]`,
//! the encoder for what this client sends and the decoder for what it receives.
//!
//! The encoders return whole websocket text frames, Engine.IO `4` prefix
//! included, so that a send is one allocation.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::marker::PhantomData;
use std::ops::Range;

use serde::de::{Deserialize, Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// The Socket.IO packet types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketKind {
    /// `0`: join a namespace (with `auth`), or the server's reply.
    Connect,
    /// `1`: leave a namespace.
    Disconnect,
    /// `2`: an event, `[name, ...args]`.
    Event,
    /// `3`: the answer to an event sent with an ack id.
    Ack,
    /// `4`: a refused connect, `{message}`.
    ConnectError,
    /// `5`: an event with binary attachments (refused on this wire).
    BinaryEvent,
    /// `6`: an ack with binary attachments (refused on this wire).
    BinaryAck,
}

/// One decoded packet, borrowing from the frame text.
#[derive(Debug, PartialEq)]
pub struct Packet<'a> {
    /// What the packet is.
    pub kind: PacketKind,
    /// `/` when the packet names no namespace.
    pub namespace: &'a str,
    /// The ack id: set on an event that asks for an answer, and on the answer.
    pub ack_id: Option<u64>,
    /// The JSON payload, unparsed; empty when absent.
    pub payload: &'a str,
}

/// Why a message is not a valid Socket.IO packet.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PacketDecodeError {
    /// A message with no packet type.
    #[error("empty socket.io packet")]
    Empty,
    /// A packet type Socket.IO v5 does not have.
    #[error("unknown socket.io packet type {0:?}")]
    UnknownType(char),
    /// A binary packet's attachment count is not a number followed by `-`.
    #[error("malformed attachment count")]
    BadAttachments,
    /// An ack id that is not a number in range.
    #[error("ack id out of range")]
    BadAckId,
    /// An event payload that is not `[name, ...args]`.
    #[error("malformed event payload: {0}")]
    BadEvent(String),
    /// An ack payload that is not a JSON array.
    #[error("malformed ack payload: {0}")]
    BadAck(String),
}

/// Decodes the Socket.IO packet inside an Engine.IO message.
pub fn decode(msg: &str) -> Result<Packet<'_>, PacketDecodeError> {
    let bytes = msg.as_bytes();
    let kind = match bytes.first().ok_or(PacketDecodeError::Empty)? {
        b'0' => PacketKind::Connect,
        b'1' => PacketKind::Disconnect,
        b'2' => PacketKind::Event,
        b'3' => PacketKind::Ack,
        b'4' => PacketKind::ConnectError,
        b'5' => PacketKind::BinaryEvent,
        b'6' => PacketKind::BinaryAck,
        _ => {
            let c = msg.chars().next().unwrap_or_default();
            return Err(PacketDecodeError::UnknownType(c));
        }
    };
    let mut i = 1;
    if matches!(kind, PacketKind::BinaryEvent | PacketKind::BinaryAck) {
        let digits = bytes[i..].iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 || bytes.get(i + digits) != Some(&b'-') {
            return Err(PacketDecodeError::BadAttachments);
        }
        i += digits + 1;
    }
    let mut namespace = "/";
    if bytes.get(i) == Some(&b'/') {
        let end = bytes[i..].iter().position(|&b| b == b',').map_or(bytes.len(), |p| i + p);
        namespace = &msg[i..end];
        i = (end + 1).min(bytes.len());
    }
    let digits = bytes[i..].iter().take_while(|b| b.is_ascii_digit()).count();
    let ack_id = if digits > 0 {
        let id = msg[i..i + digits].parse::<u64>().map_err(|_| PacketDecodeError::BadAckId)?;
        i += digits;
        Some(id)
    } else {
        None
    };
    Ok(Packet { kind, namespace, ack_id, payload: &msg[i..] })
}

/// The parts of an event's `["name", data, ...]` array.
#[derive(Debug, PartialEq)]
pub struct EventArgs<'a> {
    /// The event's name.
    pub name: Cow<'a, str>,
    /// Where the first argument after the name sits in the payload.
    pub data: Option<Range<usize>>,
}

/// Splits an event payload into its name and the span of its first argument,
/// without building a JSON tree of the data (nor any allocation, unless the
/// name has escapes).
pub fn event_args(payload: &str) -> Result<EventArgs<'_>, PacketDecodeError> {
    let bad = |e: String| PacketDecodeError::BadEvent(e);
    let FirstTwo(first, second, _) =
        serde_json::from_str::<FirstTwo<'_, &RawValue, &RawValue>>(payload).map_err(|e| bad(e.to_string()))?;
    let name_raw = first.ok_or_else(|| bad("no event name".into()))?;
    // A `&str` borrows when the name has no escapes (serde never borrows
    // into a `Cow`); only escaped names are copied.
    let name = match serde_json::from_str::<&str>(name_raw.get()) {
        Ok(name) => Cow::Borrowed(name),
        Err(_) => {
            Cow::Owned(serde_json::from_str::<String>(name_raw.get()).map_err(|e| bad(format!("event name: {e}")))?)
        }
    };
    let data = second.map(|raw| span_of(payload, raw.get()));
    Ok(EventArgs { name, data })
}

/// The first argument of an ack payload `[data, ...]`; `null` when empty.
pub fn first_ack_arg(payload: &str) -> Result<serde_json::Value, PacketDecodeError> {
    let FirstTwo(first, _, _) = serde_json::from_str::<FirstTwo<'_, serde_json::Value, IgnoredAny>>(payload)
        .map_err(|e| PacketDecodeError::BadAck(e.to_string()))?;
    Ok(first.unwrap_or(serde_json::Value::Null))
}

/// The first two elements of a JSON array; the rest are validated and skipped.
struct FirstTwo<'de, A, B>(Option<A>, Option<B>, PhantomData<&'de ()>);

impl<'de, A: Deserialize<'de>, B: Deserialize<'de>> Deserialize<'de> for FirstTwo<'de, A, B> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Elements<'de, A, B>(PhantomData<(&'de (), A, B)>);

        impl<'de, A: Deserialize<'de>, B: Deserialize<'de>> Visitor<'de> for Elements<'de, A, B> {
            type Value = FirstTwo<'de, A, B>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an array")
            }

            fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Self::Value, S::Error> {
                let first = seq.next_element::<A>()?;
                let second = if first.is_some() { seq.next_element::<B>()? } else { None };
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(FirstTwo(first, second, PhantomData))
            }
        }

        deserializer.deserialize_seq(Elements(PhantomData))
    }
}

/// `part` is a sub-slice of `whole`; its byte range there.
pub fn span_of(whole: &str, part: &str) -> Range<usize> {
    let start = (part.as_ptr() as usize).saturating_sub(whole.as_ptr() as usize);
    start..start + part.len()
}

/// `40[/ns,][auth]`: connect to a namespace.
pub fn encode_connect(namespace: &str, auth_json: Option<&str>) -> String {
    let mut frame = header(PacketKind::Connect, namespace, auth_json.map_or(0, str::len));
    if let Some(auth) = auth_json {
        frame.push_str(auth);
    }
    frame
}

/// `41[/ns,]`: leave a namespace.
pub fn encode_disconnect(namespace: &str) -> String {
    header(PacketKind::Disconnect, namespace, 0)
}

/// `42[/ns,][id]["name",data]`: an event, with an ack id when a reply is wanted.
///
/// `data_json` must be valid JSON; it is copied as is.
pub fn encode_event(namespace: &str, ack_id: Option<u64>, name: &str, data_json: &str) -> String {
    let mut frame = header(PacketKind::Event, namespace, name.len() + data_json.len() + 26);
    if let Some(id) = ack_id {
        // Writing to a String cannot fail.
        let _ = write!(frame, "{id}");
    }
    frame.push('[');
    push_json_string(&mut frame, name);
    frame.push(',');
    frame.push_str(data_json);
    frame.push(']');
    frame
}

/// `43[/ns,]id[data]`: the server's answer to an event sent with ack id `id`.
///
/// `data_json` must be valid JSON; it is copied as is.
pub fn encode_ack(namespace: &str, ack_id: u64, data_json: &str) -> String {
    let mut frame = header(PacketKind::Ack, namespace, data_json.len() + 22);
    // Writing to a String cannot fail.
    let _ = write!(frame, "{ack_id}");
    frame.push('[');
    frame.push_str(data_json);
    frame.push(']');
    frame
}

/// `43[/ns,]id[`: an ack's frame up to its data, with room for `data_len`
/// more bytes. The caller writes the data JSON straight after it and
/// closes with `]` (one buffer for a serialised answer, not two).
pub fn ack_prefix(namespace: &str, ack_id: u64, data_len: usize) -> String {
    let mut frame = header(PacketKind::Ack, namespace, data_len + 22);
    // Writing to a String cannot fail.
    let _ = write!(frame, "{ack_id}");
    frame.push('[');
    frame
}

/// `42[/ns,]["name",`: an event's frame up to its data, as [`ack_prefix`].
pub fn event_prefix(namespace: &str, name: &str, data_len: usize) -> String {
    let mut frame = header(PacketKind::Event, namespace, name.len() + data_len + 6);
    frame.push('[');
    push_json_string(&mut frame, name);
    frame.push(',');
    frame
}

/// `44[/ns,]{"message":...}`: a refused connect.
pub fn encode_connect_error(namespace: &str, message: &str) -> String {
    let mut frame = header(PacketKind::ConnectError, namespace, message.len() + 14);
    frame.push_str("{\"message\":");
    push_json_string(&mut frame, message);
    frame.push('}');
    frame
}

/// How many binary attachments follow a `5`/`6` packet (0 for the others,
/// and for a malformed count, which [`decode`] refuses anyway).
pub fn attachment_count(msg: &str) -> usize {
    match msg.as_bytes().first() {
        Some(b'5' | b'6') => {
            let digits: String = msg[1..].chars().take_while(char::is_ascii_digit).collect();
            digits.parse().unwrap_or(0)
        }
        _ => 0,
    }
}

/// `4` (Engine.IO message), the packet type and the namespace part.
fn header(kind: PacketKind, namespace: &str, extra: usize) -> String {
    let mut frame = String::with_capacity(3 + namespace.len() + extra);
    frame.push('4');
    frame.push(match kind {
        PacketKind::Connect => '0',
        PacketKind::Disconnect => '1',
        PacketKind::Event => '2',
        PacketKind::Ack => '3',
        PacketKind::ConnectError => '4',
        PacketKind::BinaryEvent => '5',
        PacketKind::BinaryAck => '6',
    });
    if namespace != "/" {
        frame.push_str(namespace);
        frame.push(',');
    }
    frame
}

/// Appends `s` as a JSON string; event names rarely need escaping, so the
/// common case copies the bytes.
fn push_json_string(frame: &mut String, s: &str) {
    if s.chars().all(|c| c != '"' && c != '\\' && !c.is_control()) {
        frame.push('"');
        frame.push_str(s);
        frame.push('"');
    } else {
        // Serializing a &str cannot fail.
        frame.push_str(&serde_json::Value::from(s).to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn connect_and_disconnect_encode_with_namespace() {
        assert_eq!(encode_connect("/locations", Some(r#"{"token":"t"}"#)), r#"40/locations,{"token":"t"}"#);
        assert_eq!(encode_connect("/locations", None), "40/locations,");
        assert_eq!(encode_connect("/", Some("{}")), "40{}");
        assert_eq!(encode_disconnect("/locations"), "41/locations,");
        assert_eq!(encode_disconnect("/"), "41");
    }

    #[test]
    fn event_encodes_with_and_without_ack_id() {
        assert_eq!(
            encode_event("/locations", None, "location:update", r#"{"a":1}"#),
            r#"42/locations,["location:update",{"a":1}]"#
        );
        assert_eq!(encode_event("/locations", Some(0), "e", "1"), r#"42/locations,0["e",1]"#);
        assert_eq!(
            encode_event("/", Some(18_446_744_073_709_551_615), "e", "null"),
            r#"4218446744073709551615["e",null]"#
        );
    }

    #[test]
    fn server_answers_encode() {
        assert_eq!(encode_ack("/locations", 7, r#"{"status":"ok"}"#), r#"43/locations,7[{"status":"ok"}]"#);
        let data = r#"{"status":"ok"}"#;
        assert_eq!(ack_prefix("/locations", 7, data.len()) + data + "]", encode_ack("/locations", 7, data));
        assert_eq!(
            event_prefix("/locations", "e\"x", data.len()) + data + "]",
            encode_event("/locations", None, "e\"x", data)
        );
        let frame = encode_ack("/", 0, "null");
        let p = decode(&frame[1..]).unwrap();
        assert_eq!((p.kind, p.ack_id, p.payload), (PacketKind::Ack, Some(0), "[null]"));
        assert_eq!(
            encode_connect_error("/locations", "Invalid \"token\""),
            r#"44/locations,{"message":"Invalid \"token\""}"#
        );
    }

    #[test]
    fn attachments_are_counted_on_binary_packets_only() {
        assert_eq!(attachment_count(r#"52-/x,3["bin",{}]"#), 2);
        assert_eq!(attachment_count(r#"612-/x,3[{}]"#), 12);
        assert_eq!(attachment_count(r#"2["e"]"#), 0);
        assert_eq!(attachment_count("5x"), 0);
        assert_eq!(attachment_count(""), 0);
    }

    #[test]
    fn event_name_is_escaped_when_needed() {
        let frame = encode_event("/", None, "a\"b\\c\n", "1");
        let packet = decode(&frame[1..]).unwrap();
        let args = event_args(packet.payload).unwrap();
        assert_eq!(args.name, "a\"b\\c\n");
    }

    #[test]
    fn event_with_ack_id_round_trips() {
        let frame = encode_event("/locations", Some(42), "echo", r#"{"x":[1,2]}"#);
        let packet = decode(&frame[1..]).unwrap();
        assert_eq!(packet.kind, PacketKind::Event);
        assert_eq!(packet.namespace, "/locations");
        assert_eq!(packet.ack_id, Some(42));
        let args = event_args(packet.payload).unwrap();
        assert_eq!(args.name, "echo");
        let data = &packet.payload[args.data.unwrap()];
        assert_eq!(data, r#"{"x":[1,2]}"#);
    }

    #[test]
    fn server_packets_decode() {
        let p = decode(r#"0/locations,{"sid":"abc"}"#).unwrap();
        assert_eq!(
            (p.kind, p.namespace, p.ack_id, p.payload),
            (PacketKind::Connect, "/locations", None, r#"{"sid":"abc"}"#)
        );
        let p = decode(r#"4/locations,{"message":"Invalid token"}"#).unwrap();
        assert_eq!(p.kind, PacketKind::ConnectError);
        let p = decode("1/locations,").unwrap();
        assert_eq!((p.kind, p.namespace, p.payload), (PacketKind::Disconnect, "/locations", ""));
        let p = decode(r#"3/locations,17[{"status":"ok"}]"#).unwrap();
        assert_eq!((p.kind, p.ack_id), (PacketKind::Ack, Some(17)));
        assert_eq!(first_ack_arg(p.payload).unwrap(), json!({"status": "ok"}));
    }

    #[test]
    fn default_namespace_has_no_prefix() {
        let p = decode(r#"2["hello",1]"#).unwrap();
        assert_eq!((p.namespace, p.ack_id), ("/", None));
        let p = decode("1").unwrap();
        assert_eq!((p.kind, p.namespace, p.payload), (PacketKind::Disconnect, "/", ""));
    }

    #[test]
    fn namespace_without_comma_ends_the_packet() {
        let p = decode("1/locations").unwrap();
        assert_eq!((p.namespace, p.payload), ("/locations", ""));
    }

    #[test]
    fn binary_packets_skip_the_attachment_count() {
        let p = decode(r#"52-/locations,3["bin",{"_placeholder":true,"num":0}]"#).unwrap();
        assert_eq!((p.kind, p.namespace, p.ack_id), (PacketKind::BinaryEvent, "/locations", Some(3)));
        assert_eq!(decode("5/x,"), Err(PacketDecodeError::BadAttachments));
    }

    #[test]
    fn malformed_packets_are_errors() {
        assert_eq!(decode(""), Err(PacketDecodeError::Empty));
        assert_eq!(decode("9"), Err(PacketDecodeError::UnknownType('9')));
        assert_eq!(decode("3/x,99999999999999999999999[1]"), Err(PacketDecodeError::BadAckId));
        assert!(matches!(event_args("[]"), Err(PacketDecodeError::BadEvent(_))));
        assert!(matches!(event_args("[1]"), Err(PacketDecodeError::BadEvent(_))));
        assert!(matches!(event_args("{"), Err(PacketDecodeError::BadEvent(_))));
        assert!(matches!(first_ack_arg("x"), Err(PacketDecodeError::BadAck(_))));
    }

    #[test]
    fn event_args_locate_the_first_argument() {
        let payload = r#"["location:updated", {"id":"a","seq":3} ,"extra"]"#;
        let args = event_args(payload).unwrap();
        assert_eq!(args.name, "location:updated");
        assert!(matches!(args.name, Cow::Borrowed(_)));
        assert_eq!(&payload[args.data.unwrap()], r#"{"id":"a","seq":3}"#);
        let args = event_args(r#"["ping"]"#).unwrap();
        assert_eq!((args.name.as_ref(), args.data), ("ping", None));
    }

    #[test]
    fn empty_ack_is_null() {
        assert_eq!(first_ack_arg("[]").unwrap(), serde_json::Value::Null);
        assert_eq!(first_ack_arg("[1,2]").unwrap(), json!(1));
    }
}
