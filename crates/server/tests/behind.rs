//! A watcher that stops reading falls behind the live fan-out; when it
//! reads again it gets every event once, in `seq` order — caught up from
//! storage and handed back to the fan-out, never a silent gap and never a
//! repeat — whether its buffer fills in the middle of a large delivery
//! round or at the start of one of many small ones.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use serde_json::{Value, json};
use wecare_client::{ConnectOptions, SocketClient};

/// A watcher whose client buffers one event at most: while the test does
/// not read, the socket is not read either, and the server's writes back up.
async fn stalled_watcher(server: &TestServer) -> (SocketClient, Events, u64) {
    let mut options = ConnectOptions::locations(server.url(), json!({ "token": officer_token() }));
    options.event_buffer = 1;
    let (watcher, rx) = tokio::time::timeout(WAIT, SocketClient::connect(options)).await.unwrap().unwrap();
    let mut events = Events(rx);
    let snapshot = events.next_named("drivers:snapshot").await;
    (watcher, events, snapshot["seq"].as_u64().unwrap())
}

/// A driver whose events are large: 5 KB names (tokens stay under the
/// 8 KiB limit), so a few thousand fill the kernel's socket buffers and
/// then the socket's send queue.
async fn big_driver(server: &TestServer) -> SocketClient {
    let name = "ก".repeat(1700);
    let driver_token = token(json!({
        "id": "u-big", "role": "driver", "driver_id": "amb-big", "name": name, "exp": now_secs() + 3600,
    }));
    server.connect(json!({ "token": driver_token })).await.0
}

/// Waits (bounded) until the server counted a watcher falling behind.
async fn wait_behind(server: &TestServer) {
    let deadline = tokio::time::Instant::now() + WAIT * 3;
    while watchers_behind(server).await == 0 {
        assert!(tokio::time::Instant::now() < deadline, "the watcher never fell behind: the test proves nothing");
        // Another component's counter: poll it.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

async fn watchers_behind(server: &TestServer) -> u64 {
    let (_, metrics) = server.http("GET", "/metrics", None, None).await;
    let text = metrics.as_str().unwrap_or_default().to_owned();
    text.lines()
        .find_map(|l| l.strip_prefix("wecare_watchers_behind_total "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// Reads until `fixes` location events arrived: every stream event after
/// `after`, once, in order. Returns the next expected `seq`.
async fn read_all(events: &mut Events, after: u64, fixes: usize) -> u64 {
    let mut next = after + 1;
    let mut seen = 0;
    while seen < fixes {
        let (name, data) = events.next().await;
        match name.as_str() {
            "location:updated" | "driver:presence" | "driver:status:updated" => {
                assert_eq!(data["seq"].as_u64(), Some(next), "{name} out of order or repeated");
                next += 1;
                if name == "location:updated" {
                    seen += 1;
                }
            }
            "drivers:snapshot" => panic!("a snapshot: the catch-up started over instead of reading on"),
            "__disconnected" | "__closed" => panic!("the socket ended after {seen} fixes: {data}"),
            _ => {}
        }
    }
    next
}

async fn live_again(driver: &SocketClient, events: &mut Events, next: u64) {
    let after = driver.emit_with_ack("location:update", &fix("after", 13.7, 100.5), WAIT).await.unwrap();
    assert_eq!(after["seq"].as_u64(), Some(next));
    assert_eq!(events.next_named("location:updated").await["seq"], after["seq"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_rounds_a_watcher_that_stops_reading_gets_every_event_once_in_order() {
    const BATCHES: usize = 3;
    const PER_BATCH: usize = 1000;
    let server = TestServer::start_with(|c| {
        c.rate_limit_per_sec = 100_000;
        // The release queue (2048 frames) takes as well, only more fixes.
        c.socket_queue = 512;
    })
    .await;
    let (_watcher, mut events, from) = stalled_watcher(&server).await;
    let driver = big_driver(&server).await;
    for b in 0..BATCHES {
        let updates: Vec<Value> = (0..PER_BATCH).map(|i| fix(&format!("b{b}-{i}"), 13.7, 100.5)).collect();
        let ack = driver.emit_with_ack("location:batch", &json!({ "updates": updates }), WAIT * 3).await.unwrap();
        assert_eq!(ack["status"], "ok", "{ack}");
    }
    wait_behind(&server).await;
    let next = read_all(&mut events, from, BATCHES * PER_BATCH).await;
    live_again(&driver, &mut events, next).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_rounds_a_watcher_that_stops_reading_gets_every_event_once_in_order() {
    let server = TestServer::start_with(|c| {
        c.rate_limit_per_sec = 100_000;
        // The release queue (2048 frames) takes as well, only more fixes.
        c.socket_queue = 512;
    })
    .await;
    let (_watcher, mut events, from) = stalled_watcher(&server).await;
    let driver = big_driver(&server).await;
    // One fix per delivery round — each acked, and the next sent after the
    // fan-out's gathering window (3 ms) — so the watcher's buffer is found
    // full at the start of a round; then a few more.
    let mut pace = tokio::time::interval(std::time::Duration::from_millis(5));
    let mut sent = 0;
    let mut extra = None;
    while extra != Some(0) {
        pace.tick().await;
        assert!(sent < 20_000, "the watcher never fell behind: the test proves nothing");
        let ack = driver.emit_with_ack("location:update", &fix(&format!("s{sent}"), 13.7, 100.5), WAIT).await.unwrap();
        assert_eq!(ack["status"], "ok", "{ack}");
        sent += 1;
        extra = match extra {
            Some(n) => Some(n - 1),
            None if sent % 100 == 0 && watchers_behind(&server).await >= 1 => Some(50),
            None => None,
        };
    }
    let next = read_all(&mut events, from, sent).await;
    live_again(&driver, &mut events, next).await;
}
