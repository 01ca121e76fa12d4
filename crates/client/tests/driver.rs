//! The driver against the real server binary: outbox, ordering, restarts,
//! SIGKILL, token provider and HTTP fallback.

#![allow(clippy::unwrap_used)] // test helpers, as the tests themselves

mod common;

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{PATIENCE, all_location_events, counting_provider, mint, start_server, start_server_with, wait_for};
use wecare_client::{BackoffConfig, Driver, DriverConfig, DriverConnection, Fix};

fn fast(mut config: DriverConfig) -> DriverConfig {
    config.backoff = BackoffConfig { base: Duration::from_millis(50), cap: Duration::from_millis(300) };
    config.ack_timeout = Duration::from_secs(5);
    config.connect_timeout = Duration::from_secs(5);
    config.http_fallback_after = Duration::from_secs(60);
    config
}

fn fix_at(i: i64, base_ms: i64) -> Fix {
    let mut fix = Fix::new(13.7 + i as f64 * 0.001, 100.5);
    fix.recorded_at_ms = base_ms + i * 1000;
    fix
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

#[tokio::test]
async fn fixes_recorded_while_the_server_is_down_arrive_newest_first_then_oldest_first() {
    let mut server = start_server().await;
    server.kill();
    let dir = tempfile::tempdir().unwrap();
    let (provider, calls) = counting_provider(mint("driver", "drv-order"));
    let driver =
        Driver::start(fast(DriverConfig::new(&server.url, dir.path().join("outbox.sqlite3"), provider))).await.unwrap();
    let base = now_ms() - 60_000;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(driver.record(fix_at(i, base)).await.unwrap());
    }
    let mut state = driver.state();
    wait_for(&mut state, "5 pending", |s| s.pending == 5).await;
    wait_for(
        &mut state,
        "a failed attempt",
        |s| matches!(s.connection, DriverConnection::Connecting { attempt } if attempt >= 2),
    )
    .await;

    server.restart().await;
    let done = wait_for(&mut state, "outbox drained", |s| s.pending == 0).await;
    assert_eq!(done.dead_letters, 0);
    assert!(done.last_ack.is_some());
    assert!(calls.load(Ordering::SeqCst) >= 2, "a token per attempt");

    let events = all_location_events(server.addr).await;
    let order: Vec<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    let expected: Vec<&str> = [&ids[4], &ids[0], &ids[1], &ids[2], &ids[3]].iter().map(|s| s.as_str()).collect();
    assert_eq!(order, expected, "newest first, then the backlog oldest-first");
    assert_eq!(events[0]["outdated"], false);
    assert!(events[1..].iter().all(|e| e["outdated"] == true), "{events:?}");
    driver.shutdown().await;
}

#[tokio::test]
async fn a_restarted_driver_delivers_what_the_previous_one_left_pending() {
    let mut server = start_server().await;
    server.kill();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.sqlite3");
    let token = mint("driver", "drv-restart");
    let mut ids = HashSet::new();
    {
        let (provider, _) = counting_provider(token.clone());
        let driver = Driver::start(fast(DriverConfig::new(&server.url, &path, provider))).await.unwrap();
        for i in 0..3 {
            ids.insert(driver.record(fix_at(i, now_ms() - 10_000)).await.unwrap());
        }
        // Dropped without shutdown, as a process that dies would.
    }
    server.restart().await;
    let (provider, _) = counting_provider(token);
    let driver = Driver::start(fast(DriverConfig::new(&server.url, &path, provider))).await.unwrap();
    let mut state = driver.state();
    assert_eq!(state.borrow().pending, 3, "the outbox survived the restart");
    wait_for(&mut state, "outbox drained", |s| s.pending == 0).await;
    let events = all_location_events(server.addr).await;
    let stored: Vec<String> = events.iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(stored.len(), 3);
    assert_eq!(stored.into_iter().collect::<HashSet<_>>(), ids);
    driver.shutdown().await;
}

