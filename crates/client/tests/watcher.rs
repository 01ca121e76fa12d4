//! The watcher against the real server binary: snapshot, ordered events,
//! resume across a server restart and a watcher restart, long-poll fallback.

#![allow(clippy::unwrap_used)] // test helpers, as the tests themselves

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{PATIENCE, counting_provider, mint, start_server, start_server_with, wait_for};
use tokio::sync::mpsc;
use wecare_client::{
    BackoffConfig, Driver, DriverConfig, Fix, Watcher, WatcherConfig, WatcherConnection, WatcherEvent,
};
use wecare_proto::payload::StreamEvent;

fn fast_backoff() -> BackoffConfig {
    BackoffConfig { base: Duration::from_millis(50), cap: Duration::from_millis(300) }
}

async fn start_driver(url: &str, dir: &std::path::Path, user: &str) -> Driver {
    let (provider, _) = counting_provider(mint("driver", user));
    let mut config = DriverConfig::new(url, dir.join(format!("{user}.sqlite3")), provider);
    config.backoff = fast_backoff();
    Driver::start(config).await.unwrap()
}

fn watcher_config(url: &str, cursor: &std::path::Path) -> WatcherConfig {
    let (provider, _) = counting_provider(mint("officer", "officer-w"));
    let mut config = WatcherConfig::new(url, provider);
    config.cursor_path = Some(cursor.to_owned());
    config.backoff = fast_backoff();
    config.long_poll_after = Duration::from_secs(60);
    config
}

async fn next(events: &mut mpsc::Receiver<WatcherEvent>) -> WatcherEvent {
    tokio::time::timeout(PATIENCE, events.recv()).await.expect("timed out waiting for an event").expect("watcher ended")
}

/// Receives until every id in `want` has been seen in a `location:updated`;
/// checks consecutive seqs on the way and returns the last seq.
async fn collect_until(
    events: &mut mpsc::Receiver<WatcherEvent>,
    mut last: u64,
    want: &HashSet<String>,
    seen: &mut Vec<String>,
) -> u64 {
    while !want.iter().all(|id| seen.contains(id)) {
        match next(events).await {
            WatcherEvent::Event(event) => {
                assert_eq!(event.seq().0, last + 1, "no gap, no duplicate");
                last = event.seq().0;
                if let StreamEvent::LocationUpdated(fix) = event {
                    seen.push(fix.id);
                }
            }
            WatcherEvent::SyncComplete { to_seq, .. } => assert_eq!(to_seq, last),
            other => panic!("unexpected {other:?}"),
        }
    }
    last
}

#[tokio::test]
async fn the_watcher_resumes_without_gap_or_duplicate_across_server_and_watcher_restarts() {
    let mut server = start_server().await;
    let dir = tempfile::tempdir().unwrap();
    let cursor = dir.path().join("cursor.json");
    let (watcher, mut events) = Watcher::start(watcher_config(&server.url, &cursor)).await.unwrap();
    let WatcherEvent::Snapshot { seq: mut last, .. } = next(&mut events).await else {
        panic!("a fresh watcher starts with a snapshot");
    };

    let driver = start_driver(&server.url, dir.path(), "drv-w").await;
    let mut want = HashSet::new();
    for _ in 0..5 {
        want.insert(driver.record(Fix::new(13.7, 100.5)).await.unwrap());
    }
    let mut seen = Vec::new();
    last = collect_until(&mut events, last, &want, &mut seen).await;

    server.kill();
    let mut conn = watcher.connection();
    wait_for(&mut conn, "watcher lost the socket", |c| *c != WatcherConnection::Connected).await;
    for _ in 0..5 {
        want.insert(driver.record(Fix::new(13.8, 100.5)).await.unwrap());
    }
    server.restart().await;
    last = collect_until(&mut events, last, &want, &mut seen).await;
    assert_eq!(seen.len(), want.len(), "each fix once");

    // A new watcher process on the same cursor file resumes, no snapshot.
    watcher.shutdown().await;
    drop(events);
    let (watcher, mut events) = Watcher::start(watcher_config(&server.url, &cursor)).await.unwrap();
    for _ in 0..2 {
        want.insert(driver.record(Fix::new(13.9, 100.5)).await.unwrap());
    }
    collect_until(&mut events, last, &want, &mut seen).await;
    assert_eq!(seen.len(), want.len(), "each fix once");
    watcher.shutdown().await;
    driver.shutdown().await;
}

#[tokio::test]
async fn the_watcher_long_polls_while_the_socket_is_refused() {
    let server = start_server_with(&[("ALLOWED_ORIGINS", "http://allowed.example")]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = watcher_config(&server.url, &dir.path().join("cursor.json"));
    config.socket_headers = vec![("Origin".to_owned(), "http://evil.example".to_owned())];
    config.long_poll_after = Duration::ZERO;
    config.long_poll_wait = Duration::from_secs(2);
    let (watcher, mut events) = Watcher::start(config).await.unwrap();
    let WatcherEvent::Snapshot { seq: last, .. } = next(&mut events).await else {
        panic!("the long poll starts from /api/realtime/latest");
    };
    assert_eq!(*watcher.connection().borrow(), WatcherConnection::LongPolling);
    let driver = start_driver(&server.url, dir.path(), "drv-lp").await;
    let mut want = HashSet::new();
    for _ in 0..3 {
        want.insert(driver.record(Fix::new(13.7, 100.5)).await.unwrap());
    }
    let mut seen = Vec::new();
    collect_until(&mut events, last, &want, &mut seen).await;
    assert_eq!(seen.len(), 3);
    watcher.shutdown().await;
    driver.shutdown().await;
}
