//! [`SqliteLog`]: the embedded [`EventLog`] — one SQLite file in WAL mode in
//! the data folder, a writer thread that owns the write connection (and the
//! in-memory latest state that must move in step with its commits), and a
//! reader thread with its own connection so long replays never delay acks.
//! One node per data folder: the presence guard reads this node's sockets.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use rusqlite::{Connection, OptionalExtension, params};
use wecare_proto::{DriverId, Seq};

use super::packed_id;
use super::row::{self, DamageCounter, DriverRow, EventColumns};
use super::{Appended, BoxFuture, EventLog, Page, Snapshot, SocketsHeld, StorageError, revocation_key, revoked_from};
use crate::clock::{Millis, now_ms};
use crate::domain::event::{EventRecord, NewEvent, SharedEvent, encode};
use crate::domain::fleet::{self, Fleet};
use crate::domain::revocation::Revocation;

pub(crate) mod backup;
mod checkpoint;
mod rows;
mod upgrade;
mod worker;
use checkpoint::{Checkpointer, Policy};
use worker::Worker;

pub(crate) const FILE_NAME: &str = "wecare-rt.sqlite3";
/// Rows deleted per retention statement, so pruning never holds the writer long.
const PRUNE_CHUNK: i64 = 5_000;
/// The writer's page cache, KiB: the stream's index pages that commits touch
/// stay in memory instead of being read again (SQLite's default is 2 MiB).
const WRITER_CACHE_KIB: i64 = 32 * 1024;

impl From<rusqlite::Error> for StorageError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Database(Box::new(e))
    }
}

struct Writer {
    conn: Connection,
    interned: rows::Interned,
    fleet: Fleet,
    head: u64,
    sockets: Arc<dyn SocketsHeld>,
    checkpoint: Checkpointer,
}

/// The embedded event log. See the module docs.
pub(crate) struct SqliteLog {
    stream_id: String,
    head: Arc<AtomicU64>,
    /// The highest `seq` retention removed (0: none).
    pruned_through: Arc<AtomicU64>,
    writable: Arc<AtomicBool>,
    damage: Arc<DamageCounter>,
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
    /// `sockets` answers the offline guard: [`super::NoSockets`] when no
    /// server is in front.
    ///
    /// # Errors
    /// The folder cannot be created, the file cannot be opened, or it holds
    /// data of an unknown schema version.
    pub(crate) fn open(dir: &Path, sockets: Arc<dyn SocketsHeld>) -> Result<Self, StorageError> {
        Self::open_with(dir, sockets, Policy::DEFAULT)
    }

    fn open_with(dir: &Path, sockets: Arc<dyn SocketsHeld>, policy: Policy) -> Result<Self, StorageError> {
        std::fs::create_dir_all(dir).map_err(|source| StorageError::Io { path: dir.display().to_string(), source })?;
        let path = dir.join(FILE_NAME);
        let mut conn = open_connection(&path)?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        // IMMEDIATE: take the write lock up front, so a busy store (a previous
        // instance still closing) is waited for instead of failing.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let rewrote = upgrade::run(&tx, version)?;
        tx.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('stream_id', ?1), ('head', '0')",
            [crate::random::hex_id(16)],
        )?;
        // v3: where retention stopped; a store from before knows it from its oldest row.
        tx.execute(
            "INSERT OR IGNORE INTO meta (key, value) SELECT 'pruned_through',
                 CAST(COALESCE(MIN(seq) - 1, (SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'head')) AS TEXT)
             FROM events",
            [],
        )?;
        tx.commit()?;
        if rewrote {
            upgrade::reclaim(&conn)?;
        }
        let stream_id: String = conn.query_row("SELECT value FROM meta WHERE key = 'stream_id'", [], |r| r.get(0))?;
        let head = read_head(&conn)?;
        let pruned_through = read_meta_u64(&conn, "pruned_through")?.unwrap_or(0);
        let damage = Arc::new(DamageCounter::default());
        let fleet = load_fleet(&conn, &damage)?;
        tracing::info!(path = %path.display(), %stream_id, head, drivers = fleet.iter().count(), "store opened");

