//! A driver's fix is acked only once stored, reaches watchers once, and
//! never reaches other drivers.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use serde_json::json;

#[tokio::test]
async fn acked_update_reaches_watcher_with_its_seq() {
    let server = TestServer::start().await;
    let (_w, mut wev) = server.watcher().await;
    let snap = wev.next_named("drivers:snapshot").await;
    assert_eq!(snap["seq"], 0);
    let (driver, _) = server.driver("amb-1").await;
    let ack = driver.emit_with_ack("location:update", &fix("m1", 13.75, 100.5), WAIT).await.unwrap();
    assert_eq!(ack["status"], "ok");
    let ev = wev.next_named("location:updated").await;
    assert_eq!(ev["seq"], ack["seq"]);
    assert_eq!(ev["driverId"], "amb-1");
    assert_eq!(ev["driverEmail"], "amb-1@wecare.test");
    assert!(ev.get("status").is_none(), "no status until the driver reports one (v1.3): {ev}");
    assert_eq!(ev["outdated"], false);
    // The acked update is readable from storage at once.
    let (code, page) = server.http("GET", "/api/realtime/events?since=0", Some(&officer_token()), None).await;
    assert_eq!(code, 200);
    assert!(page["events"].as_array().unwrap().iter().any(|e| e["id"] == "m1"));
}

#[tokio::test]
async fn duplicate_id_is_acked_with_original_seq_and_not_rebroadcast() {
    let server = TestServer::start().await;
    let (_w, mut wev) = server.watcher().await;
    wev.next_named("drivers:snapshot").await;
    let (driver, _) = server.driver("amb-1").await;
    let first = driver.emit_with_ack("location:update", &fix("same", 1.0, 2.0), WAIT).await.unwrap();
    let again = driver.emit_with_ack("location:update", &fix("same", 1.0, 2.0), WAIT).await.unwrap();
    assert_eq!((first["duplicate"].clone(), again["duplicate"].clone()), (json!(false), json!(true)));
    assert_eq!(first["seq"], again["seq"]);
    let marker = driver.emit_with_ack("location:update", &fix("after", 1.0, 2.0), WAIT).await.unwrap();
    // The next location event after the first is the marker: the duplicate was not broadcast.
    let e1 = wev.next_named("location:updated").await;
    let e2 = wev.next_named("location:updated").await;
    assert_eq!((e1["id"].as_str(), e2["id"].as_str()), (Some("same"), Some("after")));
    assert_eq!(e2["seq"], marker["seq"]);
}

#[tokio::test]
async fn drivers_never_receive_other_drivers_positions() {
    let server = TestServer::start().await;
    let (_w, mut wev) = server.watcher().await;
    let (a, mut a_events) = server.driver("amb-a").await;
    let (b, _) = server.driver("amb-b").await;
    b.emit_with_ack("location:update", &fix("b1", 1.0, 1.0), WAIT).await.unwrap();
    assert_eq!(wev.next_named("location:updated").await["id"], "b1", "the fix was broadcast");
    // a's socket delivers in order: anything sent to a before this ack is already queued.
    a.emit_with_ack("location:update", &fix("a1", 1.0, 1.0), WAIT).await.unwrap();
    while let Ok(ev) = a_events.0.try_recv() {
        if let wecare_client::ServerEvent::Event { name, .. } = ev {
            assert!(!name.starts_with("location") && !name.starts_with("driver"), "a driver received {name}");
        }
    }
}

#[tokio::test]
async fn spoofed_driver_id_is_refused_and_nothing_is_stored() {
    let server = TestServer::start().await;
    let (driver, _) = server.driver("amb-1").await;
    let mut body = fix("x", 1.0, 1.0);
    body["driverId"] = json!("amb-2");
    let ack = driver.emit_with_ack("location:update", &body, WAIT).await.unwrap();
    assert_eq!(ack["code"], "FORBIDDEN");
    assert_eq!(ack["retryable"], false);
    let (_, page) = server.http("GET", "/api/realtime/events?since=0", Some(&officer_token()), None).await;
    assert!(page["events"].as_array().unwrap().iter().all(|e| e["type"] != "location:updated"));
}

#[tokio::test]
async fn batch_results_are_per_item_in_order() {
    let server = TestServer::start().await;
    let (driver, _) = server.driver("amb-1").await;
    let batch = json!({ "updates": [fix("b1", 1.0, 1.0), { "id": "b2", "lat": 95, "lng": 1 }, fix("b3", 2.0, 2.0)] });
    let ack = driver.emit_with_ack("location:batch", &batch, WAIT).await.unwrap();
    let r = ack["results"].as_array().unwrap();
    assert_eq!(r.len(), 3);
    assert_eq!(
        (r[0]["status"].as_str(), r[1]["code"].as_str(), r[2]["status"].as_str()),
        (Some("ok"), Some("INVALID_COORDINATES"), Some("ok"))
    );
    assert!(r[2]["seq"].as_u64() > r[0]["seq"].as_u64());
}

#[tokio::test]
async fn watcher_sending_driver_events_is_forbidden() {
    let server = TestServer::start().await;
    let (w, _) = server.watcher().await;
    let ack = w.emit_with_ack("location:update", &fix("x", 1.0, 1.0), WAIT).await.unwrap();
    assert_eq!(ack["code"], "FORBIDDEN");
    let ack = w.emit_with_ack("driver:status", &json!({"status": "BUSY"}), WAIT).await.unwrap();
    assert_eq!(ack["code"], "FORBIDDEN");
}
