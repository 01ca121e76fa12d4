//! `wecare-rt migrate --to postgres://…` (issue 16): the embedded store of a
//! day of a 12-driver fleet at 1 Hz (1 000 000 events) moves to PostgreSQL —
//! interrupted once, finished by a second run, refused by a third. Then a
//! node on the database: a watcher whose `lastSeq` is from before the move
//! resumes with every later event once, in order, and no snapshot; a
//! driver's outbox resent across the move stores nothing twice; the
//! forwarding cursor is where it was.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wecare_client::testing::server::ServerProcess;
use wecare_client::{ConnectOptions, ServerEvent, SocketClient};
use wecare_server::pg_testing::PgServer;

const SECRET: &str = "migrate-secret";
const BIN: &str = env!("CARGO_BIN_EXE_wecare-rt");
const EVENTS: i64 = 1_000_000;
const DRIVERS: i64 = 12;
/// A watcher that was away for the last this many events.
const AWAY: i64 = 3_000;

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

fn token(claims: Value) -> String {
    wecare_server::dev_token(SECRET, &claims)
}

/// A store as the server writes it (its own schema, made by starting the
/// binary once), then filled with a day of fixes: event `seq` is the fix of
/// driver `seq % 12`, id `f-<seq>`, one second apart per driver.
async fn day_of_fixes(dir: &Path) -> String {
    let mut s = ServerProcess::start(BIN, SECRET, &[("DATA_DIR", dir.to_str().unwrap())]).await;
    s.terminate().await;
    let mut conn = rusqlite::Connection::open(dir.join("wecare-rt.sqlite3")).unwrap();
    let start = 1_765_000_000_000i64;
    let tx = conn.transaction().unwrap();
    {
        // The store's own columns (issue 17): drivers interned as 1..=12,
        // ids as text (form byte 0, then the id).
        for d in 0..DRIVERS {
            tx.execute(
                "INSERT INTO names (ix, driver_id) VALUES (?1, ?2)",
                rusqlite::params![d + 1, format!("amb-{d}")],
            )
            .unwrap();
        }
        let mut insert = tx
            .prepare(
                "INSERT INTO events (seq, kind, driver, msg_id, recorded_at, received_at, lat, lng, status, flags)
                 VALUES (?1, 1, ?2, ?3, ?4, ?4, ?5, 100.5, 0, 0)",
            )
            .unwrap();
        for seq in 1..=EVENTS {
            let at = start + (seq / DRIVERS) * 1000;
            let lat = 13.7 + (seq % 997) as f64 * 1e-5;
            let id = [&[0u8][..], format!("f-{seq}").as_bytes()].concat();
            insert.execute(rusqlite::params![seq, seq % DRIVERS + 1, id, at, lat]).unwrap();
        }
        for d in 0..DRIVERS {
            tx.execute(
                "INSERT INTO drivers (driver_id, lat, lng, recorded_at, effective_at, status, last_seen, online)
                 VALUES (?1, 13.7, 100.5, ?2, ?2, CASE WHEN ?3 = 3 THEN 'ON_TRIP' ELSE '' END, ?2, 0)",
                rusqlite::params![format!("amb-{d}"), start + EVENTS / DRIVERS * 1000, d],
            )
            .unwrap();
        }
        tx.execute("UPDATE meta SET value = ?1 WHERE key = 'head'", [EVENTS.to_string()]).unwrap();
        tx.execute("INSERT OR REPLACE INTO cursors (name, seq) VALUES ('forward', ?1)", [EVENTS - 42]).unwrap();
        tx.execute(
            "INSERT INTO revocations (kind, key, at_secs, until_secs) VALUES ('user', 'gone-user', 1, 4000000000)",
            [],
        )
        .unwrap();
    }
    tx.commit().unwrap();
    conn.query_row("SELECT value FROM meta WHERE key = 'stream_id'", [], |r| r.get(0)).unwrap()
}

