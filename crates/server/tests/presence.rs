//! Presence: online when a driver's first socket opens, offline only after
//! its last socket has been gone for the grace period — also across a
//! restart — with a `seq` like every stream event.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test]
async fn offline_comes_after_the_grace_period_and_not_during_a_reconnect() {
    let grace = Duration::from_millis(400);
    let server = TestServer::start_with(|c| c.presence_grace = grace).await;
    let (_w, mut wev) = server.watcher().await;
    wev.next_named("drivers:snapshot").await;
    let (first, _) = server.driver("amb-1").await;
    let online = wev.next_named("driver:presence").await;
    assert_eq!((online["driverId"].as_str(), online["online"].as_bool()), (Some("amb-1"), Some(true)));
    assert!(online["seq"].as_u64().is_some());
    // A reconnect that overlaps: no offline, no second online.
    let (second, _) = server.driver("amb-1").await;
    first.close().await;
    let marker = second.emit_with_ack("location:update", &fix("m", 1.0, 1.0), WAIT).await.unwrap();
    tokio::time::sleep(grace * 2).await; // the quiet period itself is what is checked
    let (_probe, _) = server.driver("amb-2").await;
    let mut names = Vec::new();
    loop {
        let (name, data) = wev.next().await;
        if name == "driver:presence" && data["driverId"] == "amb-2" {
            break;
        }
        names.push((name, data["seq"].clone()));
    }
    assert_eq!(names, vec![("location:updated".to_string(), marker["seq"].clone())], "no flap during the overlap");
    let gone = Instant::now();
    second.close().await;
    let offline = wev.next_named("driver:presence").await;
    assert_eq!((offline["driverId"].as_str(), offline["online"].as_bool()), (Some("amb-1"), Some(false)));
    assert!(gone.elapsed() >= grace - Duration::from_millis(50), "offline came before the grace period");
}

#[tokio::test]
async fn drivers_online_at_a_restart_go_offline_if_they_do_not_come_back() {
    let grace = Duration::from_millis(300);
    let server = TestServer::start_with(|c| c.presence_grace = grace).await;
    let (_driver, _) = server.driver("amb-1").await;
    let (_w, mut wev) = server.watcher().await;
    let snap = wev.next_named("drivers:snapshot").await;
    let last = loop {
        let (code, latest) = server.http("GET", "/api/realtime/latest", Some(&officer_token()), None).await;
        assert_eq!(code, 200);
        if latest["drivers"][0]["online"] == true {
            break latest["seq"].as_u64().unwrap();
        }
        wev.next_named("driver:presence").await;
    };
    let stream_id = snap["streamId"].clone();
    let dir = server.dir.clone();
    let tmp = server.stop().await;
    let server = TestServer::start_in(&dir, |c| c.presence_grace = grace).await;
    let (_w, mut wev) = server.connect(json!({"token": officer_token(), "lastSeq": last, "streamId": stream_id})).await;
    wev.next_named("sync:complete").await;
    let offline = wev.next_named("driver:presence").await;
    assert_eq!((offline["driverId"].as_str(), offline["online"].as_bool()), (Some("amb-1"), Some(false)));
    let (_, latest) = server.http("GET", "/api/realtime/latest", Some(&officer_token()), None).await;
    assert_eq!(latest["drivers"][0]["online"], false, "the snapshot agrees with the stream");
    drop(tmp);
}
