//! TLS for both transports (the websocket and the HTTP fallback):
//! [`TlsConfig`], the one rustls client configuration they share, and the
//! dial that applies it to `https://` / `wss://` endpoints.
//!
//! The default trust store is Mozilla's roots compiled in (`webpki-roots`),
//! not the operating system's (`rustls-native-certs`): drivers and tools run
//! in slim containers and on gateways whose `/etc/ssl` may be missing or
//! stale, and compiled-in roots behave the same everywhere, with nothing to
//! read at start-up. The one case they do not cover, a private CA, is what
//! [`TlsBuilder`] adds.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_util::either::Either;

use crate::ClientError;
use crate::endpoint::Endpoint;
use crate::error::CertificateProblem;

/// A connection to the server: plain TCP, or TLS over TCP. The TLS state is
/// boxed so that plain connections (and the websocket that wraps them) stay
/// small.
pub(crate) type Stream = Either<TcpStream, Box<TlsStream<TcpStream>>>;

/// Which certificates the SDK trusts for `https://` and `wss://` URLs.
///
/// Server certificates are always verified (chain to a trusted CA, valid
/// now, issued for the URL's host); there is no switch to turn that off.
/// The default trusts Mozilla's root CAs, as a browser would; use
/// [`TlsConfig::builder`] to add a private CA. Cloning is cheap: clones share
/// one rustls configuration (and its session cache), so a fleet of
/// connections built from one `TlsConfig` parses the certificates once.
/// Plain `http://` URLs ignore it.
#[derive(Clone, Default)]
pub struct TlsConfig {
    /// `None`: the process-wide default (built on first use).
    client: Option<Arc<ClientConfig>>,
    /// What went into `client`, for `Debug`.
    extra_cas: usize,
    builtin_roots: bool,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let builtin = self.client.is_none() || self.builtin_roots;
        f.debug_struct("TlsConfig").field("builtin_roots", &builtin).field("extra_cas", &self.extra_cas).finish()
    }
}

impl TlsConfig {
    /// A builder starting from the built-in roots and no extra CA.
    pub fn builder() -> TlsBuilder {
        TlsBuilder { builtin_roots: true, cas: Vec::new() }
    }

    /// The rustls configuration both transports use.
    pub(crate) fn client_config(&self) -> Arc<ClientConfig> {
        static DEFAULT: OnceLock<Arc<ClientConfig>> = OnceLock::new();
        match &self.client {
            Some(client) => Arc::clone(client),
            None => Arc::clone(DEFAULT.get_or_init(|| Arc::new(client_config(builtin_roots())))),
        }
    }

    /// Connects to `url` and completes a TLS handshake with this
    /// configuration, then closes without sending anything: a start-up check
    /// that fails fast on a certificate the SDK's connections would refuse
    /// (whose retries would otherwise go on forever). `http://` URLs pass
    /// without a connection.
    ///
    /// # Errors
    /// [`ClientError::Certificate`] or [`ClientError::Tls`] when the
    /// handshake fails, [`ClientError::InvalidOptions`] for a bad URL,
    /// [`ClientError::Io`] when the server cannot be reached,
    /// [`ClientError::Timeout`] after `timeout`.
    pub async fn check_server(&self, url: &str, timeout: Duration) -> Result<(), ClientError> {
        let endpoint = Endpoint::parse(url, &[])?;
        if endpoint.tls_name.is_some() {
            tokio::time::timeout(timeout, dial(&endpoint, self)).await.map_err(|_| ClientError::Timeout)??;
        }
        Ok(())
    }
}

/// Builds a [`TlsConfig`] with extra trusted CA certificates.
///
/// ```no_run
/// # fn demo() -> Result<(), wecare_client::ClientError> {
/// let tls = wecare_client::TlsConfig::builder().ca_pem_file("/etc/wecare/ca.pem").build()?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct TlsBuilder {
    builtin_roots: bool,
    cas: Vec<CaSource>,
}

#[derive(Debug, Clone)]
enum CaSource {
    PemFile(PathBuf),
    Pem(Vec<u8>),
    Der(Vec<u8>),
}

impl TlsBuilder {
    /// Trusts every certificate in the PEM file at `path` (read by
    /// [`build`](Self::build)).
    pub fn ca_pem_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.cas.push(CaSource::PemFile(path.into()));
        self
    }

    /// Trusts every certificate in `pem` (`-----BEGIN CERTIFICATE-----` blocks).
    pub fn ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.cas.push(CaSource::Pem(pem.into()));
        self
    }

    /// Trusts the DER-encoded certificate `der`.
    pub fn ca_der(mut self, der: impl Into<Vec<u8>>) -> Self {
        self.cas.push(CaSource::Der(der.into()));
        self
    }

    /// Whether Mozilla's roots are trusted too. Defaults to `true`; `false`
    /// pins the server to the CAs given here.
    pub fn builtin_roots(mut self, trust: bool) -> Self {
        self.builtin_roots = trust;
        self
    }

    /// Reads and checks the CA certificates and builds the configuration
    /// (a blocking file read for [`ca_pem_file`](Self::ca_pem_file): call it
    /// at start-up).
    ///
    /// # Errors
    /// [`ClientError::InvalidOptions`] for an unreadable file, PEM without a
    /// certificate, a certificate that does not parse, or no trusted
    /// certificate at all.
    pub fn build(self) -> Result<TlsConfig, ClientError> {
        let mut roots = if self.builtin_roots { builtin_roots() } else { RootCertStore::empty() };
        let mut extra_cas = 0;
        for source in &self.cas {
            let (what, certs) = match source {
                CaSource::PemFile(path) => {
                    let what = format!("CA file {}", path.display());
                    let certs = CertificateDer::pem_file_iter(path)
                        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
                        .map_err(|e| invalid_ca(&what, &e))?;
                    (what, certs)
                }
                CaSource::Pem(pem) => {
                    let what = "CA PEM".to_owned();
                    let certs = CertificateDer::pem_slice_iter(pem)
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|e| invalid_ca(&what, &e))?;
                    (what, certs)
                }
                CaSource::Der(der) => ("CA DER".to_owned(), vec![CertificateDer::from(der.clone())]),
            };
            if certs.is_empty() {
                return Err(invalid_ca(&what, &"no CERTIFICATE block"));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| invalid_ca(&what, &e))?;
                extra_cas += 1;
            }
        }
        if roots.is_empty() {
            return Err(ClientError::InvalidOptions("TLS: no trusted CA (built-in roots off and none given)".into()));
        }
        Ok(TlsConfig { client: Some(Arc::new(client_config(roots))), extra_cas, builtin_roots: self.builtin_roots })
    }
}

