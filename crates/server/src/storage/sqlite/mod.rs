//! [`SqliteLog`]: the embedded [`EventLog`] — one SQLite file in WAL mode in
//! the data folder, a writer thread that owns the write connection (and the
//! in-memory latest state that must move in step with its commits), and a
//! reader thread with its own connection so long replays never delay acks.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use rusqlite::{Connection, OptionalExtension, params};
use wecare_proto::{DriverId, DriverStatus, Seq};

use super::{Appended, BoxFuture, EventLog, Page, Snapshot, StorageError};
use crate::clock::Millis;
use crate::domain::event::{EventKind, NewEvent, SharedEvent, StreamEvent};
use crate::domain::fleet::{DriverState, Fleet, Position};

mod worker;
use worker::Worker;

const SCHEMA_VERSION: i64 = 2;
const FILE_NAME: &str = "wecare-rt.sqlite3";
/// Rows deleted per retention statement, so pruning never holds the writer long.
const PRUNE_CHUNK: i64 = 5_000;

struct Writer {
    conn: Connection,
    fleet: Fleet,
    head: u64,
}

/// The embedded event log. See the module docs.
pub(crate) struct SqliteLog {
    stream_id: String,
    head: Arc<AtomicU64>,
    writable: Arc<AtomicBool>,
    writer: Worker<Writer>,
    reader: Worker<Connection>,
}

impl std::fmt::Debug for SqliteLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteLog")
            .field("stream_id", &self.stream_id)
            .field("head", &self.head.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

fn open_connection(path: &Path) -> Result<Connection, StorageError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // WAL: readers never block the writer. synchronous=FULL: a commit is on
    // disk before the ack, also against power loss, not only SIGKILL.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(conn)
}

impl SqliteLog {
    /// Opens (or creates) the store in `dir`, migrating it to this version.
    ///
    /// # Errors
    /// The folder cannot be created, the file cannot be opened, or it holds
    /// data of an unknown schema version.
    pub(crate) fn open(dir: &Path) -> Result<Self, StorageError> {
        std::fs::create_dir_all(dir).map_err(|source| StorageError::Io { path: dir.display().to_string(), source })?;
        let path = dir.join(FILE_NAME);
        let mut conn = open_connection(&path)?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(StorageError::Corrupt(format!("schema version {version} is newer than this server")));
        }
        // IMMEDIATE: take the write lock up front, so a busy store (a previous
        // instance still closing) is waited for instead of failing.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute_batch(include_str!("schema.sql"))?;
        if version == 1 {
            // v2: presence is part of the persisted latest state.
            tx.execute_batch("ALTER TABLE drivers ADD COLUMN online INTEGER NOT NULL DEFAULT 0")?;
        }
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        tx.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('stream_id', ?1), ('head', '0')",
            [new_stream_id()],
        )?;
        tx.commit()?;
        let stream_id: String = conn.query_row("SELECT value FROM meta WHERE key = 'stream_id'", [], |r| r.get(0))?;
        let head = read_head(&conn)?;
        let fleet = load_fleet(&conn)?;
        tracing::info!(path = %path.display(), %stream_id, head, drivers = fleet.iter().count(), "store opened");

        let reader = Worker::spawn("wecare-sqlite-read", open_connection(&path)?, |_| {})?;
        let writer = Worker::spawn("wecare-sqlite-write", Writer { conn, fleet, head }, |w| {
            // Leave a small, self-contained file behind on a clean stop.
            if let Err(e) = w.conn.pragma_update(None, "wal_checkpoint", "TRUNCATE") {
                tracing::warn!(error = %e, "checkpoint at close failed");
            }
        })?;
        Ok(Self {
            stream_id,
            head: Arc::new(AtomicU64::new(head)),
            writable: Arc::new(AtomicBool::new(true)),
            writer,
            reader,
        })
    }
}

fn new_stream_id() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the OS random source is available");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn read_head(conn: &Connection) -> Result<u64, StorageError> {
    let head: String = conn.query_row("SELECT value FROM meta WHERE key = 'head'", [], |r| r.get(0))?;
    head.parse().map_err(|_| StorageError::Corrupt(format!("head {head:?}")))
}