        let reader = Worker::spawn("wecare-sqlite-read", open_connection(&path)?, |_| {})?;
        // Checkpoints are the checkpoint thread's (checkpoint.rs), never a commit's.
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        conn.pragma_update(None, "journal_size_limit", policy.file_limit_bytes)?;
        conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
        let checkpoint = Checkpointer::spawn(&path, policy, open_connection)?;
        let writer = Worker::spawn(
            "wecare-sqlite-write",
            Writer { conn, interned: rows::Interned::default(), fleet, head, sockets, checkpoint },
            |w| {
                // Leave a small, self-contained file behind on a clean stop.
                if let Err(e) = w.conn.pragma_update(None, "wal_checkpoint", "TRUNCATE") {
                    tracing::warn!(error = %e, "checkpoint at close failed");
                }
            },
        )?;
        Ok(Self {
            stream_id,
            head: Arc::new(AtomicU64::new(head)),
            pruned_through: Arc::new(AtomicU64::new(pruned_through)),
            writable: Arc::new(AtomicBool::new(true)),
            damage,
            writer,
            reader,
        })
    }
}

fn read_head(conn: &Connection) -> Result<u64, StorageError> {
    read_meta_u64(conn, "head")?.ok_or_else(|| StorageError::Corrupt("no head".into()))
}

fn read_meta_u64(conn: &Connection, key: &str) -> Result<Option<u64>, StorageError> {
    let v: Option<String> = conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0)).optional()?;
    v.map(|v| v.parse().map_err(|_| StorageError::Corrupt(format!("{key} {v:?}")))).transpose()
}

fn load_fleet(conn: &Connection, damage: &DamageCounter) -> Result<Fleet, StorageError> {
    let mut fleet = Fleet::default();
    let mut stmt = conn.prepare(
        "SELECT driver_id, lat, lng, recorded_at, effective_at, status, email, last_seen, online FROM drivers",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(DriverRow {
            driver_id: r.get(0)?,
            lat: r.get(1)?,
            lng: r.get(2)?,
            recorded_at: r.get(3)?,
            effective_at: r.get(4)?,
            status: r.get(5)?,
            email: r.get(6)?,
            last_seen: r.get(7)?,
            online: r.get(8)?,
        })
    })?;
    for row in rows {
        let row = row?;
        let driver = row.driver_id.clone();
        match row.into_state() {
            Ok((id, state)) => fleet.insert(id, state),
            Err(d) => damage.driver(&driver, &d),
        }
    }
    Ok(fleet)
}

/// What the writer made of one event. A stored event's wire JSON is
/// rendered by the caller, off the writer thread: the writer is the one
/// serial stage of the node, and under load every commit waits for it.
enum Written {
    Stored(EventRecord),
    Not(Appended),
}

impl Written {
    fn rendered(self) -> Appended {
        match self {
            Self::Stored(record) => Appended::Stored(Arc::new(encode(&record))),
            Self::Not(outcome) => outcome,
        }
    }
}

