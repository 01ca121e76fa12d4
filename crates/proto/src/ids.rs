//! Identifier newtypes.

use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A driver's identity: the token's `driver_id` claim, else its subject.
/// Shared, not owned: every fix carries it through the server (event,
/// record, latest state), and a clone is a count, not a copy.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DriverId(Arc<str>);

impl DriverId {
    /// Wraps an identity taken from a verified token.
    pub fn new(id: impl AsRef<str>) -> Self {
        Self(Arc::from(id.as_ref()))
    }

    /// The identity as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Serialize for DriverId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for DriverId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(|s| Self(Arc::from(s)))
    }
}

impl std::fmt::Display for DriverId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A client message id: 1–64 characters, the dedup key with the driver.
/// Shared like [`DriverId`]: the event, its record and its ack all carry it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct MessageId(Arc<str>);

/// Why a string is not a [`MessageId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// Empty string.
    #[error("id must not be empty")]
    Empty,
    /// Longer than [`MessageId::MAX_LEN`] characters.
    #[error("id is longer than 64 characters")]
    TooLong,
}

impl MessageId {
    /// Longest accepted id, in characters.
    pub const MAX_LEN: usize = 64;

    /// Validates a client-supplied id.
    ///
    /// # Errors
    /// [`IdError`] when empty or longer than 64 characters.
    pub fn parse(id: impl AsRef<str>) -> Result<Self, IdError> {
        let id = id.as_ref();
        match id.chars().count() {
            0 => Err(IdError::Empty),
            n if n > Self::MAX_LEN => Err(IdError::TooLong),
            _ => Ok(Self(Arc::from(id))),
        }
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for MessageId {
    type Error = IdError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(value)
    }
}

impl From<MessageId> for String {
    fn from(id: MessageId) -> Self {
        id.0.to_string()
    }
}

impl Serialize for MessageId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl std::fmt::Display for MessageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_id_bounds() {
        assert_eq!(MessageId::parse(""), Err(IdError::Empty));
        assert!(MessageId::parse("a".repeat(64)).is_ok());
        assert_eq!(MessageId::parse("a".repeat(65)), Err(IdError::TooLong));
        // characters, not bytes: 64 Thai characters are fine
        assert!(MessageId::parse("ก".repeat(64)).is_ok());
    }

    #[test]
    fn ids_are_plain_strings_on_the_wire() {
        let id = DriverId::new("drv-ก1");
        assert_eq!(serde_json::to_string(&id).unwrap(), r#""drv-ก1""#);
        assert_eq!(serde_json::from_str::<DriverId>(r#""drv-ก1""#).unwrap(), id);
        assert!(serde_json::from_str::<DriverId>("7").is_err(), "a number is not an identity");
        let id = MessageId::parse("m-ก").unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), r#""m-ก""#);
        assert_eq!(serde_json::from_str::<MessageId>(r#""m-ก""#).unwrap(), id);
        assert!(serde_json::from_str::<MessageId>(r#""""#).is_err(), "an empty id is refused");
    }
}