fn load_fleet(conn: &Connection) -> Result<Fleet, StorageError> {
    let mut fleet = Fleet::default();
    let mut stmt = conn.prepare(
        "SELECT driver_id, lat, lng, recorded_at, effective_at, status, email, last_seen, online FROM drivers",
    )?;
    let rows = stmt.query_map([], |r| {
        let lat: Option<f64> = r.get(1)?;
        let lng: Option<f64> = r.get(2)?;
        let recorded_at: Option<i64> = r.get(3)?;
        let effective_at: Option<i64> = r.get(4)?;
        let position = match (lat, lng, recorded_at, effective_at) {
            (Some(lat), Some(lng), Some(recorded_at), Some(effective_at)) => {
                Some(Position { lat, lng, recorded_at, effective_at })
            }
            _ => None,
        };
        let status: String = r.get(5)?;
        Ok((
            DriverId::new(r.get::<_, String>(0)?),
            DriverState {
                position,
                status: status.parse().unwrap_or(DriverStatus::Available),
                email: r.get(6)?,
                last_seen: r.get(7)?,
                online: r.get(8)?,
            },
        ))
    })?;
    for row in rows {
        let (id, state) = row?;
        fleet.insert(id, state);
    }
    Ok(fleet)
}

fn append_batch(w: &mut Writer, batch: &[NewEvent]) -> Result<(Vec<Appended>, u64), StorageError> {
    let tx = w.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut head = w.head;
    let mut out = Vec::with_capacity(batch.len());
    let mut touched: HashSet<&DriverId> = HashSet::new();
    {
        let mut find = tx.prepare_cached("SELECT seq FROM events WHERE driver_id = ?1 AND msg_id = ?2")?;
        let mut insert = tx.prepare_cached(
            "INSERT INTO events (seq, kind, driver_id, msg_id, recorded_at, received_at, body)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        for ev in batch {
            if ev.dedup {
                let found: Option<i64> =
                    find.query_row(params![ev.driver.as_str(), ev.id.as_str()], |r| r.get(0)).optional()?;
                if let Some(seq) = found {
                    out.push(Appended::Duplicate(Seq(seq as u64)));
                    continue;
                }
            }
            head += 1;
            let stored = w.fleet.apply(ev, Seq(head));
            insert.execute(params![
                head as i64,
                stored.kind as i64,
                ev.driver.as_str(),
                ev.id.as_str(),
                stored.recorded_at,
                ev.received,
                stored.json.get(),
            ])?;
            touched.insert(&ev.driver);
            out.push(Appended::Stored(Arc::new(stored)));
        }
        let mut upsert = tx.prepare_cached(
            "INSERT INTO drivers (driver_id, lat, lng, recorded_at, effective_at, status, email, last_seen, online)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT (driver_id) DO UPDATE SET lat = ?2, lng = ?3, recorded_at = ?4,
                 effective_at = ?5, status = ?6, email = ?7, last_seen = ?8, online = ?9",
        )?;
        for driver in touched {
            let Some(s) = w.fleet.get(driver) else {
                continue;
            };
            let p = s.position;
            upsert.execute(params![
                driver.as_str(),
                p.map(|p| p.lat),
                p.map(|p| p.lng),
                p.map(|p| p.recorded_at),
                p.map(|p| p.effective_at),
                s.status.as_str(),
                s.email,
                s.last_seen,
                s.online,
            ])?;
        }
        if head != w.head {
            tx.execute("UPDATE meta SET value = ?1 WHERE key = 'head'", [head.to_string()])?;
        }
    }
    tx.commit()?;
    Ok((out, head))
}

fn row_to_event(r: &rusqlite::Row<'_>) -> rusqlite::Result<StreamEvent> {
    let seq: i64 = r.get(0)?;
    let kind: i64 = r.get(1)?;
    let kind = EventKind::from_code(kind).unwrap_or(EventKind::Location);
    Ok(StreamEvent::from_json(Seq(seq as u64), kind, r.get(2)?, r.get(3)?))
}

impl EventLog for SqliteLog {
    fn stream_id(&self) -> &str {
        &self.stream_id
    }

    fn head(&self) -> Seq {
        Seq(self.head.load(Ordering::Acquire))
    }

    fn is_writable(&self) -> bool {
        self.writable.load(Ordering::Relaxed)
    }

