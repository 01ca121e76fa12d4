//! The SDK over TLS: the real server binary behind a TLS-terminating proxy
//! whose certificate the test made (a test CA, a server certificate for
//! `localhost` and `127.0.0.1`). Fixes are acked over `wss://`, a watcher
//! sees them, the HTTP fallback works over `https://`; an untrusted
//! certificate and one for another name are refused at once.

#![allow(clippy::unwrap_used)] // test helpers, as the tests themselves

mod common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::certs::TestCa;
use common::{PATIENCE, TestServer, counting_provider, mint, start_server, wait_for};
use tokio::sync::mpsc;
use wecare_client::testing::{FaultProxy, TlsProxy};
use wecare_client::{
    BackoffConfig, CertificateProblem, ClientError, ConnectOptions, Driver, DriverConfig, DriverConnection, Fix,
    SocketClient, TlsConfig, Watcher, WatcherConfig, WatcherConnection, WatcherEvent,
};
use wecare_proto::payload::StreamEvent;

fn upstream(server: &TestServer) -> SocketAddr {
    server.addr
}

/// A TLS proxy in front of `upstream` presenting a certificate of `ca` for `names`.
async fn tls_proxy(ca: &TestCa, names: &[&str], upstream: SocketAddr) -> TlsProxy {
    let cert = ca.server_cert(names);
    TlsProxy::start(upstream, &cert.chain_pem, &cert.key_pem).await.unwrap()
}

fn fast_backoff() -> BackoffConfig {
    BackoffConfig { base: Duration::from_millis(50), cap: Duration::from_millis(300) }
}

fn driver_config(url: &str, dir: &std::path::Path, user: &str, tls: TlsConfig) -> DriverConfig {
    let (provider, _) = counting_provider(mint("driver", user));
    let mut config = DriverConfig::new(url, dir.join(format!("{user}.sqlite3")), provider);
    config.tls = tls;
    config.backoff = fast_backoff();
    config
}

fn watcher_config(url: &str, tls: TlsConfig) -> WatcherConfig {
    let (provider, _) = counting_provider(mint("officer", "officer-tls"));
    let mut config = WatcherConfig::new(url, provider);
    config.tls = tls;
    config.backoff = fast_backoff();
    config
}

async fn next(events: &mut mpsc::Receiver<WatcherEvent>) -> WatcherEvent {
    tokio::time::timeout(PATIENCE, events.recv()).await.expect("timed out waiting for an event").expect("watcher ended")
}

/// Receives until every id in `want` was seen in a `location:updated`.
async fn receive_all(events: &mut mpsc::Receiver<WatcherEvent>, want: &HashSet<String>) {
    let mut seen = HashSet::new();
    while !want.is_subset(&seen) {
        if let WatcherEvent::Event(StreamEvent::LocationUpdated(fix)) = next(events).await {
            seen.insert(fix.id);
        }
    }
}

#[tokio::test]
async fn a_driver_over_wss_gets_acks_and_a_watcher_receives_its_fixes() {
    let server = start_server().await;
    let ca = TestCa::new("wecare test CA");
    let proxy = tls_proxy(&ca, &["localhost", "127.0.0.1"], upstream(&server)).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    // The driver trusts the CA from a PEM file, besides the built-in roots,
    // and reaches the proxy by DNS name; the watcher is pinned to the CA
    // (DER, no built-in roots) and uses the IP address.
    let driver_tls = TlsConfig::builder().ca_pem_file(&ca_file).build().unwrap();
    let watcher_tls = TlsConfig::builder().ca_der(ca.der()).builtin_roots(false).build().unwrap();
    let port = proxy.port();
    driver_tls.check_server(&format!("https://localhost:{port}"), PATIENCE).await.unwrap();

    let (watcher, mut events) =
        Watcher::start(watcher_config(&format!("https://127.0.0.1:{port}"), watcher_tls)).await.unwrap();
    assert!(matches!(next(&mut events).await, WatcherEvent::Snapshot { .. }), "a fresh watcher starts with a snapshot");
    assert_eq!(*watcher.connection().borrow(), WatcherConnection::Connected);

    let driver = Driver::start(driver_config(&format!("wss://localhost:{port}/"), dir.path(), "drv-tls", driver_tls))
        .await
        .unwrap();
    let mut want = HashSet::new();
    for i in 0..5 {
        want.insert(driver.record(Fix::new(13.7 + f64::from(i) * 0.001, 100.5)).await.unwrap());
    }
    let mut state = driver.state();
    let done = wait_for(&mut state, "every fix acked", |s| s.pending == 0 && s.last_ack.is_some()).await;
    assert_eq!(done.connection, DriverConnection::Connected, "acked over the socket");
    assert_eq!(done.dead_letters, 0);
    receive_all(&mut events, &want).await;

    assert!(proxy.stats().handshakes.load(Ordering::Relaxed) >= 2, "both came through TLS");
    assert_eq!(proxy.stats().failed_handshakes.load(Ordering::Relaxed), 0);
    driver.shutdown().await;
    watcher.shutdown().await;
}

