//! The server a client command (`bench`, `simulate`, `watch`) talks to: its
//! URL is checked (an http:// or https:// base URL; for the load-generating
//! commands, on this machine unless the user says otherwise), and the TLS
//! trust for https:// comes from `--ca-cert`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, anyhow, bail, ensure};
use wecare_client::{CertificateProblem, ClientError, TlsConfig};

/// Longest wait for the TLS check before a run.
const TLS_CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// The TLS flag of the client commands.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TlsArgs {
    /// PEM file of CA certificates to trust for an https:// --url, besides
    /// the built-in Mozilla roots (e.g. a private CA). The server's
    /// certificate is always verified.
    #[arg(long, env = "WECARE_CA_CERT", value_name = "PEM_FILE")]
    ca_cert: Option<PathBuf>,
}

impl TlsArgs {
    /// The SDK's TLS configuration: the built-in roots plus `--ca-cert`.
    pub fn to_config(&self) -> anyhow::Result<TlsConfig> {
        match &self.ca_cert {
            None => Ok(TlsConfig::default()),
            Some(path) => {
                TlsConfig::builder().ca_pem_file(path).build().with_context(|| format!("--ca-cert {}", path.display()))
            }
        }
    }
}

/// The host part of `http[s]://host[:port][/...]`, without IPv6 brackets.
pub fn url_host(url: &str) -> anyhow::Result<&str> {
    let (scheme, rest) =
        url.split_once("://").with_context(|| format!("--url {url:?} has no scheme (expected http://HOST:PORT)"))?;
    if !["http", "https", "ws", "wss"].iter().any(|s| scheme.eq_ignore_ascii_case(s)) {
        bail!("--url {url:?}: the scheme must be http:// or https://");
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    ensure!(!host.is_empty(), "--url {url:?} has no host");
    Ok(host)
}

/// Whether `url` is https:// (or wss://).
pub fn is_tls(url: &str) -> bool {
    url.split_once("://").is_some_and(|(scheme, _)| ["https", "wss"].iter().any(|s| scheme.eq_ignore_ascii_case(s)))
}

pub fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Before a run against an https:// URL: one TLS handshake, so that a
/// certificate the SDK refuses ends the command at once, with a hint,
/// rather than in retries that can never succeed. A server that cannot be
/// reached is left to the command (it may be about to start).
///
/// # Errors
/// The certificate was refused or the handshake failed.
pub async fn check_tls(url: &str, tls: &TlsConfig) -> anyhow::Result<()> {
    match tls.check_server(url, TLS_CHECK_TIMEOUT).await {
        Ok(()) | Err(ClientError::Io(_) | ClientError::Timeout) => Ok(()),
        Err(e @ ClientError::Certificate { problem: CertificateProblem::UnknownIssuer, .. }) => Err(anyhow!(
            "TLS with {url}: {e}; if the server's CA is a private one, pass its certificate with \
             --ca-cert PEM_FILE (or WECARE_CA_CERT)"
        )),
        Err(e) => Err(anyhow::Error::new(e).context(format!("TLS with {url}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_and_https_urls_are_accepted() {
        assert_eq!(url_host("http://127.0.0.1:3000").unwrap(), "127.0.0.1");
        assert_eq!(url_host("https://localhost").unwrap(), "localhost");
        assert_eq!(url_host("HTTPS://[::1]:8443/").unwrap(), "::1");
        assert!(is_tls("https://h") && is_tls("WSS://h") && !is_tls("http://h"));
        for bad in ["127.0.0.1:3000", "ftp://h", "https://", "https://:443"] {
            assert!(url_host(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_missing_ca_file_is_an_error_naming_it() {
        let args = TlsArgs { ca_cert: Some("/nonexistent/ca.pem".into()) };
        let err = format!("{:#}", args.to_config().unwrap_err());
        assert!(err.contains("--ca-cert /nonexistent/ca.pem"), "{err}");
        assert!(TlsArgs::default().to_config().is_ok());
    }
}
