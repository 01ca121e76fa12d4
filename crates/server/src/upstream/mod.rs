//! Calls to the WeCare backend (contract §10): position forwarding and
//! token checks. One pooled HTTP/1.1 client (keep-alive), plain `http://`
//! — the backend is reached on the service network; TLS, when the backend
//! needs it, is terminated in front of it.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
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

/// The backend's HTTP client. Cheap to clone (a shared pool).
#[derive(Debug, Clone)]
pub(crate) struct Upstream {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Default for Upstream {
    fn default() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(3)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(256)
            .build(connector);
        Self { client }
    }
}

impl Upstream {
    /// Sends one request; the body of the answer is read and dropped (so
    /// the connection goes back to the pool).
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
            let _ = resp.into_body().collect().await;
            Ok(status)
        };
        tokio::time::timeout(timeout, exchange).await.map_err(|_| CallError::Timeout)?
    }
}

/// `s` with every byte outside RFC 3986's unreserved set percent-encoded
/// (a driver id in a URL path).
pub(crate) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
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
    fn driver_ids_are_encoded_for_a_path() {
        assert_eq!(percent_encode("amb-7"), "amb-7");
        assert_eq!(percent_encode("a/b c?d"), "a%2Fb%20c%3Fd");
        assert_eq!(percent_encode("ก"), "%E0%B8%81");
    }
}
