//! Access tokens: HS256 JWTs as the WeCare backend issues them, turned into a
//! [`Principal`]. Used by the socket handshake, `auth:refresh` and REST.
//!
//! HS256 is the only algorithm (contract §2), so verification is a direct
//! HMAC-SHA256 check rather than a general JWT library: nothing here can be
//! talked into another algorithm, and `none` is simply not an HS256 header.

use std::sync::Arc;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;
use wecare_proto::{DriverId, ErrorCode};

use crate::domain::event::Sender;

type HmacSha256 = Hmac<Sha256>;

/// Longest token accepted; WeCare tokens are a few hundred bytes.
const MAX_TOKEN_LEN: usize = 8 * 1024;

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AuthError {
    #[error("Authentication required")]
    Required,
    #[error("Invalid token")]
    Invalid,
    #[error("Token expired")]
    Expired,
    #[error("Forbidden")]
    Forbidden,
}

impl AuthError {
    pub(crate) fn code(self) -> ErrorCode {
        match self {
            Self::Required => ErrorCode::AuthRequired,
            Self::Invalid => ErrorCode::InvalidToken,
            Self::Expired => ErrorCode::TokenExpired,
            Self::Forbidden => ErrorCode::Forbidden,
        }
    }
}

/// What a verified token may do on `/locations`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Access {
    /// Sends fixes and statuses as this identity.
    Driver(DriverId),
    /// Receives the stream.
    Watcher,
}

/// A verified token.
#[derive(Debug, Clone)]
pub(crate) struct Principal {
    /// `userId`, else `id`, else `user_id`, as a string.
    pub(crate) subject: String,
    /// The role as written in the token.
    pub(crate) role: String,
    pub(crate) email: Option<Arc<str>>,
    /// `name`, else `full_name`, else `fullName`: shown to officers as `driverName`.
    pub(crate) name: Option<Arc<str>>,
    pub(crate) access: Access,
    /// `exp`, epoch seconds.
    pub(crate) expires_at: i64,
    /// `iat`, epoch seconds, when the token has one (user revocations).
    pub(crate) issued_at: Option<i64>,
}

impl Principal {
    pub(crate) fn driver_id(&self) -> Option<&DriverId> {
        match &self.access {
            Access::Driver(id) => Some(id),
            Access::Watcher => None,
        }
    }

    /// The sender of a driver's events, `None` for watchers.
    pub(crate) fn sender(&self) -> Option<Sender> {
        self.driver_id().map(|driver| Sender {
            driver: driver.clone(),
            email: self.email.clone(),
            name: self.name.clone(),
        })
    }

    pub(crate) fn is_watcher(&self) -> bool {
        self.access == Access::Watcher
    }

    /// Whether `other` may replace this principal's token in-band: same
    /// subject, identity and role.
    pub(crate) fn same_identity(&self, other: &Principal) -> bool {
        self.subject == other.subject && self.access == other.access && self.role.eq_ignore_ascii_case(&other.role)
    }
}

/// Verifies tokens against the configured secret and role lists.
#[derive(Clone)]
pub(crate) struct TokenVerifier {
    secret: Vec<u8>,
    leeway_secs: i64,
    watcher_roles: Vec<String>,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("leeway_secs", &self.leeway_secs)
            .field("watcher_roles", &self.watcher_roles)
            .finish_non_exhaustive()
    }
}

impl TokenVerifier {
    pub(crate) fn new(secret: &[u8], leeway_secs: u64, watcher_roles: &[String]) -> Self {
        Self {
            secret: secret.to_vec(),
            leeway_secs: i64::try_from(leeway_secs).unwrap_or(i64::MAX),
            watcher_roles: watcher_roles.iter().map(|r| r.to_ascii_lowercase()).collect(),
        }
    }

