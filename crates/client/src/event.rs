//! [`ServerEvent`]: what the server sends to this socket, as the application
//! receives it, including the cheap unparsed form [`RawEvent`].

use std::borrow::Cow;
use std::ops::Range;

use serde::Deserialize;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::packet::{self, EventArgs};

/// Something the server did to this socket, delivered in order on the
/// receiver returned by [`SocketClient::connect`](crate::SocketClient::connect).
#[derive(Debug)]
pub enum ServerEvent {
    /// An event (`42`), parsed: the event name and its first argument
    /// (`null` when the server sent none; further arguments are dropped).
    /// Delivered in [`EventMode::Parsed`](crate::EventMode::Parsed), the default.
    Event {
        /// The event name, e.g. `"location:updated"`.
        name: String,
        /// The first argument after the name.
        data: serde_json::Value,
    },
    /// An event, unparsed. Delivered instead of [`ServerEvent::Event`] in
    /// [`EventMode::Raw`](crate::EventMode::Raw).
    Raw(RawEvent),
    /// The socket is gone; this is the last item before the channel closes.
    ///
    /// `reason` uses the Socket.IO client's words: `"io server disconnect"`
    /// (the server left the namespace, e.g. `auth:expired`), `"io client
    /// disconnect"` ([`close`](crate::SocketClient::close) or the last handle
    /// dropped), `"transport close"` (the connection ended), `"transport
    /// error"` (it failed) and `"ping timeout"` (no ping within
    /// `pingInterval + pingTimeout`).
    Disconnected {
        /// Why the socket disconnected.
        reason: String,
    },
}

/// An event whose arguments have been located but not parsed.
///
/// It keeps the websocket frame (a reference-counted buffer, not a copy) and
/// the span of the first argument, so a consumer that needs one field of a
/// busy stream can deserialize just that field, borrowing from the frame:
///
/// ```
/// # fn demo(event: wecare_client::RawEvent) -> Result<(), serde_json::Error> {
/// #[derive(serde::Deserialize)]
/// struct IdOnly<'a> {
///     id: &'a str,
/// }
/// if event.name() == "location:updated" {
///     let IdOnly { id } = event.parse_data()?;
///     println!("update {id}");
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct RawEvent {
    frame: Utf8Bytes,
    name: EventName,
    data: Option<Range<usize>>,
}

/// The event name: a span of the frame unless it had JSON escapes.
#[derive(Debug, Clone)]
enum EventName {
    Span(Range<usize>),
    Owned(String),
}

impl RawEvent {
    /// Locates name and first argument of the event whose payload is
    /// `frame[payload]`.
    pub(crate) fn new(frame: Utf8Bytes, payload: Range<usize>) -> Result<Self, packet::PacketDecodeError> {
        let text = frame.as_str();
        let payload_text = text.get(payload.clone()).unwrap_or_default();
        let EventArgs { name, data } = packet::event_args(payload_text)?;
        let name = match name {
            Cow::Borrowed(n) => EventName::Span(packet::span_of(text, n)),
            Cow::Owned(n) => EventName::Owned(n),
        };
        let data = data.map(|r| payload.start + r.start..payload.start + r.end);
        Ok(Self { frame, name, data })
    }

    /// The event name.
    pub fn name(&self) -> &str {
        match &self.name {
            EventName::Span(r) => self.frame.as_str().get(r.clone()).unwrap_or_default(),
            EventName::Owned(n) => n,
        }
    }

    /// The first argument as JSON text; `"null"` when the event had none.
    pub fn data_json(&self) -> &str {
        self.data.as_ref().and_then(|r| self.frame.as_str().get(r.clone())).unwrap_or("null")
    }

    /// Deserializes the first argument, borrowing strings from the frame
    /// where `T` allows it.
    ///
    /// # Errors
    /// When the argument does not match `T`.
    pub fn parse_data<'de, T: Deserialize<'de>>(&'de self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.data_json())
    }

    /// The first argument as a JSON tree.
    ///
    /// # Errors
    /// Never for frames this client accepted (they were validated); kept
    /// fallible so that it can stay a plain parse.
    pub fn to_value(&self) -> Result<serde_json::Value, serde_json::Error> {
        self.parse_data()
    }

    /// Converts to the parsed form, [`ServerEvent::Event`].
    ///
    /// # Errors
    /// As [`to_value`](Self::to_value).
    pub fn into_event(self) -> Result<ServerEvent, serde_json::Error> {
        let data = self.to_value()?;
        Ok(ServerEvent::Event { name: self.name().to_owned(), data })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn raw(frame: &str) -> RawEvent {
        let packet = packet::decode(&frame[1..]).unwrap();
        let span = packet::span_of(frame, packet.payload);
        RawEvent::new(Utf8Bytes::from(frame), span).unwrap()
    }

    #[test]
    fn raw_event_exposes_name_and_first_argument() {
        let event = raw(r#"42/locations,["location:updated",{"id":"a1","seq":7},2]"#);
        assert_eq!(event.name(), "location:updated");
        assert_eq!(event.data_json(), r#"{"id":"a1","seq":7}"#);
        #[derive(Deserialize)]
        struct IdOnly<'a> {
            id: &'a str,
        }
        let IdOnly { id } = event.parse_data().unwrap();
        assert_eq!(id, "a1");
        let ServerEvent::Event { name, data } = event.into_event().unwrap() else {
            panic!("not an event");
        };
        assert_eq!((name.as_str(), data), ("location:updated", json!({"id":"a1","seq":7})));
    }

    #[test]
    fn raw_event_without_argument_reads_null() {
        let event = raw(r#"42/locations,["tick"]"#);
        assert_eq!(event.data_json(), "null");
        assert_eq!(event.to_value().unwrap(), serde_json::Value::Null);
    }

    #[test]
    fn raw_event_with_escaped_name_owns_it() {
        let event = raw(r#"42["a\"b",1]"#);
        assert_eq!(event.name(), "a\"b");
        assert_eq!(event.data_json(), "1");
    }
}