#[tokio::test]
async fn the_http_fallback_and_the_long_poll_work_over_https() {
    let server = start_server().await;
    // TLS proxy -> fault proxy (which sees plain HTTP and refuses every
    // websocket upgrade) -> server: only the REST paths get through.
    let faults = FaultProxy::start(upstream(&server)).await.unwrap();
    faults.refuse_websockets();
    let ca = TestCa::new("wecare test CA");
    let proxy = tls_proxy(&ca, &["127.0.0.1"], faults.addr()).await;
    let url = format!("https://127.0.0.1:{}", proxy.port());
    let tls = TlsConfig::builder().ca_pem(ca.pem()).build().unwrap();

    let mut config = watcher_config(&url, tls.clone());
    config.long_poll_after = Duration::ZERO;
    let (watcher, mut events) = Watcher::start(config).await.unwrap();
    // With every upgrade refused, this can only have come by GET.
    assert!(matches!(next(&mut events).await, WatcherEvent::Snapshot { .. }), "the snapshot by GET /latest");

    let dir = tempfile::tempdir().unwrap();
    let driver = Driver::start(driver_config(&url, dir.path(), "drv-https", tls)).await.unwrap();
    let mut want = HashSet::new();
    for _ in 0..3 {
        want.insert(driver.record(Fix::new(13.75, 100.5)).await.unwrap());
    }
    let mut state = driver.state();
    // Acks can only have come by POST: no upgrade gets through.
    wait_for(&mut state, "drained over http", |s| s.pending == 0 && s.last_ack.is_some()).await;
    receive_all(&mut events, &want).await;
    assert!(faults.stats().refused_upgrades.load(Ordering::Relaxed) >= 2, "websockets were refused");
    driver.shutdown().await;
    watcher.shutdown().await;
}

#[tokio::test]
async fn a_certificate_from_an_untrusted_ca_is_refused_at_once() {
    let server = start_server().await;
    let ca = TestCa::new("nobody trusts this CA");
    let proxy = tls_proxy(&ca, &["localhost", "127.0.0.1"], upstream(&server)).await;
    let url = format!("https://localhost:{}", proxy.port());
    let token = mint("officer", "officer-untrusted");

    // The socket: a certificate error, well before the connect timeout.
    let mut opts = ConnectOptions::locations(&url, serde_json::json!({ "token": token }));
    opts.connect_timeout = Duration::from_secs(60);
    let refused = tokio::time::timeout(PATIENCE, SocketClient::connect(opts)).await.expect("no hang");
    match refused {
        Err(ClientError::Certificate { problem: CertificateProblem::UnknownIssuer, .. }) => {}
        other => panic!("expected an unknown-issuer error, got {other:?}"),
    }
    // The same check on its own (what the CLI runs before it starts).
    let checked = TlsConfig::default().check_server(&url, PATIENCE).await;
    assert!(matches!(checked, Err(ClientError::Certificate { problem: CertificateProblem::UnknownIssuer, .. })));

    // The HTTP fallback refuses it too: nothing is delivered, and the
    // driver says why.
    let dir = tempfile::tempdir().unwrap();
    let mut config = driver_config(&url, dir.path(), "drv-untrusted", TlsConfig::default());
    config.http_fallback_after = Duration::ZERO;
    let driver = Driver::start(config).await.unwrap();
    driver.record(Fix::new(13.7, 100.5)).await.unwrap();
    let mut state = driver.state();
    let refused = wait_for(&mut state, "an http fallback refusal", |s| {
        s.last_error.as_deref().is_some_and(|e| e.starts_with("http fallback") && e.contains("certificate"))
    })
    .await;
    assert_eq!(refused.pending, 1, "kept in the outbox");
    assert_eq!(proxy.stats().handshakes.load(Ordering::Relaxed), 0, "no handshake completed");
    driver.shutdown().await;
}

#[tokio::test]
async fn a_certificate_for_another_name_is_refused() {
    let server = start_server().await;
    let ca = TestCa::new("wecare test CA");
    let proxy = tls_proxy(&ca, &["realtime.wecare.example"], upstream(&server)).await;
    let tls = TlsConfig::builder().ca_pem(ca.pem()).build().unwrap();
    for host in ["localhost", "127.0.0.1"] {
        let url = format!("https://{host}:{}", proxy.port());
        let mut opts = ConnectOptions::locations(&url, serde_json::json!({ "token": mint("officer", "o") }));
        opts.tls = tls.clone();
        let refused = tokio::time::timeout(PATIENCE, SocketClient::connect(opts)).await.expect("no hang");
        match refused {
            Err(ClientError::Certificate { problem: CertificateProblem::NameMismatch, .. }) => {}
            other => panic!("{host}: expected a name mismatch, got {other:?}"),
        }
    }
    assert_eq!(proxy.stats().handshakes.load(Ordering::Relaxed), 0);
}
