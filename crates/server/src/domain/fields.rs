//! A driver's payload as sent: the fields the rules read (`validate`), each
//! as the JSON kind it came as, nothing checked yet. Read straight from an
//! event's JSON text — every `location:update` is one, so no `Value` tree
//! (a map of owned keys) is built for it — or from a `Value` (a batch item,
//! an HTTP body). Both ways give the same fields, and so the same answer
//! (tested here and by the fuzz target).

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Number, Value};

use super::validate::{Rejection, unparsable};
use wecare_proto::ErrorCode;

/// One field's value, told apart as far as the rules need.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Sent {
    Bool,
    Number(Number),
    Text(String),
    /// An array or an object.
    Compound,
}

impl Sent {
    pub(crate) fn as_f64(&self) -> Option<f64> {
        match self {
            Self::Number(n) => n.as_f64(),
            _ => None,
        }
    }

    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Self::Text(s) => Some(s),
            _ => None,
        }
    }
}

/// The known fields of a fix or status payload; `None`: absent or `null`
/// (the rules treat both alike). Other fields are read and dropped.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct SentFields {
    pub(crate) driver_id: Option<Sent>,
    pub(crate) id: Option<Sent>,
    pub(crate) lat: Option<Sent>,
    pub(crate) lng: Option<Sent>,
    pub(crate) recorded_at: Option<Sent>,
    pub(crate) timestamp: Option<Sent>,
    pub(crate) status: Option<Sent>,
    pub(crate) accuracy: Option<Sent>,
    pub(crate) heading: Option<Sent>,
    pub(crate) speed: Option<Sent>,
}

const NOT_AN_OBJECT: Rejection = Rejection::new(ErrorCode::InvalidPayload, "payload must be an object");

impl SentFields {
    /// Reads an event's JSON text. `Err`: it is not JSON, or holds a
    /// number no double holds ([`unparsable`]: refused before any rule, as
    /// `Value` parsing is); `Ok(Err)`: JSON that is not an object, refused by
    /// the first rule, as [`SentFields::from_value`] refuses it.
    pub(crate) fn from_json(text: &str) -> Result<Result<Self, Rejection>, Rejection> {
        match serde_json::from_str(text) {
            Ok(fields) => Ok(Ok(fields)),
            // Only the top level can be of the wrong kind (every field takes
            // any), and that is seen at its first byte: whether the rest is
            // JSON is still to be told (rare, so by a `Value`).
            Err(e) if e.classify() == serde_json::error::Category::Data => match serde_json::from_str::<Value>(text) {
                Ok(_) => Ok(Err(NOT_AN_OBJECT)),
                Err(e) => Err(unparsable(&e)),
            },
            Err(e) => Err(unparsable(&e)),
        }
    }

    /// The fields of a parsed payload; refused when it is not an object.
    pub(crate) fn from_value(value: &Value) -> Result<Self, Rejection> {
        Self::deserialize(value).map_err(|_| NOT_AN_OBJECT)
    }

    fn slot(&mut self, key: &str) -> Option<&mut Option<Sent>> {
        Some(match key {
            "driverId" => &mut self.driver_id,
            "id" => &mut self.id,
            "lat" => &mut self.lat,
            "lng" => &mut self.lng,
            "recordedAt" => &mut self.recorded_at,
            "timestamp" => &mut self.timestamp,
            "status" => &mut self.status,
            "accuracy" => &mut self.accuracy,
            "heading" => &mut self.heading,
            "speed" => &mut self.speed,
            _ => return None,
        })
    }
}

impl<'de> Deserialize<'de> for SentFields {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(FieldsVisitor)
    }
}

struct FieldsVisitor;

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = SentFields;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SentFields, A::Error> {
        let mut fields = SentFields::default();
        while let Some(key) = map.next_key::<Key<'de>>()? {
            match fields.slot(key.as_str()) {
                // A repeated key: the last one counts, as in a `Value`.
                Some(slot) => *slot = map.next_value::<Option<Sent>>()?,
                // Read as a `Value` is: a number no double holds is refused anywhere.
                None => drop(map.next_value::<Value>()?),
            }
        }
        Ok(fields)
    }
}

