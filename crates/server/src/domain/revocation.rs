//! Revoked tokens (contract §10): a logged-out token, or every token a
//! user had at a moment (`iat` at or before it), stays refused until it
//! would have expired anyway. The rule and the in-memory set every check
//! reads; the store keeps them across restarts and nodes.

use std::collections::HashMap;
use std::sync::RwLock;

use sha2::{Digest, Sha256};

use crate::domain::auth::Principal;

/// Longest a user-wide revocation is kept (a token issued before it is
/// refused as long as it lives; the WeCare backend's tokens live 7 days).
pub(crate) const USER_REVOCATION_SECS: i64 = 30 * 24 * 3600;

/// What is revoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Revoked {
    /// One token, by the hex SHA-256 of its text (tokens are never stored).
    Token(String),
    /// A user's tokens issued at or before `at_secs`.
    User(String),
}

/// A revocation as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Revocation {
    pub(crate) what: Revoked,
    /// When it was revoked (epoch seconds).
    pub(crate) at_secs: i64,
    /// After this it matters no more (the token's `exp`, or a bound).
    pub(crate) until_secs: i64,
}

/// The hex SHA-256 of a token's text: how a token is known here.
pub(crate) fn token_hash(token: &str) -> String {
    Sha256::digest(token.trim().as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// The revocations in force, read by every token check.
#[derive(Debug, Default)]
pub(crate) struct Revocations {
    inner: RwLock<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    tokens: HashMap<String, i64>,
    users: HashMap<String, i64>,
}

impl Revocations {
    /// Replaces the set with what the store holds.
    pub(crate) fn replace(&self, all: Vec<Revocation>) {
        let mut next = Inner::default();
        for r in all {
            next.add(r);
        }
        *self.inner.write().unwrap_or_else(|e| e.into_inner()) = next;
    }

    pub(crate) fn add(&self, r: Revocation) {
        self.inner.write().unwrap_or_else(|e| e.into_inner()).add(r);
    }

    /// The time `p`'s token (`hash`) was revoked, if it was.
    pub(crate) fn revoked_at(&self, hash: &str, p: &Principal) -> Option<i64> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        if let Some(at) = inner.tokens.get(hash) {
            return Some(*at);
        }
        // A token without `iat` cannot prove it is newer: it is refused.
        let at = *inner.users.get(&p.subject)?;
        (p.issued_at.unwrap_or(i64::MIN) <= at).then_some(at)
    }
}

impl Inner {
    fn add(&mut self, r: Revocation) {
        match r.what {
            Revoked::Token(h) => {
                self.tokens.insert(h, r.at_secs);
            }
            Revoked::User(u) => {
                let at = self.users.entry(u).or_insert(r.at_secs);
                *at = (*at).max(r.at_secs);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::auth::Access;

    fn principal(subject: &str, iat: Option<i64>) -> Principal {
        Principal {
            subject: subject.into(),
            role: "officer".into(),
            email: None,
            name: None,
            access: Access::Watcher,
            expires_at: 2_000,
            issued_at: iat,
        }
    }

    #[test]
    fn a_user_revocation_refuses_older_tokens_not_newer_logins() {
        let r = Revocations::default();
        r.add(Revocation { what: Revoked::User("42".into()), at_secs: 1_000, until_secs: 9_000 });
        assert_eq!(r.revoked_at("h", &principal("42", Some(999))), Some(1_000));
        assert_eq!(r.revoked_at("h", &principal("42", Some(1_000))), Some(1_000), "issued in that second");
        assert_eq!(r.revoked_at("h", &principal("42", Some(1_001))), None, "a later login works");
        assert_eq!(r.revoked_at("h", &principal("42", None)), Some(1_000), "no iat: cannot be newer");
        assert_eq!(r.revoked_at("h", &principal("7", Some(1))), None);
    }

    #[test]
    fn a_token_revocation_refuses_that_token_only() {
        let r = Revocations::default();
        r.replace(vec![Revocation { what: Revoked::Token(token_hash("a.b.c")), at_secs: 5, until_secs: 9 }]);
        assert_eq!(r.revoked_at(&token_hash(" a.b.c "), &principal("1", Some(1))), Some(5));
        assert_eq!(r.revoked_at(&token_hash("a.b.d"), &principal("1", Some(1))), None);
    }
}