fn append_batch(w: &mut Writer, batch: &[NewEvent]) -> Result<(Vec<Written>, u64), StorageError> {
    if w.checkpoint.restart_due() {
        // Between two transactions nothing is written: the copy finishes,
        // and the transaction below writes the log from its start again.
        if let Err(e) = checkpoint::passive(&w.conn) {
            tracing::warn!(error = %e, "checkpoint before a commit failed");
        }
    }
    let tx = w.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut head = w.head;
    let mut out = Vec::with_capacity(batch.len());
    let mut touched: HashSet<&DriverId> = HashSet::new();
    let now = now_ms();
    {
        let mut insert = tx.prepare_cached(rows::INSERT)?;
        for ev in batch {
            if let Some(grace) = ev.offline_guard()
                && w.sockets.connected_within(&ev.driver, grace, now)
            {
                out.push(Written::Not(Appended::Unchanged));
                continue;
            }
            let Some((state, record)) = fleet::apply(w.fleet.get(&ev.driver), ev, Seq(head + 1)) else {
                out.push(Written::Not(Appended::Unchanged));
                continue;
            };
            // The dedup index refuses a (driver, id) it holds: that refusal
            // is the duplicate check — one descent of the index per event,
            // not a lookup and then an insert.
            if !w.interned.insert(&tx, &mut insert, &EventColumns::from_record(&record))? {
                let driver = w.interned.known_driver(&tx, ev.driver.as_str())?;
                let seq: i64 = tx
                    .prepare_cached("SELECT seq FROM events WHERE driver = ?1 AND msg_id = ?2")?
                    .query_row(params![driver, packed_id::pack(ev.id.as_str())], |r| r.get(0))?;
                out.push(Written::Not(Appended::Duplicate(Seq(seq as u64))));
                continue;
            }
            w.fleet.insert(ev.driver.clone(), state);
            head += 1;
            touched.insert(&ev.driver);
            out.push(Written::Stored(record));
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
            let r = DriverRow::from_state(driver, s);
            upsert.execute(params![
                r.driver_id,
                r.lat,
                r.lng,
                r.recorded_at,
                r.effective_at,
                r.status,
                r.email,
                r.last_seen,
                r.online
            ])?;
        }
        if head != w.head {
            tx.execute("UPDATE meta SET value = ?1 WHERE key = 'head'", [head.to_string()])?;
        }
    }
    tx.commit()?;
    Ok((out, head))
}

/// Removes up to [`PRUNE_CHUNK`] events received before `before`, in one
/// transaction with the new `pruned_through`: the highest `seq` removed.
/// Not "below the oldest kept row": `received_at` is stamped on arrival and
/// `seq` at the commit, so a row removed can sit above one kept, and a
/// reader from below it must still be told of the gap. Returns how many
/// were removed and the highest of them (0: none); the stored
/// `pruned_through` only ever goes up.
fn prune_chunk(conn: &mut Connection, before: Millis) -> Result<(usize, u64), StorageError> {
    let tx = conn.transaction()?;
    let (n, highest): (usize, Option<i64>) = {
        let mut stmt = tx.prepare_cached(
            "DELETE FROM events WHERE seq IN
             (SELECT seq FROM events WHERE received_at < ?1 ORDER BY received_at LIMIT ?2) RETURNING seq",
        )?;
        let mut rows = stmt.query(params![before, PRUNE_CHUNK])?;
        let (mut n, mut highest) = (0, None);
        while let Some(r) = rows.next()? {
            n += 1;
            highest = highest.max(Some(r.get::<_, i64>(0)?));
        }
        (n, highest)
    };
    let through = match highest {
        Some(seq) => {
            tx.execute(
                "UPDATE meta SET value = CAST(MAX(CAST(value AS INTEGER), ?1) AS TEXT) WHERE key = 'pruned_through'",
                [seq],
            )?;
            seq.max(0) as u64
        }
        None => 0,
    };
    tx.commit()?;
    Ok((n, through))
}

