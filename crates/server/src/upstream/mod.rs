//! Calls to the WeCare backend (contract §10): position forwarding and
//! token checks. One pooled HTTP/1.1 client (keep-alive), plain `http://`
//! — the backend is reached on the service network; TLS, when the backend
//! needs it, is terminated in front of it. Every caller takes its turn
//! from the one [`Budget`] first; a 429 answer pauses the budget here,
//! for every caller.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderMap, RETRY_AFTER};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Why a call got no HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CallError {
    /// Not answered in time.
    #[error("timeout")]
    Timeout,
    /// The connection failed (refused, reset, DNS).
    #[error("unreachable")]
    Unreachable,
    /// The URL or request could not be built.
    #[error("bad request")]
    BadRequest,
}

impl CallError {
    /// The label the metrics use for it.
    pub(crate) const fn label(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Unreachable => "unreachable",
            Self::BadRequest => "bad_request",
        }
    }
}

pub(crate) mod budget;

pub(crate) use budget::Budget;

/// The backend's HTTP client. Cheap to clone (a shared pool and budget).
#[derive(Debug, Clone)]
pub(crate) struct Upstream {
    client: Client<HttpConnector, Full<Bytes>>,
    budget: Arc<Budget>,
}

impl Upstream {
    /// A client with its own connection pool, taking its turns from
    /// `budget`. A pool's connections belong to the runtime that opened
    /// them, so each runtime gets its own pool; the budget is shared.
    pub(crate) fn new(budget: Arc<Budget>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(3)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(256)
            .build(connector);
        Self { client, budget }
    }

    /// The budget every call takes its turn from.
    pub(crate) fn budget(&self) -> &Budget {
        &self.budget
    }

    /// Sends one request (the caller has taken its turn from the budget);
    /// the body of the answer is read and dropped (so the connection goes
    /// back to the pool). A 429 pauses the budget until its `Retry-After`
    /// or `RateLimit-Reset` has passed.
    pub(crate) async fn call(
        &self,
        method: Method,
        url: &str,
        bearer: &str,
        body: Option<Bytes>,
        timeout: Duration,
    ) -> Result<StatusCode, CallError> {
        let mut req = Request::builder().method(method).uri(url).header("authorization", format!("Bearer {bearer}"));
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req.body(Full::new(body.unwrap_or_default())).map_err(|_| CallError::BadRequest)?;
        let exchange = async {
            let resp = self.client.request(req).await.map_err(|_| CallError::Unreachable)?;
            let status = resp.status();
            if status == StatusCode::TOO_MANY_REQUESTS {
                let pause = retry_after(resp.headers(), SystemTime::now()).unwrap_or(budget::DEFAULT_PAUSE);
                self.budget.throttled(pause, Instant::now());
                tracing::warn!(
                    pause_secs = pause.as_secs_f64(),
                    "the backend throttles this service (429): every call to it waits"
                );
            }
            let _ = resp.into_body().collect().await;
            Ok(status)
        };
        tokio::time::timeout(timeout, exchange).await.map_err(|_| CallError::Timeout)?
    }
}

/// How long a 429 asks to wait: `Retry-After` (seconds, or an HTTP date),
/// else `RateLimit-Reset` (seconds; the IETF draft's header, and the
/// `reset=` of its combined `RateLimit` form). Rounded up by a second: the
/// limiter's window ends at a second it rounds.
fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    let secs = |v: &str| v.parse::<f64>().ok().filter(|s| s.is_finite() && *s >= 0.0).map(Duration::from_secs_f64);
    let wait = text(RETRY_AFTER.as_str())
        .and_then(|v| secs(v).or_else(|| httpdate_secs(v).map(|at| at.duration_since(now).unwrap_or_default())))
        .or_else(|| text("ratelimit-reset").and_then(secs))
        .or_else(|| text("ratelimit")?.split([';', ',']).find_map(|part| secs(part.trim().strip_prefix("reset=")?)))
        .or_else(|| text("x-ratelimit-reset").and_then(secs))?;
    Some(wait + Duration::from_secs(1))
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the form HTTP dates take.
fn httpdate_secs(v: &str) -> Option<SystemTime> {
    let format = time::format_description::parse_borrowed::<1>(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT",
    )
    .ok()?;
    let at = time::PrimitiveDateTime::parse(v, &format).ok()?.assume_utc();
    let secs = u64::try_from(at.unix_timestamp()).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

/// `s` with every byte but letters, digits, `-`, `_` and `~` percent-encoded
/// (a driver id in a URL path). `.` is encoded too: an id of `..` would
/// otherwise be a path segment a normalising proxy resolves to another
/// route, carrying the service token.
pub(crate) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_429_says_how_long_to_wait_in_any_of_its_headers() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_747);
        let with = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, v.parse().expect("header value"));
            }
            retry_after(&h, now)
        };
        let s = Duration::from_secs;
        assert_eq!(with(&[("retry-after", "33"), ("ratelimit-reset", "20")]), Some(s(34)));
        assert_eq!(with(&[("retry-after", "Sun, 06 Nov 1994 08:49:37 GMT")]), Some(s(31)));
        assert_eq!(with(&[("ratelimit-reset", "20")]), Some(s(21)));
        assert_eq!(with(&[("ratelimit", "limit=100, remaining=0, reset=7")]), Some(s(8)));
        assert_eq!(with(&[("retry-after", "soon")]), None);
        assert_eq!(with(&[]), None);
    }

    #[test]
    fn driver_ids_are_encoded_for_a_path() {
        assert_eq!(percent_encode("amb-7"), "amb-7");
        assert_eq!(percent_encode("a/b c?d"), "a%2Fb%20c%3Fd");
        assert_eq!(percent_encode("ก"), "%E0%B8%81");
        assert_eq!(percent_encode(".."), "%2E%2E", "no dot segments");
        assert_eq!(percent_encode("amb.7"), "amb%2E7");
    }
}