fn invalid_ca(what: &str, err: &dyn fmt::Display) -> ClientError {
    ClientError::InvalidOptions(format!("{what}: {err}"))
}

fn builtin_roots() -> RootCertStore {
    RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() }
}

/// The crypto provider: *ring*, which builds in seconds with a C compiler
/// only (aws-lc-rs takes minutes on a 2-core machine). rustls 0.23.48
/// deprecates it because it has no post-quantum key exchange; classical
/// X25519/P-256 is what this trade buys. Moving to aws-lc-rs is this one
/// function and a feature flag. Named here rather than taken from the
/// process default, so that another crate enabling aws-lc-rs cannot make the
/// choice ambiguous.
#[allow(deprecated)]
pub(crate) fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn client_config(roots: RootCertStore) -> ClientConfig {
    let mut config = ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports TLS 1.2 and 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
    // Both transports speak HTTP/1.1 (the websocket upgrade needs it).
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config
}

/// Opens a TCP connection to `endpoint` and, for `https`/`wss`, completes
/// the TLS handshake with `tls`.
pub(crate) async fn dial(endpoint: &Endpoint, tls: &TlsConfig) -> Result<Stream, ClientError> {
    let tcp = TcpStream::connect(&endpoint.tcp_addr).await?;
    // Acks and events are small and latency-bound.
    tcp.set_nodelay(true)?;
    let Some(name) = &endpoint.tls_name else {
        return Ok(Either::Left(tcp));
    };
    let stream = TlsConnector::from(tls.client_config()).connect(name.clone(), tcp).await.map_err(handshake_error)?;
    Ok(Either::Right(Box::new(stream)))
}

/// tokio-rustls reports TLS failures as `io::Error`s wrapping the
/// `rustls::Error`; unwrap them into variants a caller can act on.
fn handshake_error(err: io::Error) -> ClientError {
    match err.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::InvalidCertificate(cert)) => {
            ClientError::Certificate { problem: problem_of(cert), detail: cert.to_string() }
        }
        Some(other) => ClientError::Tls(other.to_string()),
        None => ClientError::Io(err),
    }
}

fn problem_of(err: &rustls::CertificateError) -> CertificateProblem {
    use rustls::CertificateError as E;
    match err {
        E::UnknownIssuer => CertificateProblem::UnknownIssuer,
        E::NotValidForName | E::NotValidForNameContext { .. } => CertificateProblem::NameMismatch,
        E::Expired | E::ExpiredContext { .. } => CertificateProblem::Expired,
        E::NotValidYet | E::NotValidYetContext { .. } => CertificateProblem::NotYetValid,
        E::Revoked => CertificateProblem::Revoked,
        _ => CertificateProblem::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_trusts_the_builtin_roots() {
        let config = TlsConfig::default().client_config();
        assert!(Arc::ptr_eq(&config, &TlsConfig::default().client_config()), "built once, shared");
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }

    #[test]
    fn bad_ca_input_is_an_invalid_option() {
        let missing = TlsConfig::builder().ca_pem_file("/nonexistent/ca.pem").build();
        assert!(matches!(missing, Err(ClientError::InvalidOptions(m)) if m.contains("/nonexistent/ca.pem")));
        let empty = TlsConfig::builder().ca_pem("no certificate here").build();
        assert!(matches!(empty, Err(ClientError::InvalidOptions(_))));
        let garbage = TlsConfig::builder().ca_der(vec![1, 2, 3]).build();
        assert!(matches!(garbage, Err(ClientError::InvalidOptions(_))));
        let nothing = TlsConfig::builder().builtin_roots(false).build();
        assert!(matches!(nothing, Err(ClientError::InvalidOptions(_))));
    }

    #[test]
    fn certificate_errors_become_problems() {
        let io = |e: rustls::Error| io::Error::new(io::ErrorKind::InvalidData, e);
        let unknown = handshake_error(io(rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)));
        assert!(matches!(unknown, ClientError::Certificate { problem: CertificateProblem::UnknownIssuer, .. }));
        let name = handshake_error(io(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName)));
        assert!(matches!(name, ClientError::Certificate { problem: CertificateProblem::NameMismatch, .. }));
        let alert = handshake_error(io(rustls::Error::AlertReceived(rustls::AlertDescription::HandshakeFailure)));
        assert!(matches!(alert, ClientError::Tls(_)));
        let reset = handshake_error(io::Error::from(io::ErrorKind::ConnectionReset));
        assert!(matches!(reset, ClientError::Io(_)));
    }
}
