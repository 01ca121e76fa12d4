//! Identifier newtypes.

use serde::{Deserialize, Serialize};

/// A driver's identity: the token's `driver_id` claim, else its subject.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DriverId(String);

impl DriverId {
    /// Wraps an identity taken from a verified token.
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// The identity as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for DriverId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A client message id: 1–64 characters, the dedup key with the driver.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MessageId(String);

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
    pub fn parse(id: impl Into<String>) -> Result<Self, IdError> {
        let id = id.into();
        match id.chars().count() {
            0 => Err(IdError::Empty),
            n if n > Self::MAX_LEN => Err(IdError::TooLong),
            _ => Ok(Self(id)),
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
        id.0
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
}