/// A key, borrowed from the text when it has no escapes.
enum Key<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl Key<'_> {
    fn as_str(&self) -> &str {
        match self {
            Self::Borrowed(s) => s,
            Self::Owned(s) => s,
        }
    }
}

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key::Borrowed(s))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key::Owned(s.to_string()))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

impl<'de> Deserialize<'de> for Sent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SentVisitor)
    }
}

struct SentVisitor;

impl<'de> Visitor<'de> for SentVisitor {
    type Value = Sent;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Sent, E> {
        Ok(Sent::Bool)
    }
    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Sent, E> {
        Ok(Sent::Number(n.into()))
    }
    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Sent, E> {
        Ok(Sent::Number(n.into()))
    }
    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Sent, E> {
        // JSON text holds no NaN or infinity; a `Value` never does either.
        Number::from_f64(n).map(Sent::Number).ok_or_else(|| E::custom("not a finite number"))
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Sent, E> {
        Ok(Sent::Text(s.to_string()))
    }
    fn visit_string<E: de::Error>(self, s: String) -> Result<Sent, E> {
        Ok(Sent::Text(s))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Sent, A::Error> {
        while seq.next_element::<Value>()?.is_some() {}
        Ok(Sent::Compound)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Sent, A::Error> {
        while map.next_entry::<Value, Value>()?.is_some() {}
        Ok(Sent::Compound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_value_give_the_same_fields() {
        let texts = [
            r#"{"id":"a","lat":13.7,"lng":100.5,"recordedAt":"2026-01-16T08:30:00.000Z","status":"BUSY"}"#,
            r#"{"driverId":7,"lat":-1e-3,"lng":180,"timestamp":1768552200000,"accuracy":5.5,"heading":0,"speed":12}"#,
            r#"{"lat":null,"lng":[1,{"x":2}],"id":{"deep":true},"status":false,"extra":{"a":[1,2,3]}}"#,
            r#"{"lat":1,"lat":2,"lng":3,"lng":null,"i\u0064":"escaped key","speed":18446744073709551615}"#,
            r#"{"heading":-9223372036854775808,"accuracy":1.7976931348623157e308,"id":"\u00e9\n"}"#,
        ];
        for text in texts {
            let value: Value = serde_json::from_str(text).unwrap();
            assert_eq!(SentFields::from_json(text), Ok(SentFields::from_value(&value)), "{text}");
        }
        let f = SentFields::from_json(texts[3]).unwrap().unwrap();
        assert_eq!((f.lat, f.lng), (Some(Sent::Number(2.into())), None), "the last of a repeated key counts");
        assert_eq!(f.id, Some(Sent::Text("escaped key".into())));
    }

    #[test]
    fn refused_as_value_parsing_is() {
        let not_object = Rejection::new(ErrorCode::InvalidPayload, "payload must be an object");
        let not_json = Rejection::new(ErrorCode::InvalidPayload, "payload is not valid JSON");
        let out_of_range = Rejection::new(ErrorCode::InvalidCoordinates, "coordinate out of range");
        for (text, want) in [
            ("null", &not_object),
            ("[1,2]", &not_object),
            ("\"lat\"", &not_object),
            ("12", &not_object),
            ("[[[", &not_json),
            ("12 x", &not_json),
            ("{\"lat\":1,", &not_json),
            ("{\"lat\":1} x", &not_json),
            ("", &not_json),
            (r#"{"lat":1e400,"lng":0}"#, &out_of_range),
            (r#"{"lat":1,"lng":0,"extra":[1e400]}"#, &out_of_range),
        ] {
            let by_value = serde_json::from_str::<Value>(text).map(|v| SentFields::from_value(&v).map(|_| ()));
            let by_text = SentFields::from_json(text).map(|r| r.map(|_| ()));
            match by_value {
                Ok(inner) => assert_eq!(by_text, Ok(inner.clone()), "{text}"),
                Err(e) => assert_eq!(by_text, Err(unparsable(&e)), "{text}"),
            }
            let refusal = match by_text {
                Ok(Err(r)) | Err(r) => r,
                Ok(Ok(())) => panic!("{text} was accepted"),
            };
            assert_eq!(&refusal, want, "{text}");
        }
    }
}
