//! Access tokens shaped like the WeCare backend's — `id`, `role`, `iat`,
//! `exp`, an optional `email`, and `driver_id` on drivers' — signed with the
//! server's secret: what `token` prints and what `bench`, `simulate` and
//! `watch` connect with.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

/// Whose token it is.
#[derive(Debug, Clone)]
pub struct Holder<'a> {
    /// The `id` claim (the user).
    pub id: &'a str,
    /// The `role` claim: driver, officer, admin, ...
    pub role: &'a str,
    /// The `email` claim, when set.
    pub email: Option<String>,
    /// The `driver_id` claim of a driver; `None` uses `id`.
    pub driver_id: Option<&'a str>,
}

impl<'a> Holder<'a> {
    pub fn new(id: &'a str, role: &'a str) -> Self {
        Self { id, role, email: None, driver_id: None }
    }

    pub fn with_email(mut self, email: impl Into<String>) -> Self {
        self.email = Some(email.into());
        self
    }
}

/// A token for `holder`, valid for `valid_for` from now.
pub fn mint(secret: &str, holder: &Holder<'_>, valid_for: Duration) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    wecare_server::dev_token(secret, &claims(holder, now, valid_for))
}

/// The claims of `holder`'s token issued at `now` (Unix seconds).
fn claims(holder: &Holder<'_>, now: u64, valid_for: Duration) -> Value {
    let mut claims = json!({
        "id": holder.id,
        "role": holder.role,
        "iat": now,
        "exp": now + valid_for.as_secs(),
    });
    if let Some(email) = &holder.email {
        claims["email"] = json!(email);
    }
    // The deployed backend puts `driver_id` on drivers' tokens only.
    if holder.role.eq_ignore_ascii_case("driver") {
        claims["driver_id"] = json!(holder.driver_id.unwrap_or(holder.id));
    }
    claims
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_driver_token_names_the_driver() {
        let c = claims(&Holder::new("u-7", "driver").with_email("u7@x"), 100, Duration::from_secs(60));
        assert_eq!(
            c,
            json!({ "id": "u-7", "role": "driver", "iat": 100, "exp": 160, "email": "u7@x", "driver_id": "u-7" })
        );
        let mut holder = Holder::new("u-7", "DRIVER");
        holder.driver_id = Some("amb-1");
        assert_eq!(claims(&holder, 0, Duration::ZERO)["driver_id"], "amb-1");
    }

    #[test]
    fn an_officer_token_has_no_driver_id_or_email_unless_given() {
        let c = claims(&Holder::new("o-1", "officer"), 5, Duration::from_secs(3600));
        assert_eq!(c, json!({ "id": "o-1", "role": "officer", "iat": 5, "exp": 3605 }));
    }
}