impl SqliteLog {
    /// Runs an event query on the reader thread; damaged rows are reported
    /// and skipped.
    async fn read_events(
        &self,
        sql: String,
        args: impl rusqlite::Params + Send + 'static,
    ) -> Result<Vec<SharedEvent>, StorageError> {
        let rows = self
            .reader
            .call(move |conn| -> Result<Vec<row::ReadRow>, StorageError> {
                let mut stmt = conn.prepare_cached(&sql)?;
                let rows = stmt.query_map(args, rows::read)?;
                rows.map(|r| r.map(row::event).map_err(StorageError::from)).collect()
            })
            .await??;
        Ok(self.damage.keep_good(rows).into_iter().map(Arc::new).collect())
    }
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
        let damage = Arc::clone(&self.damage);
        Box::pin(async move {
            let written = self
                .writer
                .call(move |w| match append_batch(w, &batch) {
                    Ok((out, new_head)) => {
                        w.checkpoint.committed();
                        w.head = new_head;
                        head.store(new_head, Ordering::Release);
                        writable.store(true, Ordering::Relaxed);
                        Ok(out)
                    }
                    Err(e) => {
                        writable.store(false, Ordering::Relaxed);
                        // The in-memory state moved with the failed transaction:
                        // rebuild it, and forget numbers interned inside it.
                        w.interned.clear();
                        match load_fleet(&w.conn, &damage) {
                            Ok(fleet) => w.fleet = fleet,
                            Err(e) => tracing::error!(error = %e, "reloading latest state failed"),
                        }
                        Err(e)
                    }
                })
                .await??;
            Ok(written.into_iter().map(Written::rendered).collect())
        })
    }

    fn read_after(&self, after: Seq, limit: usize) -> BoxFuture<'_, Result<Page, StorageError>> {
        let head = self.head();
        // Read before the events: a prune that runs meanwhile can only make
        // the page look complete when it was, never hide a gap it made.
        Box::pin(async move {
            let events = self
                .read_events(
                    format!("{} WHERE e.seq > ?1 ORDER BY e.seq LIMIT ?2", rows::SELECT),
                    (after.0 as i64, limit as i64),
                )
                .await?;
            let head = events.last().map_or(head, |e| e.seq.max(head));
            // Retention removes a prefix of the stream; a damaged row that
            // was skipped is reported, not a gap.
            let gap = self.pruned_through.load(Ordering::Acquire) > after.0;
            Ok(Page { events, head, gap })
        })
    }

    fn snapshot(&self) -> BoxFuture<'_, Result<Snapshot, StorageError>> {
        // On the reader, never the writer (issue 19): a commit writes the
        // latest state and the head in one transaction, so one read
        // transaction sees both as of the same commit (WAL snapshot).
        let damage = Arc::clone(&self.damage);
        Box::pin(async move {
            self.reader
                .call(move |conn| -> Result<Snapshot, StorageError> {
                    let tx = conn.transaction()?;
                    let head = read_head(&tx)?;
                    let fleet = load_fleet(&tx, &damage)?;
                    tx.commit()?;
                    Ok(Snapshot {
                        seq: Seq(head),
                        drivers: fleet.iter().map(|(id, s)| (id.clone(), s.clone())).collect(),
                    })
                })
                .await?
        })
    }

    fn track(
        &self,
        driver: DriverId,
        from: Millis,
        to: Millis,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<SharedEvent>, StorageError>> {
        // `kind = 1` as a literal: the track index is partial on it.
        Box::pin(self.read_events(
            format!(
                "{} WHERE e.driver = (SELECT ix FROM names WHERE driver_id = ?1) AND e.kind = 1
                  AND e.recorded_at BETWEEN ?2 AND ?3 ORDER BY e.recorded_at, e.seq LIMIT ?4",
                rows::SELECT
            ),
            (driver.as_str().to_string(), from, to, limit as i64),
        ))
    }

    fn prune(&self, before: Millis) -> BoxFuture<'_, Result<u64, StorageError>> {
        Box::pin(async move {
            let mut total = 0u64;
            loop {
                let pruned = Arc::clone(&self.pruned_through);
                let n = self
                    .writer
                    .call(move |w| {
                        let (n, through) = prune_chunk(&mut w.conn, before)?;
                        if n > 0 {
                            w.checkpoint.committed();
                            pruned.fetch_max(through, Ordering::AcqRel);
                        }
                        Ok::<_, StorageError>(n)
                    })
                    .await??;
                total += n as u64;
                if (n as i64) < PRUNE_CHUNK {
                    return Ok(total);
                }
            }
        })
    }

    fn cursor(&self, name: &'static str) -> BoxFuture<'_, Result<Option<Seq>, StorageError>> {
        Box::pin(async move {
            let v = self
                .reader
                .call(move |conn| {
                    conn.query_row("SELECT seq FROM cursors WHERE name = ?1", [name], |r| r.get::<_, i64>(0)).optional()
                })
                .await??;
            Ok(v.map(|s| Seq(s.max(0) as u64)))
        })
    }

    fn set_cursor(&self, name: &'static str, seq: Seq) -> BoxFuture<'_, Result<(), StorageError>> {
        Box::pin(async move {
            self.writer
                .call(move |w| {
                    w.conn.execute(
                        "INSERT INTO cursors (name, seq) VALUES (?1, ?2)
                         ON CONFLICT (name) DO UPDATE SET seq = excluded.seq",
                        params![name, seq.0 as i64],
                    )?;
                    w.checkpoint.committed();
                    Ok::<_, StorageError>(())
                })
                .await??;
            Ok(())
        })
    }

    fn revoke(&self, r: Revocation) -> BoxFuture<'_, Result<(), StorageError>> {
        Box::pin(async move {
            self.writer
                .call(move |w| {
                    let (kind, key) = revocation_key(&r.what);
                    w.conn.execute(
                        "INSERT INTO revocations (kind, key, at_secs, until_secs) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (kind, key) DO UPDATE SET at_secs = MAX(at_secs, excluded.at_secs),
                             until_secs = MAX(until_secs, excluded.until_secs)",
                        params![kind, key, r.at_secs, r.until_secs],
                    )?;
                    w.conn.execute("DELETE FROM revocations WHERE until_secs < ?1", [r.at_secs])?;
                    w.checkpoint.committed();
                    Ok::<_, StorageError>(())
                })
                .await?
        })
    }

    fn revocations(&self, now_secs: i64) -> BoxFuture<'_, Result<Vec<Revocation>, StorageError>> {
        Box::pin(async move {
            self.reader
                .call(move |conn| {
                    let mut stmt = conn.prepare_cached(
                        "SELECT kind, key, at_secs, until_secs FROM revocations WHERE until_secs >= ?1",
                    )?;
                    let rows = stmt.query_map([now_secs], |r| {
                        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get(2)?, r.get(3)?))
                    })?;
                    let mut out = Vec::new();
                    for row in rows {
                        let (kind, key, at_secs, until_secs) = row?;
                        if let Some(what) = revoked_from(&kind, key) {
                            out.push(Revocation { what, at_secs, until_secs });
                        }
                    }
                    Ok::<_, StorageError>(out)
                })
                .await?
        })
    }

    fn damaged_rows(&self) -> u64 {
        self.damage.get()
    }

    fn settle(&self) -> BoxFuture<'_, Result<(), StorageError>> {
        Box::pin(async move {
            self.writer.call(|w| w.conn.pragma_update(None, "wal_checkpoint", "TRUNCATE")).await??;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::NoSockets;
    use wecare_proto::DriverStatus;

    #[tokio::test]
    async fn sqlite_log_passes_the_conformance_suite() {
        crate::storage::testing::run_all(
            |dir| {
                let dir = dir.to_path_buf();
                async move { SqliteLog::open(&dir, Arc::new(NoSockets)).expect("opens") }
            },
            crate::storage::testing::Writers::OneLog,
        )
        .await;
    }

    /// Copies every few ms, and asks the writer to finish the copy past 64 frames.
    fn eager(file_limit_bytes: i64) -> Policy {
        Policy { interval: std::time::Duration::from_millis(2), restart_frames: 64, file_limit_bytes }
    }

    /// Commits `batches`, each of one fix from each of 20 drivers.
    async fn append_batches(log: &SqliteLog, batches: std::ops::Range<i64>) {
        let t = crate::clock::now_ms();
        for batch in batches {
            let events = (0..20)
                .map(|i| crate::storage::testing::loc(&format!("d{i}"), &format!("{batch}-{i}"), t + batch, t + batch))
                .collect();
            log.append(events).await.unwrap();
        }
    }

    #[tokio::test]
    async fn the_write_ahead_log_starts_over_under_steady_writes() {
        let dir = tempfile::tempdir().unwrap();
        let log = SqliteLog::open_with(dir.path(), Arc::new(NoSockets), eager(32 << 20)).unwrap();
        append_batches(&log, 0..300).await;
        assert_eq!(log.head(), Seq(6000));
        // Never copied or never started over, the log would hold every
        // commit's pages: ~300 commits of several pages each (> 10 MiB).
        let wal = std::fs::metadata(dir.path().join(format!("{FILE_NAME}-wal"))).unwrap().len();
        assert!(wal < 4 << 20, "the log grew to {wal} bytes");
        drop(log);
        let log = SqliteLog::open(dir.path(), Arc::new(NoSockets)).unwrap();
        assert_eq!(log.read_after(Seq(5990), 100).await.unwrap().events.len(), 10, "every commit kept");
    }

    #[tokio::test]
    async fn the_log_file_is_cut_back_once_a_long_reader_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let log = SqliteLog::open_with(dir.path(), Arc::new(NoSockets), eager(1 << 20)).unwrap();
        let wal = || std::fs::metadata(dir.path().join(format!("{FILE_NAME}-wal"))).map_or(0, |m| m.len());
        // A reader holding its snapshot (as a long replay does): the log
        // cannot start over, whatever is copied.
        let reader = Connection::open(dir.path().join(FILE_NAME)).unwrap();
        reader.execute_batch("BEGIN; SELECT COUNT(*) FROM events;").unwrap();
        append_batches(&log, 0..300).await;
        let grown = wal();
        assert!(grown > 4 << 20, "the log grew to {grown} bytes only");
        reader.execute_batch("COMMIT").unwrap();
        drop(reader);
        // Bounded: it starts over within a few commits of being copied.
        for round in 0..50 {
            append_batches(&log, 300 + round * 10..310 + round * 10).await;
            if wal() <= 2 << 20 {
                return;
            }
        }
        panic!("the log file stayed at {} bytes (it grew to {grown})", wal());
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
            let log = SqliteLog::open(dir.path(), Arc::new(NoSockets)).unwrap();
            log.append(vec![NewEvent::location(
                crate::domain::event::Sender { driver: DriverId::new("d"), email: Some("d@x".into()), name: None },
                fix,
                t,
            )])
            .await
            .unwrap();
        }
        let log = SqliteLog::open(dir.path(), Arc::new(NoSockets)).unwrap();
        let snap = log.snapshot().await.unwrap();
        let (_, s) = &snap.drivers[0];
        assert_eq!(
            (s.position.unwrap().lat, s.status, s.email.as_deref()),
            (1.5, Some(DriverStatus::OnTrip), Some("d@x"))
        );
    }

    #[tokio::test]
    async fn a_store_from_before_v1_3_forgets_the_statuses_it_invented() {
        let dir = tempfile::tempdir().unwrap();
        {
            // A v4 store (before v1.3): every driver got AVAILABLE until it
            // reported a status. Only b ever sent a `driver:status` (kind 2);
            // c reported ON_TRIP in a fix.
            let conn = Connection::open(dir.path().join(FILE_NAME)).unwrap();
            conn.execute_batch(include_str!("schema.sql")).unwrap();
            conn.execute_batch(crate::storage::legacy::EVENTS_TABLE).unwrap();
            conn.execute_batch(
                "PRAGMA user_version = 4;
                 INSERT INTO meta (key, value) VALUES ('stream_id', 'old'), ('head', '3'), ('pruned_through', '0');
                 INSERT INTO events VALUES (1, 1, 'a', 'm1', 1, 1, '{\"seq\":1}'),
                                           (2, 2, 'b', 'm2', 2, 2, '{\"seq\":2}'),
                                           (3, 1, 'c', 'm3', 3, 3, '{\"seq\":3}');
                 INSERT INTO drivers (driver_id, lat, lng, recorded_at, effective_at, status, last_seen)
                 VALUES ('a', 1, 2, 1, 1, 'AVAILABLE', 1), ('b', 1, 2, 1, 1, 'AVAILABLE', 2), ('c', 1, 2, 3, 3, 'ON_TRIP', 3);",
            )
            .unwrap();
        }
        let log = SqliteLog::open(dir.path(), Arc::new(NoSockets)).unwrap();
        let snap = log.snapshot().await.unwrap();
        let status = |id: &str| snap.drivers.iter().find(|(d, _)| d.as_str() == id).and_then(|(_, s)| s.status);
        assert_eq!(status("a"), None, "invented: forgotten");
        assert_eq!(status("b"), Some(DriverStatus::Available), "reported with driver:status: kept");
        assert_eq!(status("c"), Some(DriverStatus::OnTrip), "not the default: kept");
        assert_eq!(log.stream_id(), "old", "the same stream");
    }
}
