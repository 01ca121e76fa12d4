//! A minimal HTTP/1.1 client over a tokio `TcpStream` (TLS for `https://`)
//! for the two REST calls of the fallback paths (`POST /api/driver-locations`,
//! `GET /api/realtime/events`): one request per connection, `Connection: close`.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::endpoint::Endpoint;
use crate::{ClientError, TlsConfig, tls};

/// Largest response accepted (the server's pages are far smaller).
const MAX_RESPONSE: usize = 16 * 1024 * 1024;

/// A response: status and (de-chunked) body.
#[derive(Debug)]
pub(crate) struct HttpResponse {
    pub(crate) status: u16,
    pub(crate) body: Vec<u8>,
}

impl HttpResponse {
    pub(crate) fn json(&self) -> Result<serde_json::Value, ClientError> {
        Ok(serde_json::from_slice(&self.body)?)
    }
}

/// The server a request goes to, and how.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HttpTarget<'a> {
    /// The base URL, `http[s]://host[:port]`.
    pub(crate) url: &'a str,
    pub(crate) tls: &'a TlsConfig,
    pub(crate) headers: &'a [(String, String)],
}

/// Sends one request to `target` + `path` and reads the whole response.
pub(crate) async fn request(
    target: HttpTarget<'_>,
    method: &str,
    path: &str,
    bearer: &str,
    body: Option<&[u8]>,
    timeout: Duration,
) -> Result<HttpResponse, ClientError> {
    let endpoint = Endpoint::parse(target.url, &[])?;
    let exchange = async {
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAccept: application/json\r\nAuthorization: Bearer {bearer}\r\n",
            endpoint.authority
        );
        for (name, value) in target.headers {
            if name.contains(['\r', '\n', ':']) || value.contains(['\r', '\n']) {
                return Err(ClientError::InvalidOptions(format!("header {name:?}")));
            }
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if let Some(body) = body {
            head.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let mut stream = tls::dial(&endpoint, target.tls).await?;
        stream.write_all(head.as_bytes()).await?;
        if let Some(body) = body {
            stream.write_all(body).await?;
        }
        stream.flush().await?;
        let mut raw = Vec::new();
        let closed = match (&mut stream).take(MAX_RESPONSE as u64 + 1).read_to_end(&mut raw).await {
            Ok(_) => Closed::Cleanly,
            // rustls reports a peer that closes without a TLS close_notify,
            // which many servers and load balancers do after the body.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && !raw.is_empty() => Closed::Abruptly,
            Err(e) => return Err(e.into()),
        };
        if raw.len() > MAX_RESPONSE {
            return Err(ClientError::Protocol("http response too large".to_owned()));
        }
        parse_response(&raw, closed)
    };
    tokio::time::timeout(timeout, exchange).await.map_err(|_| ClientError::Timeout)?
}

/// How the server ended the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closed {
    /// End of stream (after a TLS close_notify, with TLS).
    Cleanly,
    /// A TLS connection ended without close_notify: a body delimited by the
    /// end of the connection may have been cut by an attacker, so only a
    /// body with a length or chunked framing is accepted.
    Abruptly,
}

fn parse_response(raw: &[u8], closed: Closed) -> Result<HttpResponse, ClientError> {
    let bad = |why: &str| ClientError::Protocol(format!("http response: {why}"));
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| bad("no end of headers"))?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| bad("headers are not utf-8"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status =
        status_line.split(' ').nth(1).and_then(|s| s.parse::<u16>().ok()).ok_or_else(|| bad("bad status line"))?;
    let mut chunked = false;
    let mut length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") && value.to_ascii_lowercase().contains("chunked") {
            chunked = true;
        } else if name.eq_ignore_ascii_case("content-length") {
            length = value.parse::<usize>().ok();
        }
    }
    let rest = &raw[end + 4..];
    let body = if chunked {
        dechunk(rest).ok_or_else(|| bad("bad chunked body"))?
    } else if let Some(n) = length {
        rest.get(..n).ok_or_else(|| bad("body shorter than content-length"))?.to_vec()
    } else if closed == Closed::Cleanly {
        rest.to_vec()
    } else {
        return Err(bad("connection closed without TLS close_notify before an unframed body ended"));
    };
    Ok(HttpResponse { status, body })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_body_is_read() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}", Closed::Abruptly).unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"{}"[..]));
    }

    #[test]
    fn chunked_body_is_decoded() {
        let r = parse_response(
            b"HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n4\r\n\":1}\r\n0\r\n\r\n",
            Closed::Abruptly,
        )
        .unwrap();
        assert_eq!((r.status, r.json().unwrap()), (403, serde_json::json!({"a": 1})));
    }

    #[test]
    fn garbage_is_a_protocol_error() {
        assert!(matches!(parse_response(b"nonsense", Closed::Cleanly), Err(ClientError::Protocol(_))));
        assert!(matches!(parse_response(b"HTTP/1.1 x\r\n\r\n", Closed::Cleanly), Err(ClientError::Protocol(_))));
    }

    #[test]
    fn an_unframed_body_needs_a_clean_close() {
        let raw = b"HTTP/1.1 200 OK\r\n\r\n{\"events\":[]}";
        assert_eq!(parse_response(raw, Closed::Cleanly).unwrap().body, b"{\"events\":[]}");
        assert!(matches!(parse_response(raw, Closed::Abruptly), Err(ClientError::Protocol(_))));
        let cut = b"HTTP/1.1 200 OK\r\ncontent-length: 20\r\n\r\n{\"events\"";
        assert!(matches!(parse_response(cut, Closed::Abruptly), Err(ClientError::Protocol(_))));
    }
}