#[tokio::test]
async fn a_sigkilled_server_loses_nothing_acked_and_stores_nothing_twice() {
    let mut server = start_server().await;
    let dir = tempfile::tempdir().unwrap();
    let (provider, calls) = counting_provider(mint("driver", "drv-kill"));
    let mut config = fast(DriverConfig::new(&server.url, dir.path().join("outbox.sqlite3"), provider));
    config.batch_size = 7;
    let driver = Driver::start(config).await.unwrap();
    let mut state = driver.state();
    wait_for(&mut state, "connected", |s| s.connection == DriverConnection::Connected).await;
    let calls_before = calls.load(Ordering::SeqCst);

    let mut ids = HashSet::new();
    for i in 0..60 {
        ids.insert(driver.record(fix_at(i, now_ms() - 100_000)).await.unwrap());
    }
    wait_for(&mut state, "some acks", |s| s.last_ack.is_some()).await;
    server.kill();
    for i in 60..90 {
        ids.insert(driver.record(fix_at(i, now_ms() - 100_000)).await.unwrap());
    }
    wait_for(&mut state, "disconnected", |s| s.connection != DriverConnection::Connected).await;
    server.restart().await;
    for i in 90..100 {
        ids.insert(driver.record(fix_at(i, now_ms() - 100_000)).await.unwrap());
    }
    wait_for(&mut state, "reconnected and drained", |s| s.pending == 0 && s.connection == DriverConnection::Connected)
        .await;
    assert!(calls.load(Ordering::SeqCst) > calls_before, "a fresh token for the reconnect");

    let events = all_location_events(server.addr).await;
    let stored: Vec<String> = events.iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect();
    let unique: HashSet<String> = stored.iter().cloned().collect();
    assert_eq!(unique.len(), stored.len(), "nothing stored twice");
    assert_eq!(unique, ids, "everything recorded is stored");
    assert_eq!(state.borrow().dead_letters, 0);
    driver.shutdown().await;
}

#[tokio::test]
async fn a_refused_websocket_upgrade_falls_back_to_http() {
    let server = start_server_with(&[("ALLOWED_ORIGINS", "http://allowed.example")]).await;
    let dir = tempfile::tempdir().unwrap();
    let (provider, calls) = counting_provider(mint("driver", "drv-http"));
    let mut config = fast(DriverConfig::new(&server.url, dir.path().join("outbox.sqlite3"), provider));
    config.socket_headers = vec![("Origin".to_owned(), "http://evil.example".to_owned())];
    let driver = Driver::start(config).await.unwrap();
    let mut ids = HashSet::new();
    for i in 0..4 {
        ids.insert(driver.record(fix_at(i, now_ms() - 10_000)).await.unwrap());
    }
    let mut state = driver.state();
    wait_for(&mut state, "http fallback", |s| s.connection == DriverConnection::HttpFallback).await;
    wait_for(&mut state, "outbox drained over http", |s| s.pending == 0).await;
    let events = all_location_events(server.addr).await;
    let stored: HashSet<String> = events.iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(stored, ids);
    assert!(calls.load(Ordering::SeqCst) >= 2);
    let _ = PATIENCE;
    driver.shutdown().await;
}

#[tokio::test]
async fn a_non_retryable_refusal_is_parked_as_a_dead_letter() {
    let server = start_server().await;
    let dir = tempfile::tempdir().unwrap();
    let (provider, _) = counting_provider(mint("driver", "drv-dead"));
    let driver =
        Driver::start(fast(DriverConfig::new(&server.url, dir.path().join("outbox.sqlite3"), provider))).await.unwrap();
    let bad = driver.record(Fix::new(123.0, 100.0)).await.unwrap();
    let good = driver.record(Fix::new(13.0, 100.0)).await.unwrap();
    let mut state = driver.state();
    let s = wait_for(&mut state, "all handled", |s| s.pending == 0 && s.dead_letters == 1).await;
    assert_eq!(s.last_ack.as_ref().map(|(id, _)| id.as_str()), Some(good.as_str()));
    let dead = driver.dead_letters().await.unwrap();
    assert_eq!((dead[0].id.as_str(), dead[0].code.as_str()), (bad.as_str(), "INVALID_COORDINATES"));
    driver.shutdown().await;
}