fn migrate(dir: &Path, url: &str) -> Command {
    let mut c = Command::new(BIN);
    c.args(["migrate", "--to", url, "--data-dir"]).arg(dir).env_remove("DATABASE_URL");
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_of_events_moves_to_postgres_and_watchers_and_drivers_carry_on() {
    let pg = PgServer::shared();
    let db = pg.database("migrate");
    let dir = tempfile::tempdir().unwrap();
    let stream_id = day_of_fixes(dir.path()).await;

    // Interrupted: killed once it has copied some of the events.
    let mut first = migrate(dir.path(), &db.url).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let admin = PgClient::connect(&db.url).await;
    let t0 = Instant::now();
    loop {
        let copied = admin.count("SELECT events_through FROM migration").await;
        if copied > 0 {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "no progress");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    first.kill().unwrap();
    let _ = first.wait();
    let partial = admin.count("SELECT COUNT(*) FROM events").await;
    assert!(partial < EVENTS, "interrupted before the end: {partial}");

    // Run again: it goes on and finishes.
    let out = migrate(dir.path(), &db.url).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout} {}", String::from_utf8_lossy(&out.stderr));
    println!("{stdout}");
    assert!(stdout.contains("went on from an interrupted run"), "{stdout}");
    assert_eq!(admin.count("SELECT COUNT(*) FROM events").await, EVENTS);
    assert_eq!(admin.count("SELECT COUNT(DISTINCT seq) FROM events").await, EVENTS, "each once");
    assert_eq!(
        admin.count("SELECT seq FROM cursors WHERE name = 'forward'").await,
        EVENTS - 42,
        "the forwarding cursor"
    );

    // A third run refuses: the target holds the stream now.
    let again = migrate(dir.path(), &db.url).output().unwrap();
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("the migration is done"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    // A node on the database.
    let mut node = ServerProcess::start(BIN, SECRET, &[("DATABASE_URL", db.url.as_str())]).await;
    let officer = token(json!({"id": "o-1", "role": "officer", "exp": now_secs() + 3600}));
    let auth = json!({"token": officer, "lastSeq": EVENTS - AWAY, "streamId": stream_id});
    let (_watcher, mut events) =
        SocketClient::connect(ConnectOptions::locations(node.url.clone(), auth)).await.unwrap();
    let mut seqs = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ev = tokio::time::timeout_at(deadline.into(), events.recv()).await.expect("events in time").unwrap();
        match ev {
            ServerEvent::Event { name, data } if name == "location:updated" => seqs.push(data["seq"].as_i64().unwrap()),
            ServerEvent::Event { name, .. } if name == "sync:complete" => break,
            ServerEvent::Event { name, .. } if name == "drivers:snapshot" => {
                panic!("a snapshot: the stream was not recognised")
            }
            _ => {}
        }
    }
    assert_eq!(seqs, ((EVENTS - AWAY + 1)..=EVENTS).collect::<Vec<_>>(), "every later event once, in order");

    // A driver's outbox, resent across the move: nothing stored twice.
    let driver = token(json!({"id": "u-amb-5", "role": "driver", "driver_id": "amb-5", "exp": now_secs() + 3600}));
    let (client, _) =
        SocketClient::connect(ConnectOptions::locations(node.url.clone(), json!({"token": driver}))).await.unwrap();
    // Two of amb-5's own fixes (event `seq` is driver `seq % 12`'s), one
    // from the hour before the move and one from long before.
    let theirs = [EVENTS - (EVENTS % DRIVERS) - DRIVERS + 5, 5 + 12 * 1000];
    let resent: Vec<Value> =
        theirs.iter().map(|seq| json!({"id": format!("f-{seq}"), "lat": 13.7, "lng": 100.5})).collect();
    let ack =
        client.emit_with_ack("location:batch", &json!({"updates": resent}), Duration::from_secs(10)).await.unwrap();
    let results = ack["results"].as_array().unwrap();
    for (r, seq) in results.iter().zip(theirs) {
        assert_eq!((r["duplicate"].as_bool(), r["seq"].as_i64()), (Some(true), Some(seq)), "{ack}");
    }
    let new = client
        .emit_with_ack(
            "location:update",
            &json!({"id": "after-move", "lat": 13.7, "lng": 100.5}),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    // After the driver's presence (online) event: the stream goes on from its head.
    assert_eq!(new["seq"], EVENTS + 2, "{new}");
    node.kill();
}

/// A plain connection to look inside the target database.
struct PgClient(tokio_postgres::Client);

impl PgClient {
    async fn connect(url: &str) -> Self {
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        Self(client)
    }

    /// The first column of the first row as a number, 0 when there is none
    /// (or the table does not exist yet).
    async fn count(&self, sql: &str) -> i64 {
        match self.0.query_opt(sql, &[]).await {
            Ok(Some(row)) => row.get::<_, i64>(0),
            _ => 0,
        }
    }
}
