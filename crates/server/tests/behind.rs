//! A watcher that stops reading falls behind the live fan-out; when it
//! reads again it gets every event once, in `seq` order — caught up from
//! storage and handed back to the fan-out, never a silent gap.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use serde_json::json;
use wecare_client::{ConnectOptions, SocketClient};

const BATCHES: usize = 3;
const PER_BATCH: usize = 1000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_that_stops_reading_gets_every_event_once_in_order_when_it_reads_again() {
    let server = TestServer::start_with(|c| c.rate_limit_per_sec = 100_000).await;
    // A client that buffers one event at most: while the test does not read,
    // the socket is not read either, and the server's writes back up.
    let mut options = ConnectOptions::locations(server.url(), json!({ "token": officer_token() }));
    options.event_buffer = 1;
    let (_watcher, rx) = tokio::time::timeout(WAIT, SocketClient::connect(options)).await.unwrap().unwrap();
    let mut events = Events(rx);
    let snapshot = events.next_named("drivers:snapshot").await;

    // 5 KB names (tokens stay under the 8 KiB limit) make every event large,
    // so a few thousand fill the kernel's socket buffers and then the
    // socket's send queue.
    let name = "ก".repeat(1700);
    let driver_token = token(json!({
        "id": "u-big", "role": "driver", "driver_id": "amb-big", "name": name, "exp": now_secs() + 3600,
    }));
    let (driver, _) = server.connect(json!({ "token": driver_token })).await;
    for b in 0..BATCHES {
        let updates: Vec<_> = (0..PER_BATCH).map(|i| fix(&format!("b{b}-{i}"), 13.7, 100.5)).collect();
        let ack = driver.emit_with_ack("location:batch", &json!({ "updates": updates }), WAIT * 3).await.unwrap();
        assert_eq!(ack["status"], "ok", "{ack}");
    }
    let deadline = tokio::time::Instant::now() + WAIT * 3;
    loop {
        let (_, metrics) = server.http("GET", "/metrics", None, None).await;
        let behind = metrics.as_str().unwrap_or_default().lines().any(|l| {
            l.strip_prefix("wecare_watchers_behind_total ").is_some_and(|n| n.trim().parse::<u64>().unwrap_or(0) >= 1)
        });
        if behind {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the watcher never fell behind: the test proves nothing");
        // Another component's counter: poll it.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // Now read: every stream event after the snapshot, once, in order.
    let mut next = snapshot["seq"].as_u64().unwrap() + 1;
    let mut fixes = 0;
    while fixes < BATCHES * PER_BATCH {
        let (name, data) = events.next().await;
        match name.as_str() {
            "location:updated" | "driver:presence" | "driver:status:updated" => {
                assert_eq!(data["seq"].as_u64(), Some(next), "{name} out of order or repeated");
                next += 1;
                if name == "location:updated" {
                    fixes += 1;
                }
            }
            "drivers:snapshot" => panic!("a snapshot: the catch-up started over instead of reading on"),
            "__disconnected" | "__closed" => panic!("the socket ended after {fixes} fixes: {data}"),
            _ => {}
        }
    }
    // And it is live again: a later fix arrives as the next seq.
    let after = driver.emit_with_ack("location:update", &fix("after", 13.7, 100.5), WAIT).await.unwrap();
    assert_eq!(events.next_named("location:updated").await["seq"], after["seq"]);
    assert_eq!(after["seq"].as_u64(), Some(next));
}
