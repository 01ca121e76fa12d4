//! A store damaged on purpose (issue 10): a row whose id does not unpack,
//! an unknown event kind, an unknown status. Each is reported (an error
//! log with its seq, `wecare_storage_damaged_rows_total`) and skipped;
//! replay and the REST pages neither crash nor invent an event, a kind or
//! a status the driver never sent.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use serde_json::{Value, json};

fn damage(dir: &std::path::Path) {
    let db = rusqlite::Connection::open(dir.join("wecare-rt.sqlite3")).unwrap();
    db.execute_batch(
        "UPDATE events SET msg_id = x'09' WHERE seq = 2;
         UPDATE events SET kind = 9 WHERE seq = 3;
         UPDATE drivers SET status = 'NAPPING' WHERE driver_id = 'amb-2';",
    )
    .unwrap();
}

fn seqs(events: &Value) -> Vec<u64> {
    events.as_array().unwrap().iter().map(|e| e["seq"].as_u64().unwrap()).collect()
}

#[tokio::test]
async fn damaged_rows_are_reported_and_skipped_never_invented() {
    let server = TestServer::start().await;
    let (d1, _) = server.driver("amb-1").await;
    let (d2, _) = server.driver("amb-2").await;
    // seq 1, 2: amb-1's presence and fix; then amb-2's; then more fixes.
    let mut acked = Vec::new();
    for (d, id, lat) in [(&d1, "a", 13.1), (&d1, "b", 13.2), (&d2, "c", 14.1), (&d1, "d", 13.3)] {
        let ack = d.emit_with_ack("location:update", &fix(id, lat, 100.0), WAIT).await.unwrap();
        acked.push(ack["seq"].as_u64().unwrap());
    }
    let (_, page) = server.http("GET", "/api/realtime/events?since=0", Some(&officer_token()), None).await;
    let all = seqs(&page["events"]);
    assert!(all.contains(&2) && all.contains(&3), "{all:?}");
    drop((d1, d2));
    let dir = server.dir.clone();
    let tmp = server.stop().await;
    damage(&dir);

    let server = TestServer::start_in(&dir, |_| {}).await;
    let officer = officer_token();
    let (code, page) = server.http("GET", "/api/realtime/events?since=0", Some(&officer), None).await;
    assert_eq!(code, 200, "{page}");
    let read = seqs(&page["events"]);
    let expected: Vec<u64> = all.iter().copied().filter(|s| *s != 2 && *s != 3).collect();
    assert_eq!(read, expected, "the damaged rows are skipped, nothing else");
    assert_eq!(page["gap"], false, "damage is not retention");
    // No event of an unknown kind was read back as a location.
    assert!(page["events"].as_array().unwrap().iter().all(|e| e["type"] != "location:updated" || e["lat"].is_number()));

    // The snapshot does not invent AVAILABLE for the damaged status.
    let (code, latest) = server.http("GET", "/api/realtime/latest", Some(&officer), None).await;
    assert_eq!(code, 200);
    let drivers: Vec<&str> =
        latest["drivers"].as_array().unwrap().iter().map(|d| d["driverId"].as_str().unwrap()).collect();
    assert_eq!(drivers, vec!["amb-1"], "the driver whose row is damaged is left out, not shown AVAILABLE");

    // A resuming watcher replays the good rows, then goes live.
    let (_w, mut wev) = server.connect(json!({ "token": officer, "lastSeq": 0 })).await;
    let replayed: Vec<u64> =
        wev.stream_events(expected.len()).await.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(replayed, expected);
    wev.next_named("sync:complete").await;
    let (d1, _) = server.driver("amb-1").await;
    let ack = d1.emit_with_ack("location:update", &fix("e", 13.4, 100.0), WAIT).await.unwrap();
    let live = wev.next_named("location:updated").await;
    assert_eq!(live["seq"], ack["seq"], "still serving");

    let (_, metrics) = server.http("GET", "/metrics", None, None).await;
    let text = metrics.as_str().unwrap();
    let damaged: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("wecare_storage_damaged_rows_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap();
    assert!(damaged >= 3, "each damaged row counted: {damaged}");
    drop(tmp);
}
