//! The REST fallback: same validation, same dedup, long-poll for watchers.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use serde_json::json;

#[tokio::test]
async fn legacy_post_and_socket_share_dedup() {
    let server = TestServer::start().await;
    let (driver, _) = server.driver("amb-1").await;
    let body = fix("shared-id", 13.7, 100.5);
    let ack = driver.emit_with_ack("location:update", &body, WAIT).await.unwrap();
    let (code, resp) =
        server.http("POST", "/api/driver-locations", Some(&driver_token("amb-1")), Some(&body.to_string())).await;
    assert_eq!(code, 200);
    assert_eq!(resp["results"][0]["duplicate"], true);
    assert_eq!(resp["results"][0]["seq"], ack["seq"]);
}

#[tokio::test]
async fn rest_refusals_have_contract_codes() {
    let server = TestServer::start().await;
    let d = driver_token("amb-1");
    let (code, body) = server.http("POST", "/api/realtime/locations", None, Some("{}")).await;
    assert_eq!((code, body["code"].as_str()), (401, Some("AUTH_REQUIRED")));
    let (code, body) = server.http("POST", "/api/realtime/locations", Some(&d), Some("{not json")).await;
    assert_eq!((code, body["code"].as_str()), (400, Some("INVALID_PAYLOAD")));
    let (code, body) = server.http("POST", "/api/realtime/locations", Some(&officer_token()), Some("{}")).await;
    assert_eq!((code, body["code"].as_str()), (403, Some("FORBIDDEN")));
    let (code, body) = server.http("GET", "/api/realtime/latest", Some(&d), None).await;
    assert_eq!((code, body["code"].as_str()), (403, Some("FORBIDDEN")));
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(1024 * 1024 + 10));
    let (code, _) = server.http("POST", "/api/realtime/locations", Some(&d), Some(&big)).await;
    assert_eq!(code, 413);
    let (code, body) =
        server.http("POST", "/api/realtime/locations", Some(&d), Some(r#"{"lat":"13.7","lng":100}"#)).await;
    // One refused update: the status of its code, and its result exactly as
    // the socket acks it (contract §6, v1.2).
    assert_eq!((code, body["code"].as_str()), (400, Some("INVALID_PAYLOAD")));
    assert_eq!(body["results"][0]["code"], "INVALID_PAYLOAD");
    assert_eq!(body["results"][0]["retryable"], false);
}

#[tokio::test]
async fn long_poll_returns_as_soon_as_an_event_is_committed() {
    let server = TestServer::start().await;
    let addr = server.addr;
    let poll = tokio::spawn(async move {
        http(addr, "GET", "/api/realtime/events?since=0&waitMs=20000", Some(&officer_token()), None).await
    });
    let (code, resp) = server
        .http("POST", "/api/realtime/status", Some(&driver_token("amb-1")), Some(r#"{"status":"on_trip"}"#))
        .await;
    assert_eq!(code, 200, "{resp}");
    let (code, page) = tokio::time::timeout(WAIT, poll).await.expect("long-poll woke up").unwrap();
    assert_eq!(code, 200);
    assert_eq!(page["events"][0]["type"], "driver:status:updated");
    assert_eq!(page["events"][0]["status"], "ON_TRIP");
    assert_eq!(page["lastSeq"], page["events"][0]["seq"]);
}

#[tokio::test]
async fn track_is_ordered_by_recorded_time() {
    let server = TestServer::start().await;
    let d = driver_token("amb-1");
    let t = now_ms();
    let updates = json!({"updates": [
        {"id": "late", "lat": 1, "lng": 1, "recordedAt": t - 1000},
        {"id": "early", "lat": 2, "lng": 2, "recordedAt": t - 3000},
        {"id": "mid", "lat": 3, "lng": 3, "recordedAt": t - 2000},
    ]});
    let (code, _) = server.http("POST", "/api/realtime/locations", Some(&d), Some(&updates.to_string())).await;
    assert_eq!(code, 200);
    let (code, track) = server.http("GET", "/api/realtime/drivers/amb-1/track", Some(&officer_token()), None).await;
    assert_eq!(code, 200);
    let ids: Vec<&str> = track["fixes"].as_array().unwrap().iter().map(|f| f["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["early", "mid", "late"]);
    let outdated: Vec<bool> =
        track["fixes"].as_array().unwrap().iter().map(|f| f["outdated"].as_bool().unwrap()).collect();
    assert_eq!(outdated, [true, true, false], "only the newest moved the marker");
}

#[tokio::test]
async fn notify_relays_to_rooms_only_with_the_service_secret() {
    let server = TestServer::start_with(|c| c.notify_secret = Some("svc".into())).await;
    let (_o, mut officer) = server.watcher().await;
    officer.next_named("drivers:snapshot").await;
    let body =
        json!({"rooms": ["role:officer"], "event": "notification:new", "data": {"title": "ride 42"}}).to_string();
    let (code, _) = server.http("POST", "/api/realtime/notify", Some("wrong"), Some(&body)).await;
    assert_eq!(code, 401);
    let bad_event = json!({"rooms": ["role:officer"], "event": "location:updated", "data": {}}).to_string();
    let (code, _) = server.http("POST", "/api/realtime/notify", Some("svc"), Some(&bad_event)).await;
    assert_eq!(code, 400);
    let (code, resp) = server.http("POST", "/api/realtime/notify", Some("svc"), Some(&body)).await;
    assert_eq!((code, resp["delivered"].as_u64()), (200, Some(1)));
    assert_eq!(officer.next_named("notification:new").await["title"], "ride 42");
}
