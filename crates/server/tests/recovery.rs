//! Resume: a watcher that was away gets exactly what it missed, in order,
//! then `sync:complete`, then live events — also across a restart.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use serde_json::{Value, json};

fn seqs(events: &[Value]) -> Vec<u64> {
    events.iter().map(|e| e["seq"].as_u64().unwrap()).collect()
}

#[tokio::test]
async fn resume_after_restart_replays_missed_events_without_gap_or_duplicate() {
    let server = TestServer::start_with(|c| c.rate_limit_per_sec = 10_000).await;
    let (driver, _) = server.driver("amb-1").await;
    let mut last = 0;
    for i in 0..5 {
        last = driver.emit_with_ack("location:update", &fix(&format!("a{i}"), 1.0, 1.0), WAIT).await.unwrap()["seq"]
            .as_u64()
            .unwrap();
    }
    let (_, page) = server.http("GET", "/api/realtime/latest", Some(&officer_token()), None).await;
    let stream_id = page["streamId"].clone();
    let seen = last - 2; // the watcher processed up to here before it went away
    driver.close().await;
    let dir = server.dir.clone();
    let tmp = server.stop().await;

    let server = TestServer::start_in(&dir, |_| {}).await;
    let (driver, _) = server.driver("amb-1").await;
    let after_restart = driver.emit_with_ack("location:update", &fix("b0", 1.0, 1.0), WAIT).await.unwrap();
    assert!(after_restart["seq"].as_u64().unwrap() > last, "seq continues across restarts");

    let (_w, mut wev) = server.connect(json!({"token": officer_token(), "lastSeq": seen, "streamId": stream_id})).await;
    let head = after_restart["seq"].as_u64().unwrap();
    let replayed = wev.stream_events((head - seen) as usize).await;
    assert_eq!(seqs(&replayed), ((seen + 1)..=head).collect::<Vec<_>>());
    let done = wev.next_named("sync:complete").await;
    assert_eq!(done["fromSeq"].as_u64(), Some(seen));
    assert_eq!(done["toSeq"].as_u64(), Some(head));
    assert_eq!(done["replayed"].as_u64(), Some(head - seen));
    let live = driver.emit_with_ack("location:update", &fix("b1", 1.0, 1.0), WAIT).await.unwrap();
    let next = wev.stream_events(1).await;
    assert_eq!(next[0]["seq"], live["seq"], "live continues right after the replay");
    drop(tmp);
}

#[tokio::test]
async fn foreign_stream_id_or_position_beyond_head_gets_a_snapshot() {
    let server = TestServer::start().await;
    let (driver, _) = server.driver("amb-1").await;
    driver.emit_with_ack("location:update", &fix("a", 13.0, 100.0), WAIT).await.unwrap();
    // The driver's online presence event is committed on its own; wait for it.
    tokio::time::timeout(WAIT, async {
        while server.http("GET", "/api/realtime/latest", Some(&officer_token()), None).await.1["drivers"][0]["online"]
            != true
        {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("driver shown online");
    for auth in [
        json!({"token": officer_token(), "lastSeq": 0, "streamId": "another-stream"}),
        json!({"token": officer_token(), "lastSeq": 999}),
        json!({"token": officer_token()}),
    ] {
        let (_w, mut wev) = server.connect(auth).await;
        let (name, snap) = wev.next().await;
        assert_eq!(name, "drivers:snapshot");
        assert_eq!(snap["drivers"][0]["driverId"], "amb-1");
        assert_eq!(snap["drivers"][0]["online"], true);
        assert_eq!(snap["drivers"][0]["lat"], 13.0);
    }
}

/// A watcher whose client stops reading fills its send buffer. It must
/// not silently miss events: it is caught up from storage and then sees
/// every event once, in order.
#[tokio::test]
async fn watcher_that_falls_behind_misses_nothing() {
    let server = TestServer::start_with(|c| c.rate_limit_per_sec = 1_000_000).await;
    let mut opts = wecare_client::ConnectOptions::locations(server.url(), json!({"token": officer_token()}));
    opts.event_buffer = 1;
    let (_w, rx) = wecare_client::SocketClient::connect(opts).await.unwrap();
    let mut wev = Events(rx);
    let (driver, _) = server.driver("amb-1").await;
    let total = 30_000usize;
    let pad = "x".repeat(200);
    for b in 0..(total / 1000) {
        let updates: Vec<Value> = (0..1000)
            .map(|i| json!({"id": format!("f{b}-{i}"), "lat": 1.0, "lng": 1.0, "pad": pad, "accuracy": 5}))
            .collect();
        let ack = driver.emit_with_ack("location:batch", &json!({ "updates": updates }), WAIT).await.unwrap();
        assert!(ack["results"].as_array().unwrap().iter().all(|r| r["status"] == "ok"));
    }
    let events = wev.stream_events(total + 1).await; // + the driver's presence event
    let got = seqs(&events);
    assert_eq!(got, (1..=(total as u64 + 1)).collect::<Vec<_>>(), "every event once, in order");
    let (_, metrics) = server.http("GET", "/metrics", None, None).await;
    let text = metrics.as_str().unwrap_or_default().to_string();
    let behind: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("wecare_watchers_behind_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(behind >= 1, "the watcher really fell behind (else this test proves nothing): {behind}");
}
