//! A minimal HTTP/1.1 client over a tokio `TcpStream` for the two REST calls
//! of the fallback paths (`POST /api/driver-locations`,
//! `GET /api/realtime/events`): one request per connection, `Connection: close`.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::ClientError;
use crate::endpoint::Endpoint;

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

/// Sends one request to `base_url` + `path` and reads the whole response.
pub(crate) async fn request(
    base_url: &str,
    method: &str,
    path: &str,
    bearer: &str,
    extra_headers: &[(String, String)],
    body: Option<&[u8]>,
    timeout: Duration,
) -> Result<HttpResponse, ClientError> {
    let endpoint = Endpoint::parse(base_url, &[])?;
    let exchange = async {
        let mut tcp = TcpStream::connect(&endpoint.tcp_addr).await?;
        tcp.set_nodelay(true)?;
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAccept: application/json\r\nAuthorization: Bearer {bearer}\r\n",
            endpoint.tcp_addr
        );
        for (name, value) in extra_headers {
            if name.contains(['\r', '\n', ':']) || value.contains(['\r', '\n']) {
                return Err(ClientError::InvalidOptions(format!("header {name:?}")));
            }
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if let Some(body) = body {
            head.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        tcp.write_all(head.as_bytes()).await?;
        if let Some(body) = body {
            tcp.write_all(body).await?;
        }
        tcp.flush().await?;
        let mut raw = Vec::new();
        (&mut tcp).take(MAX_RESPONSE as u64 + 1).read_to_end(&mut raw).await?;
        if raw.len() > MAX_RESPONSE {
            return Err(ClientError::Protocol("http response too large".to_owned()));
        }
        parse_response(&raw)
    };
    tokio::time::timeout(timeout, exchange).await.map_err(|_| ClientError::Timeout)?
}

fn parse_response(raw: &[u8]) -> Result<HttpResponse, ClientError> {
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
    } else {
        rest.to_vec()
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
        let r = parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}").unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"{}"[..]));
    }

    #[test]
    fn chunked_body_is_decoded() {
        let r = parse_response(
            b"HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n4\r\n\":1}\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!((r.status, r.json().unwrap()), (403, serde_json::json!({"a": 1})));
    }

    #[test]
    fn garbage_is_a_protocol_error() {
        assert!(matches!(parse_response(b"nonsense"), Err(ClientError::Protocol(_))));
        assert!(matches!(parse_response(b"HTTP/1.1 x\r\n\r\n"), Err(ClientError::Protocol(_))));
    }
}