    fn append(&self, batch: Vec<NewEvent>) -> BoxFuture<'_, Result<Vec<Appended>, StorageError>> {
        let head = Arc::clone(&self.head);
        let writable = Arc::clone(&self.writable);
        Box::pin(async move {
            self.writer
                .call(move |w| match append_batch(w, &batch) {
                    Ok((out, new_head)) => {
                        w.head = new_head;
                        head.store(new_head, Ordering::Release);
                        writable.store(true, Ordering::Relaxed);
                        Ok(out)
                    }
                    Err(e) => {
                        writable.store(false, Ordering::Relaxed);
                        // The in-memory state moved with the failed transaction: rebuild it.
                        match load_fleet(&w.conn) {
                            Ok(fleet) => w.fleet = fleet,
                            Err(e) => tracing::error!(error = %e, "reloading latest state failed"),
                        }
                        Err(e)
                    }
                })
                .await?
        })
    }

    fn read_after(&self, after: Seq, limit: usize) -> BoxFuture<'_, Result<Page, StorageError>> {
        let head = self.head();
        Box::pin(async move {
            let events = self
                .reader
                .call(move |conn| -> Result<Vec<SharedEvent>, StorageError> {
                    let mut stmt = conn.prepare_cached(
                        "SELECT seq, kind, recorded_at, body FROM events
                         WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                    )?;
                    let rows = stmt.query_map(params![after.0 as i64, limit as i64], row_to_event)?;
                    rows.map(|r| r.map(Arc::new).map_err(StorageError::from)).collect()
                })
                .await??;
            // seq has no holes, so a jump past `after + 1` means retention dropped events.
            let gap = match events.first() {
                Some(first) => first.seq > after.next(),
                None => head > after,
            };
            let head = events.last().map_or(head, |e| e.seq.max(head));
            Ok(Page { events, head, gap })
        })
    }

    fn snapshot(&self) -> BoxFuture<'_, Result<Snapshot, StorageError>> {
        Box::pin(async move {
            self.writer
                .call(|w| Snapshot {
                    seq: Seq(w.head),
                    drivers: w.fleet.iter().map(|(id, s)| (id.clone(), s.clone())).collect(),
                })
                .await
        })
    }

    fn track(
        &self,
        driver: DriverId,
        from: Millis,
        to: Millis,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<SharedEvent>, StorageError>> {
        Box::pin(async move {
            self.reader
                .call(move |conn| -> Result<Vec<SharedEvent>, StorageError> {
                    let mut stmt = conn.prepare_cached(
                        "SELECT seq, kind, recorded_at, body FROM events
                         WHERE driver_id = ?1 AND kind = ?2 AND recorded_at BETWEEN ?3 AND ?4
                         ORDER BY recorded_at, seq LIMIT ?5",
                    )?;
                    let rows = stmt.query_map(
                        params![driver.as_str(), EventKind::Location as i64, from, to, limit as i64],
                        row_to_event,
                    )?;
                    rows.map(|r| r.map(Arc::new).map_err(StorageError::from)).collect()
                })
                .await?
        })
    }

    fn prune(&self, before: Millis) -> BoxFuture<'_, Result<u64, StorageError>> {
        Box::pin(async move {
            let mut total = 0u64;
            loop {
                let n = self
                    .writer
                    .call(move |w| {
                        w.conn.execute(
                            "DELETE FROM events WHERE seq IN
                             (SELECT seq FROM events WHERE received_at < ?1 ORDER BY received_at LIMIT ?2)",
                            params![before, PRUNE_CHUNK],
                        )
                    })
                    .await??;
                total += n as u64;
                if (n as i64) < PRUNE_CHUNK {
                    return Ok(total);
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sqlite_log_passes_the_conformance_suite() {
        crate::storage::testing::run_all(|dir| {
            let dir = dir.to_path_buf();
            async move { SqliteLog::open(&dir).expect("opens") }
        })
        .await;
    }

    #[tokio::test]
    async fn latest_state_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let t = crate::clock::now_ms();
        let fix = crate::domain::validate::Fix {
            id: Some(wecare_proto::MessageId::parse("x").unwrap()),
            lat: 1.5,
            lng: 2.5,
            recorded_at: t,
            adjusted: false,
            status: Some(DriverStatus::OnTrip),
            accuracy: None,
            heading: None,
            speed: None,
        };
        {
            let log = SqliteLog::open(dir.path()).unwrap();
            log.append(vec![NewEvent::location(
                crate::domain::event::Sender { driver: DriverId::new("d"), email: Some("d@x".into()), name: None },
                fix,
                t,
            )])
            .await
            .unwrap();
        }
        let log = SqliteLog::open(dir.path()).unwrap();
        let snap = log.snapshot().await.unwrap();
        let (_, s) = &snap.drivers[0];
        assert_eq!((s.position.unwrap().lat, s.status, s.email.as_deref()), (1.5, DriverStatus::OnTrip, Some("d@x")));
    }
}
