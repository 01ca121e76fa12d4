//! [`TlsProxy`]: a loopback proxy that ends TLS in front of a plain server,
//! so tests reach the real server over `https://` / `wss://` with a
//! certificate they made themselves.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

/// Counters of what the proxy did.
#[derive(Debug, Default)]
pub struct TlsProxyStats {
    /// TLS handshakes completed (each then forwarded to the upstream).
    pub handshakes: AtomicU64,
    /// TLS handshakes that failed: a client that refused the certificate
    /// ends up here.
    pub failed_handshakes: AtomicU64,
}

/// A TLS-terminating TCP proxy on `127.0.0.1:0`: it presents the given
/// certificate chain, and forwards the decrypted bytes of each connection
/// to `upstream`. Dropping it closes the listener and every connection.
#[derive(Debug)]
pub struct TlsProxy {
    addr: SocketAddr,
    stats: Arc<TlsProxyStats>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl TlsProxy {
    /// Binds `127.0.0.1:0` and starts serving `cert_chain_pem` (the server
    /// certificate first, then any intermediates) with `key_pem` (PKCS#8,
    /// PKCS#1 or SEC1).
    ///
    /// # Errors
    /// [`io::ErrorKind::InvalidInput`] for a certificate or key that does not
    /// parse or match; an I/O error when the listener cannot be bound.
    pub async fn start(upstream: SocketAddr, cert_chain_pem: &str, key_pem: &str) -> io::Result<TlsProxy> {
        let invalid = |e: &dyn std::fmt::Display| io::Error::new(io::ErrorKind::InvalidInput, e.to_string());
        let chain = CertificateDer::pem_slice_iter(cert_chain_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid(&e))?;
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| invalid(&e))?;
        let mut config = ServerConfig::builder_with_provider(crate::tls::crypto_provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid(&e))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| invalid(&e))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let stats = Arc::new(TlsProxyStats::default());
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        tracker.spawn(accept_loop(listener, acceptor, upstream, Arc::clone(&stats), shutdown.clone(), tracker.clone()));
        Ok(TlsProxy { addr, stats, shutdown, tracker })
    }

    /// The proxy's own address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// What the proxy did so far.
    pub fn stats(&self) -> &TlsProxyStats {
        &self.stats
    }

    /// Closes the listener and every connection and waits for them.
    pub async fn shutdown(&self) {
        self.shutdown.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    upstream: SocketAddr,
    stats: Arc<TlsProxyStats>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => return,
            a = listener.accept() => a,
        };
        let Ok((client, _)) = accepted else { continue };
        let (acceptor, stats, shutdown) = (acceptor.clone(), Arc::clone(&stats), shutdown.clone());
        tracker.spawn(async move {
            tokio::select! {
                () = shutdown.cancelled() => {}
                r = forward(client, acceptor, upstream, &stats) => if let Err(e) = r {
                    debug!(error = %e, "tls proxy connection ended");
                },
            }
        });
    }
}

async fn forward(
    client: TcpStream,
    acceptor: TlsAcceptor,
    upstream: SocketAddr,
    stats: &TlsProxyStats,
) -> io::Result<()> {
    let _ = client.set_nodelay(true);
    let mut tls = match acceptor.accept(client).await {
        Ok(tls) => tls,
        Err(e) => {
            stats.failed_handshakes.fetch_add(1, Ordering::Relaxed);
            return Err(e);
        }
    };
    stats.handshakes.fetch_add(1, Ordering::Relaxed);
    let mut server = TcpStream::connect(upstream).await?;
    let _ = server.set_nodelay(true);
    // When the upstream closes, shutting the TLS side down sends
    // close_notify, as a well-behaved TLS server does.
    tokio::io::copy_bidirectional(&mut tls, &mut server).await?;
    Ok(())
}