    /// Checks signature, algorithm, claims and time, then the role.
    pub(crate) fn verify(&self, token: &str, now_secs: i64) -> Result<Principal, AuthError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::Required);
        }
        if token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::Invalid);
        }
        let claims = self.verified_claims(token)?;
        let exp = number_claim(&claims, "exp").ok_or(AuthError::Invalid)?;
        if let Some(nbf) = claims.get("nbf") {
            let nbf = nbf.as_f64().ok_or(AuthError::Invalid)?;
            if (now_secs + self.leeway_secs) < nbf as i64 {
                return Err(AuthError::Invalid);
            }
        }
        let subject =
            ["userId", "id", "user_id"].iter().find_map(|k| id_claim(&claims, k)).ok_or(AuthError::Invalid)?;
        let role = match claims.get("role") {
            Some(Value::String(r)) if !r.is_empty() => r.clone(),
            _ => return Err(AuthError::Invalid),
        };
        if now_secs >= exp.saturating_add(self.leeway_secs) {
            return Err(AuthError::Expired);
        }
        let lower = role.to_ascii_lowercase();
        let access = if lower == "driver" {
            let id = id_claim(&claims, "driver_id").unwrap_or_else(|| subject.clone());
            Access::Driver(DriverId::new(id))
        } else if self.watcher_roles.contains(&lower) {
            Access::Watcher
        } else {
            return Err(AuthError::Forbidden);
        };
        let text = |k: &str| match claims.get(k) {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            _ => None,
        };
        let email = text("email");
        let name = ["name", "full_name", "fullName"].iter().find_map(|k| text(k));
        let issued_at = number_claim(&claims, "iat");
        Ok(Principal {
            subject,
            role,
            email: email.map(Arc::from),
            name: name.map(Arc::from),
            access,
            expires_at: exp,
            issued_at,
        })
    }

    fn verified_claims(&self, token: &str) -> Result<Map<String, Value>, AuthError> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::Invalid);
        };
        let header: Value = decode_json(header)?;
        if header.get("alg").and_then(Value::as_str) != Some("HS256") {
            return Err(AuthError::Invalid);
        }
        let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| AuthError::Invalid)?;
        let mut mac = self.mac();
        mac.update(&token.as_bytes()[..header_len(token)]);
        mac.verify_slice(&signature).map_err(|_| AuthError::Invalid)?;
        match decode_json(payload)? {
            Value::Object(claims) => Ok(claims),
            _ => Err(AuthError::Invalid),
        }
    }

    /// Signs `claims` as an HS256 JWT (dev tokens, tests).
    pub(crate) fn mint(&self, claims: &Value) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
        let signing_input = format!("{header}.{payload}");
        let mut mac = self.mac();
        mac.update(signing_input.as_bytes());
        let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{signing_input}.{sig}")
    }

    fn mac(&self) -> HmacSha256 {
        HmacSha256::new_from_slice(&self.secret).expect("HMAC accepts keys of any length")
    }
}

/// Length of `header.payload`, the signed part.
fn header_len(token: &str) -> usize {
    token.rfind('.').unwrap_or(0)
}

fn decode_json(part: &str) -> Result<Value, AuthError> {
    let bytes = URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).map_err(|_| AuthError::Invalid)?;
    serde_json::from_slice(&bytes).map_err(|_| AuthError::Invalid)
}

fn number_claim(claims: &Map<String, Value>, key: &str) -> Option<i64> {
    let f = claims.get(key)?.as_f64()?;
    f.is_finite().then_some(f as i64)
}

