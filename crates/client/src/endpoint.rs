//! The server address: a base URL turned into the TCP address to dial and the
//! Engine.IO websocket URL to request.

use std::fmt::Write as _;

use crate::ClientError;

/// Where to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    /// `host:port`, as `TcpStream::connect` accepts it.
    pub(crate) tcp_addr: String,
    /// `ws://host:port/socket.io/?EIO=4&transport=websocket[&k=v...]`.
    pub(crate) ws_url: String,
}

impl Endpoint {
    /// Parses `http://host[:port][/]` (or `ws://`) and appends `query`.
    pub(crate) fn parse(url: &str, query: &[(String, String)]) -> Result<Self, ClientError> {
        let invalid = |why: &str| ClientError::InvalidOptions(format!("url {url:?}: {why}"));
        let (scheme, rest) = url.split_once("://").ok_or_else(|| invalid("no scheme"))?;
        match scheme.to_ascii_lowercase().as_str() {
            "http" | "ws" => {}
            "https" | "wss" => return Err(invalid("TLS is not supported")),
            _ => return Err(invalid("scheme must be http or ws")),
        }
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        if !(tail.is_empty() || tail == "/") {
            return Err(invalid("must not have a path (the namespace is a separate option)"));
        }
        if authority.is_empty() || authority.contains('@') {
            return Err(invalid("bad host"));
        }
        let has_port = match authority.rfind(']') {
            Some(bracket) => authority[bracket..].contains(':'),
            None => authority.contains(':'),
        };
        let tcp_addr = if has_port { authority.to_owned() } else { format!("{authority}:80") };
        let mut ws_url = format!("ws://{authority}/socket.io/?EIO=4&transport=websocket");
        for (key, value) in query {
            ws_url.push('&');
            push_percent_encoded(&mut ws_url, key);
            ws_url.push('=');
            push_percent_encoded(&mut ws_url, value);
        }
        Ok(Self { tcp_addr, ws_url })
    }
}

/// RFC 3986 percent-encoding of everything but unreserved characters.
fn push_percent_encoded(out: &mut String, s: &str) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{b:02X}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_url_maps_to_websocket_transport() {
        let e = Endpoint::parse("http://127.0.0.1:3000", &[]).unwrap();
        assert_eq!(e.tcp_addr, "127.0.0.1:3000");
        assert_eq!(e.ws_url, "ws://127.0.0.1:3000/socket.io/?EIO=4&transport=websocket");
        let e = Endpoint::parse("ws://localhost/", &[]).unwrap();
        assert_eq!(e.tcp_addr, "localhost:80");
    }

    #[test]
    fn ipv6_hosts_keep_brackets() {
        let e = Endpoint::parse("http://[::1]:8080", &[]).unwrap();
        assert_eq!(e.tcp_addr, "[::1]:8080");
        let e = Endpoint::parse("http://[::1]", &[]).unwrap();
        assert_eq!(e.tcp_addr, "[::1]:80");
    }

    #[test]
    fn query_parameters_are_percent_encoded() {
        let query = vec![("token".to_owned(), "a b&c=d".to_owned())];
        let e = Endpoint::parse("http://h:1", &query).unwrap();
        assert!(e.ws_url.ends_with("&token=a%20b%26c%3Dd"), "{}", e.ws_url);
    }

    #[test]
    fn unsupported_urls_are_rejected() {
        for url in ["127.0.0.1:3000", "https://h:1", "ftp://h", "http://h:1/locations", "http://", "http://u@h"] {
            assert!(matches!(Endpoint::parse(url, &[]), Err(ClientError::InvalidOptions(_))), "{url}");
        }
    }
}
