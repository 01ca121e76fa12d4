//! Upgrades (issue 16): a store written by an earlier release opens in this
//! one and is upgraded in place — same stream, same events at the same seqs —
//! and a store newer than this binary is refused with a clear message. The
//! fixtures were written by the releases themselves (fixtures/make-store.sh):
//! `store-v1` by 3510c8a (2026-12-01), `store-v5` by 8059d47 (v1.3, the
//! last to keep the watcher JSON), `store-v6` by this release (typed
//! columns; the next release tests its upgrade from it). Events stored as
//! JSON replay after the upgrade with everything they said, plus every
//! field this version sends (the v1.2 aliases that v1 never stored).
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use serde_json::json;
use wecare_client::testing::server::{ServerProcess, get, stored_events};

const SECRET: &str = "fixture-secret-0123456789abcdef0123";
const BIN: &str = env!("CARGO_BIN_EXE_wecare-rt");
/// This release's schema of the embedded store.
const SCHEMA_VERSION: i64 = 6;

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name).join("wecare-rt.sqlite3")
}

fn officer() -> String {
    let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 3600;
    wecare_server::dev_token(SECRET, &json!({"id": "o-1", "role": "officer", "exp": exp}))
}

fn user_version(db: &Path) -> i64 {
    rusqlite::Connection::open(db).unwrap().pragma_query_value(None, "user_version", |r| r.get(0)).unwrap()
}

async fn opens_and_keeps_its_stream(name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("wecare-rt.sqlite3");
    std::fs::copy(fixture(name), &db).unwrap();
    let stream_id: String = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row("SELECT value FROM meta WHERE key = 'stream_id'", [], |r| r.get(0))
        .unwrap();

    let bodies = old_bodies(&db);
    let mut server = ServerProcess::start(BIN, SECRET, &[("DATA_DIR", dir.path().to_str().unwrap())]).await;
    let events = stored_events(server.addr, &officer()).await;
    for (seq, old) in &bodies {
        let now = events.iter().find(|e| e["seq"] == *seq).unwrap();
        for (key, value) in old.as_object().unwrap() {
            assert_eq!(&now[key], value, "{name}: seq {seq} {key} replays as stored");
        }
    }
    let fixes: Vec<&serde_json::Value> = events.iter().filter(|e| e["type"] == "location:updated").collect();
    assert_eq!(fixes.len(), 9, "{name}");
    for fix in fixes {
        assert_eq!(fix["latitude"], fix["lat"], "{name}: {fix}");
        assert_eq!(fix["longitude"], fix["lng"], "{name}: {fix}");
        assert_eq!(fix["lastUpdated"], fix["recordedAt"], "{name}: {fix}");
    }
    let ids: Vec<&str> = events.iter().map(|e| e["id"].as_str().unwrap_or("(status)")).collect();
    assert_eq!(events.len(), 10, "{name}: the nine fixes and the status: {ids:?}");
    assert_eq!(events.iter().map(|e| e["seq"].as_u64().unwrap()).collect::<Vec<_>>(), (1..=10).collect::<Vec<_>>());
    assert!(ids.contains(&"amb-3-3"), "{ids:?}");
    let (status, latest) = get(server.addr, "/api/realtime/latest", &officer()).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(latest["streamId"], stream_id.as_str(), "{name}: the same stream");
    assert_eq!(latest["seq"], 10);
    let row = |id: &str| latest["drivers"].as_array().unwrap().iter().find(|d| d["driverId"] == id).unwrap().clone();
    assert_eq!(row("amb-2")["status"], "ON_TRIP", "{name}: a reported status is kept");
    assert!(row("amb-1").get("status").is_none(), "{name}: an invented AVAILABLE is forgotten: {}", row("amb-1"));
    assert_eq!(row("amb-3")["lat"], 13.73);
    server.terminate().await;
    assert_eq!(user_version(&db), SCHEMA_VERSION, "{name}: upgraded in place");
    let free: i64 =
        rusqlite::Connection::open(&db).unwrap().pragma_query_value(None, "freelist_count", |r| r.get(0)).unwrap();
    assert_eq!(free, 0, "{name}: the space of the old rows is given back");
}

#[tokio::test]
async fn a_store_written_by_the_release_of_2026_12_01_is_upgraded_in_place() {
    opens_and_keeps_its_stream("store-v1").await;
}

#[tokio::test]
async fn a_store_written_by_the_v1_3_release_moves_to_typed_columns() {
    opens_and_keeps_its_stream("store-v5").await;
}

#[tokio::test]
async fn a_store_written_by_this_release_opens_as_it_is() {
    opens_and_keeps_its_stream("store-v6").await;
}

/// The watcher JSON a store before v6 kept per event (none from v6 on).
fn old_bodies(db: &Path) -> Vec<(u64, serde_json::Value)> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let Ok(mut stmt) = conn.prepare("SELECT seq, body FROM events ORDER BY seq") else {
        return Vec::new();
    };
    stmt.query_map([], |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, String>(1)?)))
        .unwrap()
        .map(|r| {
            let (seq, body) = r.unwrap();
            (seq, serde_json::from_str(&body).unwrap())
        })
        .collect()
}

#[test]
fn a_store_newer_than_this_binary_is_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("wecare-rt.sqlite3");
    std::fs::copy(fixture("store-v6"), &db).unwrap();
    rusqlite::Connection::open(&db).unwrap().pragma_update(None, "user_version", 99).unwrap();
    let out = Command::new(BIN)
        .arg("serve")
        .env("JWT_SECRET", SECRET)
        .env("DATA_DIR", dir.path())
        .env("PORT", "0")
        .env("HOST", "127.0.0.1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "it started on a newer store: {stderr}");
    assert!(stderr.contains("schema version 99 is newer than this server"), "{stderr}");
    assert_eq!(user_version(&db), 99, "the newer store is left as it was");
}