/// A string or number id claim as a string; empty strings do not count.
fn id_claim(claims: &Map<String, Value>, key: &str) -> Option<String> {
    match claims.get(key)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_800_000_000;

    fn verifier() -> TokenVerifier {
        TokenVerifier::new(b"secret", 0, &["officer".to_string(), "admin".to_string()])
    }

    fn token(claims: Value) -> String {
        verifier().mint(&claims)
    }

    #[test]
    fn backend_driver_token_uses_driver_id_claim() {
        let t = token(json!({"id": 7, "email": "d@x", "role": "DRIVER", "driver_id": "drv-9", "exp": NOW + 60}));
        let p = verifier().verify(&t, NOW).unwrap();
        assert_eq!(p.subject, "7");
        assert_eq!(p.driver_id().unwrap().as_str(), "drv-9");
        assert_eq!(p.email.as_deref(), Some("d@x"));
        assert_eq!(p.name, None);
    }

    #[test]
    fn name_claims_in_order() {
        let t = token(json!({"id": 7, "role": "driver", "full_name": "Somchai", "fullName": "X", "exp": NOW + 60}));
        assert_eq!(verifier().verify(&t, NOW).unwrap().name.as_deref(), Some("Somchai"));
        let t = token(json!({"id": 7, "role": "driver", "name": "A", "full_name": "B", "exp": NOW + 60}));
        assert_eq!(verifier().verify(&t, NOW).unwrap().name.as_deref(), Some("A"));
        let t = token(json!({"id": 7, "role": "driver", "fullName": "C", "exp": NOW + 60}));
        assert_eq!(verifier().verify(&t, NOW).unwrap().name.as_deref(), Some("C"));
    }

    #[test]
    fn subject_precedence_user_id_then_id_then_user_id() {
        let t = token(json!({"userId": "a", "id": "b", "user_id": "c", "role": "officer", "exp": NOW + 60}));
        assert_eq!(verifier().verify(&t, NOW).unwrap().subject, "a");
        let t = token(json!({"user_id": 5, "role": "driver", "exp": NOW + 60}));
        let p = verifier().verify(&t, NOW).unwrap();
        assert_eq!(p.driver_id().unwrap().as_str(), "5");
    }

    #[test]
    fn refusals_map_to_contract_codes() {
        let v = verifier();
        assert_eq!(v.verify("", NOW).unwrap_err(), AuthError::Required);
        assert_eq!(v.verify("abc", NOW).unwrap_err(), AuthError::Invalid);
        let expired = token(json!({"id": 1, "role": "officer", "exp": NOW}));
        assert_eq!(v.verify(&expired, NOW).unwrap_err(), AuthError::Expired);
        let patient = token(json!({"id": 1, "role": "patient", "exp": NOW + 5}));
        assert_eq!(v.verify(&patient, NOW).unwrap_err(), AuthError::Forbidden);
        let no_role = token(json!({"id": 1, "exp": NOW + 5}));
        assert_eq!(v.verify(&no_role, NOW).unwrap_err(), AuthError::Invalid);
        let no_exp = token(json!({"id": 1, "role": "officer"}));
        assert_eq!(v.verify(&no_exp, NOW).unwrap_err(), AuthError::Invalid);
        let not_yet = token(json!({"id": 1, "role": "officer", "exp": NOW + 50, "nbf": NOW + 10}));
        assert_eq!(v.verify(&not_yet, NOW).unwrap_err(), AuthError::Invalid);
    }

    #[test]
    fn other_secret_and_other_alg_are_invalid() {
        let other = TokenVerifier::new(b"other", 0, &[]).mint(&json!({"id": 1, "role": "driver", "exp": NOW + 5}));
        assert_eq!(verifier().verify(&other, NOW).unwrap_err(), AuthError::Invalid);
        let claims = URL_SAFE_NO_PAD.encode(json!({"id": 1, "role": "driver", "exp": NOW + 5}).to_string());
        let none = format!("{}.{claims}.", URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#));
        assert_eq!(verifier().verify(&none, NOW).unwrap_err(), AuthError::Invalid);
        // an HS512 header signed with the right key is still refused
        let h = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS512"}"#);
        let mut mac = verifier().mac();
        mac.update(format!("{h}.{claims}").as_bytes());
        let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        assert_eq!(verifier().verify(&format!("{h}.{claims}.{sig}"), NOW).unwrap_err(), AuthError::Invalid);
    }

    #[test]
    fn leeway_extends_expiry() {
        let v = TokenVerifier::new(b"secret", 30, &["officer".to_string()]);
        let t = v.mint(&json!({"id": 1, "role": "officer", "exp": NOW - 10}));
        assert!(v.verify(&t, NOW).is_ok());
    }

    #[test]
    fn roles_are_case_insensitive() {
        let t = token(json!({"id": 1, "role": "OFFICER", "exp": NOW + 5}));
        assert!(verifier().verify(&t, NOW).unwrap().is_watcher());
    }
}
