//! The server address: a base URL turned into the TCP address to dial, the
//! name its TLS certificate must carry, and the Engine.IO websocket URL.

use std::fmt::Write as _;

use rustls::pki_types::ServerName;

use crate::ClientError;

/// Where to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    /// `host:port`, as `TcpStream::connect` accepts it.
    pub(crate) tcp_addr: String,
    /// `host[:port]` as the URL gives it, for the `Host` header.
    pub(crate) authority: String,
    /// For `https`/`wss`: the name the server's certificate is checked
    /// against (and sent as SNI). `None` for plain `http`/`ws`.
    pub(crate) tls_name: Option<ServerName<'static>>,
    /// `ws[s]://host[:port]/socket.io/?EIO=4&transport=websocket[&k=v...]`.
    pub(crate) ws_url: String,
}

impl Endpoint {
    /// Parses `http[s]://host[:port][/]` (or `ws[s]://`) and appends `query`.
    /// The default port is 80, or 443 with TLS.
    pub(crate) fn parse(url: &str, query: &[(String, String)]) -> Result<Self, ClientError> {
        let invalid = |why: &str| ClientError::InvalidOptions(format!("url {url:?}: {why}"));
        let (scheme, rest) = url.split_once("://").ok_or_else(|| invalid("no scheme"))?;
        let tls = match scheme.to_ascii_lowercase().as_str() {
            "http" | "ws" => false,
            "https" | "wss" => true,
            _ => return Err(invalid("scheme must be http, https, ws or wss")),
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        if !(tail.is_empty() || tail == "/") {
            return Err(invalid("must not have a path (the namespace is a separate option)"));
        }
        if authority.is_empty() || authority.contains('@') {
            return Err(invalid("bad host"));
        }
        let (host, has_port) = match authority.strip_prefix('[') {
            Some(v6) => {
                let (host, after) = v6.split_once(']').ok_or_else(|| invalid("unclosed '[' in host"))?;
                (host, after.starts_with(':'))
            }
            None => (authority.split(':').next().unwrap_or_default(), authority.contains(':')),
        };
        if host.is_empty() {
            return Err(invalid("bad host"));
        }
        let tls_name = if tls {
            let name =
                ServerName::try_from(host.to_owned()).map_err(|_| invalid("host is not a valid TLS server name"))?;
            Some(name)
        } else {
            None
        };
        let tcp_addr = match (has_port, tls) {
            (true, _) => authority.to_owned(),
            (false, false) => format!("{authority}:80"),
            (false, true) => format!("{authority}:443"),
        };
        let ws_scheme = if tls { "wss" } else { "ws" };
        let mut ws_url = format!("{ws_scheme}://{authority}/socket.io/?EIO=4&transport=websocket");
        for (key, value) in query {
            ws_url.push('&');
            push_percent_encoded(&mut ws_url, key);
            ws_url.push('=');
            push_percent_encoded(&mut ws_url, value);
        }
        Ok(Self { tcp_addr, authority: authority.to_owned(), tls_name, ws_url })
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
    fn https_and_wss_urls_use_tls_and_port_443_by_default() {
        let e = Endpoint::parse("https://rt.example.org", &[]).unwrap();
        assert_eq!(e.tcp_addr, "rt.example.org:443");
        assert_eq!(e.authority, "rt.example.org");
        assert_eq!(e.tls_name, Some(ServerName::try_from("rt.example.org").unwrap()));
        assert_eq!(e.ws_url, "wss://rt.example.org/socket.io/?EIO=4&transport=websocket");
        let e = Endpoint::parse("WSS://localhost:8443/", &[]).unwrap();
        assert_eq!(e.tcp_addr, "localhost:8443");
        assert_eq!(e.tls_name, Some(ServerName::try_from("localhost").unwrap()));
        assert!(e.ws_url.starts_with("wss://localhost:8443/socket.io/"), "{}", e.ws_url);
    }

    #[test]
    fn tls_names_of_ip_hosts_are_addresses() {
        let e = Endpoint::parse("https://127.0.0.1:9443", &[]).unwrap();
        assert_eq!(e.tls_name, Some(ServerName::from(std::net::IpAddr::from([127, 0, 0, 1]))));
        let e = Endpoint::parse("https://[::1]", &[]).unwrap();
        assert_eq!(e.tcp_addr, "[::1]:443");
        assert_eq!(e.tls_name, Some(ServerName::from(std::net::Ipv6Addr::LOCALHOST)));
    }

    #[test]
    fn plain_urls_have_no_tls_name() {
        assert_eq!(Endpoint::parse("http://localhost:3000", &[]).unwrap().tls_name, None);
        assert_eq!(Endpoint::parse("ws://localhost", &[]).unwrap().authority, "localhost");
    }

    #[test]
    fn unsupported_urls_are_rejected() {
        for url in [
            "127.0.0.1:3000",
            "ftp://h",
            "http://h:1/locations",
            "https://h/socket.io",
            "http://",
            "https://",
            "http://u@h",
            "https://[::1",
            "https://bad_name!",
            "http://:80",
        ] {
            assert!(matches!(Endpoint::parse(url, &[]), Err(ClientError::InvalidOptions(_))), "{url}");
        }
    }
}
