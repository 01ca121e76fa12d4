//! [`PgLog`]: the [`EventLog`] of a cluster — any number of nodes on one
//! PostgreSQL database (contract §11).
//!
//! Order is decided in the database, once: every group commit is one
//! transaction that first locks the stream's one row (`SELECT … FOR
//! UPDATE`), so the next writer — on this node or another — waits for the
//! commit; `seq` is the head plus one per stored event, the head is written
//! back, and commits become visible in `seq` order with no holes. Dedup is
//! the unique `(driver_id, msg_id)` index, for the whole retention. The
//! domain's marker rule runs on the driver rows read under that lock, and
//! `NOTIFY wecare_stream` (sent on commit) wakes the other nodes' tailers.
//!
//! A node learns of commits by reading, never by being told what they
//! were: the tailer reads `seq > last` after a wake-up, so its own commits
//! and other nodes' are delivered by one rule.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use futures_util::TryFutureExt;
use futures_util::future::try_join;
use tokio_postgres::{Client, Config, Statement};
use wecare_proto::{DriverId, Seq};

use super::packed_id;
use super::row::{self, DamageCounter, DriverRow, EventColumns};
use super::{Appended, BoxFuture, EventLog, Page, Snapshot, StorageError, revocation_key, revoked_from};
use crate::clock::Millis;
use crate::domain::event::{NewEvent, SharedEvent, encode};
use crate::domain::fleet::Fleet;
use crate::domain::revocation::Revocation;

// The cluster's coordination (`crate::cluster::postgres`) shares the
// connection helpers and the LISTEN loop.
pub(crate) mod conn;
pub(crate) mod listen;
mod rows;
mod upgrade;

pub(crate) use conn::parse_url;
use conn::{DB_NOW, Prepared, Slot, connect};

pub(crate) use upgrade::SCHEMA_VERSION;
/// The schema, created by the first node (and by `wecare-rt migrate`).
pub(crate) const SCHEMA_SQL: &str = include_str!("schema.sql");
/// Rows deleted per retention statement.
const PRUNE_CHUNK: i64 = 5_000;
/// Reader connections: replays, pages and snapshots share them (queries
/// are pipelined on each).
const READERS: usize = 2;
/// How long one group commit may take before it is answered UNAVAILABLE
/// (a database that stopped answering must not hold acks forever).
const COMMIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

const DRIVER_COLUMNS: &str = "driver_id, lat, lng, recorded_at, effective_at, status, email, last_seen, online";

/// The writer connection and its statements (one group commit at a time).
struct Writer {
    client: Client,
    lock_head: Statement,
    find_dups: Statement,
    load_drivers: Statement,
    connected: Statement,
    rows: rows::InternStatements,
    upsert_drivers: Statement,
    set_head: Statement,
}

impl Prepared for Writer {
    async fn prepare(client: Client) -> Result<Self, StorageError> {
        let lock_head = client.prepare("SELECT head FROM stream WHERE id = 1 FOR UPDATE").await?;
        let find_dups = client
            .prepare(
                // One index probe per key, whatever plan is cached: as a
                // join, a plan made while the table was small scans it.
                "SELECT d, m, s FROM (SELECT k.d, k.m,
                     (SELECT e.seq FROM events e WHERE e.driver = k.d AND e.msg_id = k.m) AS s
                 FROM unnest($1::int4[], $2::bytea[]) AS k(d, m)) found WHERE s IS NOT NULL",
            )
            .await?;
        let load_drivers =
            client.prepare(&format!("SELECT {DRIVER_COLUMNS} FROM drivers WHERE driver_id = ANY($1)")).await?;
        let connected = client
            .prepare(&format!(
                "SELECT DISTINCT s.driver_id FROM driver_sockets s JOIN nodes n ON n.node_id = s.node_id
                 WHERE s.driver_id = ANY($1)
                   AND ((s.sockets > 0 AND n.lease_until + $2 > {DB_NOW}) OR s.closed_at + $2 > {DB_NOW})"
            ))
            .await?;
        let rows = rows::InternStatements::prepare(&client).await?;
        let upsert_drivers = client
            .prepare(&format!(
                "INSERT INTO drivers ({DRIVER_COLUMNS})
                 SELECT * FROM unnest($1::text[], $2::float8[], $3::float8[], $4::bigint[], $5::bigint[],
                                      $6::text[], $7::text[], $8::bigint[], $9::bool[])
                 ON CONFLICT (driver_id) DO UPDATE SET lat = excluded.lat, lng = excluded.lng,
                     recorded_at = excluded.recorded_at, effective_at = excluded.effective_at,
                     status = excluded.status, email = excluded.email, last_seen = excluded.last_seen,
                     online = excluded.online"
            ))
            .await?;
        let set_head = client.prepare("UPDATE stream SET head = $1 WHERE id = 1").await?;
        Ok(Self { client, lock_head, find_dups, load_drivers, connected, rows, upsert_drivers, set_head })
    }

    fn client(&self) -> &Client {
        &self.client
    }
}

/// A reader connection and its statements.
struct Reader {
    client: Client,
    head: Statement,
    read_after: Statement,
    track: Statement,
    snapshot: Statement,
}

impl Prepared for Reader {
    async fn prepare(client: Client) -> Result<Self, StorageError> {
        let head = client.prepare("SELECT head, pruned_through FROM stream WHERE id = 1").await?;
        let read_after = client.prepare(&format!("{} WHERE e.seq > $1 ORDER BY e.seq LIMIT $2", rows::SELECT)).await?;
        // `kind = 1` as a literal: the track index is partial on it.
        let track = client
            .prepare(&format!(
                "{} WHERE e.driver = (SELECT ix FROM names WHERE driver_id = $1) AND e.kind = 1
                   AND e.recorded_at BETWEEN $2 AND $3 ORDER BY e.recorded_at, e.seq LIMIT $4",
                rows::SELECT
            ))
            .await?;
        // One statement, one snapshot: the head and the drivers agree.
        let snapshot = client
            .prepare(
                "SELECT s.head, d.driver_id, d.lat, d.lng, d.recorded_at, d.effective_at, d.status, d.email,
                        d.last_seen, d.online
                 FROM stream s LEFT JOIN drivers d ON TRUE WHERE s.id = 1",
            )
            .await?;
        Ok(Self { client, head, read_after, track, snapshot })
    }

    fn client(&self) -> &Client {
        &self.client
    }
}

/// The PostgreSQL event log. See the module docs.
pub(crate) struct PgLog {
    stream_id: String,
    head: Arc<AtomicU64>,
    /// Whether this node's last write succeeded: a group commit, or the
    /// lease renewal the cluster makes every second ([`Self::writable_flag`]).
    writable: Arc<AtomicBool>,
    damage: DamageCounter,
    /// Driver and label numbers seen committed.
    interned: std::sync::Mutex<rows::Interned>,
    writer: Slot<Writer>,
    readers: Vec<Slot<Reader>>,
    next_reader: AtomicUsize,
    plain: Slot<conn::Plain>,
}

impl std::fmt::Debug for PgLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgLog")
            .field("stream_id", &self.stream_id)
            .field("head", &self.head.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// A stream's id: random, fixed when the stream is created.
fn new_stream_id() -> String {
    crate::random::hex_id(16)
}

impl PgLog {
    /// Connects, creates or migrates the schema (one node at a time, under
    /// an advisory lock), and reads the stream's id and head.
    ///
    /// # Errors
    /// The database cannot be reached, or holds a newer schema.
    pub(crate) async fn open(config: &Config) -> Result<Self, StorageError> {
        // A connection for the migration only, dropped at the end of open.
        let client = connect(config, &tokio::runtime::Handle::current()).await?;
        upgrade::run(&client).await?;
        let row = client.query_one("SELECT stream_id, head FROM stream WHERE id = 1", &[]).await?;
        let stream_id: String = row.get(0);
        let head: i64 = row.get(1);
        tracing::info!(%stream_id, head, "postgres store opened");
        Ok(Self {
            stream_id,
            head: Arc::new(AtomicU64::new(head.max(0) as u64)),
            writable: Arc::new(AtomicBool::new(true)),
            damage: DamageCounter::default(),
            interned: std::sync::Mutex::default(),
            writer: Slot::new(config.clone()),
            readers: (0..READERS).map(|_| Slot::new(config.clone())).collect(),
            next_reader: AtomicUsize::new(0),
            plain: Slot::new(config.clone()),
        })
    }

    async fn reader(&self) -> Result<Arc<Reader>, StorageError> {
        let i = self.next_reader.fetch_add(1, Ordering::Relaxed) % self.readers.len();
        self.readers[i].get().await
    }

    /// The flag behind [`EventLog::is_writable`], for the cluster's lease
    /// heartbeat to set when a renewal (a write) succeeds: otherwise a node
    /// whose commit failed while the database was down, and that takes no
    /// events after (a load balancer skips it while `/readyz` is 503),
    /// would never become ready again.
    pub(crate) fn writable_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.writable)
    }

    /// The node's view of the head moves forward with what it read or wrote.
    pub(crate) fn saw_head(&self, seq: Seq) {
        self.head.fetch_max(seq.0, Ordering::AcqRel);
    }

    fn events(&self, rows: Vec<tokio_postgres::Row>) -> Vec<SharedEvent> {
        let decoded = rows.iter().map(|r| row::event(rows::read(r)));
        self.damage.keep_good(decoded).into_iter().map(Arc::new).collect()
    }
}

async fn append_batch(
    w: &Writer,
    cache: &std::sync::Mutex<rows::Interned>,
    batch: &[NewEvent],
) -> Result<(Vec<Appended>, u64, rows::Interned), StorageError> {
    let c = &w.client;
    c.batch_execute("BEGIN").await?;
    let result = async {
        let head: i64 = c.query_one(&w.lock_head, &[]).await?.get(0);
        // Under the stream lock nothing else commits: these reads are current.
        let mut learned = rows::drivers(c, &w.rows, cache, batch.iter().map(|e| e.driver.as_str())).await?;
        let (dup_drivers, dup_ids): (Vec<i32>, Vec<Vec<u8>>) = batch
            .iter()
            .filter(|e| e.dedup)
            .filter_map(|e| Some((learned.driver(e.driver.as_str())?, packed_id::pack(e.id.as_str()))))
            .unzip();
        let mut touched: Vec<&str> = batch.iter().map(|e| e.driver.as_str()).collect();
        touched.sort_unstable();
        touched.dedup();
        let (dups, drivers) =
            try_join(c.query(&w.find_dups, &[&dup_drivers, &dup_ids]), c.query(&w.load_drivers, &[&touched])).await?;
        let mut stored: HashMap<(i32, Vec<u8>), i64> =
            dups.into_iter().map(|r| ((r.get(0), r.get(1)), r.get(2))).collect();
        let mut fleet = Fleet::default();
        for r in drivers {
            let row = driver_row(&r);
            let id = row.driver_id.clone();
            // A damaged row is rebuilt from this event on (the old state is unreadable).
            match row.into_state() {
                Ok((id, state)) => fleet.insert(id, state),
                Err(d) => tracing::error!(driver = ?id, damage = %d, "damaged latest-state row replaced"),
            }
        }
        let guarded: Vec<&str> =
            batch.iter().filter(|e| e.offline_guard().is_some()).map(|e| e.driver.as_str()).collect();
        let connected: HashSet<String> = if guarded.is_empty() {
            HashSet::new()
        } else {
            let grace = batch.iter().filter_map(NewEvent::offline_guard).max().unwrap_or(0);
            c.query(&w.connected, &[&guarded, &grace]).await?.into_iter().map(|r| r.get(0)).collect()
        };

        let mut seq = head;
        let mut out = Vec::with_capacity(batch.len());
        let mut writes: Vec<EventColumns> = Vec::new();
        let mut changed: HashSet<&DriverId> = HashSet::new();
        for ev in batch {
            let key = learned.driver(ev.driver.as_str()).map(|d| (d, packed_id::pack(ev.id.as_str())));
            if ev.dedup
                && let Some(s) = key.as_ref().and_then(|k| stored.get(k))
            {
                out.push(Appended::Duplicate(Seq(*s as u64)));
                continue;
            }
            if ev.offline_guard().is_some() && connected.contains(ev.driver.as_str()) {
                out.push(Appended::Unchanged);
                continue;
            }
            let Some(record) = fleet.apply(ev, Seq(seq as u64 + 1)) else {
                out.push(Appended::Unchanged);
                continue;
            };
            seq += 1;
            if ev.dedup
                && let Some(key) = key
            {
                stored.insert(key, seq);
            }
            writes.push(EventColumns::from_record(&record));
            changed.insert(&ev.driver);
            out.push(Appended::Stored(Arc::new(encode(&record))));
        }
        if seq != head {
            let latest: Vec<DriverRow> =
                changed.iter().filter_map(|d| fleet.get(d).map(|s| DriverRow::from_state(d, s))).collect();
            let d = DriverColumns::from(latest);
            let driver_params: [&(dyn tokio_postgres::types::ToSql + Sync); 9] =
                [&d.id, &d.lat, &d.lng, &d.recorded_at, &d.effective_at, &d.status, &d.email, &d.last_seen, &d.online];
            let head_text = seq.to_string();
            let insert = rows::insert(c, &w.rows, cache, &mut learned, &writes);
            let upsert = c.execute(&w.upsert_drivers, &driver_params).map_err(StorageError::from);
            let head_params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&seq];
            let notify_params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&head_text];
            let set_head = c.execute(&w.set_head, &head_params).map_err(StorageError::from);
            // The payload is a hint only: a woken tailer reads the stream.
            let notify = c.execute("SELECT pg_notify('wecare_stream', $1)", &notify_params).map_err(StorageError::from);
            futures_util::future::try_join4(insert, upsert, set_head, notify).await?;
        }
        Ok::<_, StorageError>((out, seq.max(0) as u64, learned))
    }
    .await;
    match result {
        Ok(done) => {
            c.batch_execute("COMMIT").await?;
            Ok(done)
        }
        Err(e) => {
            // A broken connection rolls back by itself; a live one is told.
            let _ = c.batch_execute("ROLLBACK").await;
            Err(e)
        }
    }
}

/// Driver rows as the column arrays `unnest` takes.
#[derive(Default)]
struct DriverColumns {
    id: Vec<String>,
    lat: Vec<Option<f64>>,
    lng: Vec<Option<f64>>,
    recorded_at: Vec<Option<i64>>,
    effective_at: Vec<Option<i64>>,
    status: Vec<String>,
    email: Vec<Option<String>>,
    last_seen: Vec<i64>,
    online: Vec<bool>,
}

impl From<Vec<DriverRow>> for DriverColumns {
    fn from(rows: Vec<DriverRow>) -> Self {
        let mut c = Self::default();
        for r in rows {
            c.id.push(r.driver_id);
            c.lat.push(r.lat);
            c.lng.push(r.lng);
            c.recorded_at.push(r.recorded_at);
            c.effective_at.push(r.effective_at);
            c.status.push(r.status);
            c.email.push(r.email);
            c.last_seen.push(r.last_seen);
            c.online.push(r.online);
        }
        c
    }
}

/// A `drivers` row starting at column `at` (the snapshot query has the head first).
fn driver_row_at(r: &tokio_postgres::Row, at: usize) -> DriverRow {
    DriverRow {
        driver_id: r.get(at),
        lat: r.get(at + 1),
        lng: r.get(at + 2),
        recorded_at: r.get(at + 3),
        effective_at: r.get(at + 4),
        status: r.get(at + 5),
        email: r.get(at + 6),
        last_seen: r.get(at + 7),
        online: r.get(at + 8),
    }
}

fn driver_row(r: &tokio_postgres::Row) -> DriverRow {
    driver_row_at(r, 0)
}

impl EventLog for PgLog {
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
        Box::pin(async move {
            let attempt = async {
                let w = self.writer.get().await?;
                append_batch(&w, &self.interned, &batch).await
            };
            let result = match tokio::time::timeout(COMMIT_TIMEOUT, attempt).await {
                Ok(r) => r,
                Err(_) => Err(StorageError::Database("the commit timed out".into())),
            };
            match result {
                Ok((out, head, learned)) => {
                    // Committed: the numbers it gave are real now.
                    self.interned.lock().unwrap_or_else(std::sync::PoisonError::into_inner).merge(learned);
                    self.saw_head(Seq(head));
                    self.writable.store(true, Ordering::Relaxed);
                    Ok(out)
                }
                Err(e) => {
                    self.writable.store(false, Ordering::Relaxed);
                    Err(e)
                }
            }
        })
    }

    fn read_after(&self, after: Seq, limit: usize) -> BoxFuture<'_, Result<Page, StorageError>> {
        Box::pin(async move {
            let r = self.reader().await?;
            let after_i = after.0 as i64;
            let limit_i = limit as i64;
            // Pipelined; the head is read first, so a prune between the two
            // can only make a page look complete when it was.
            let (head, rows) =
                try_join(r.client.query_one(&r.head, &[]), r.client.query(&r.read_after, &[&after_i, &limit_i]))
                    .await?;
            let (head, pruned): (i64, i64) = (head.get(0), head.get(1));
            let events = self.events(rows);
            let head = Seq(head.max(0) as u64).max(events.last().map_or(Seq::ZERO, |e| e.seq));
            self.saw_head(head);
            Ok(Page { events, head, gap: pruned > after_i })
        })
    }

    fn snapshot(&self) -> BoxFuture<'_, Result<Snapshot, StorageError>> {
        Box::pin(async move {
            let r = self.reader().await?;
            let rows = r.client.query(&r.snapshot, &[]).await?;
            let mut snap = Snapshot::default();
            for row in rows {
                let head: i64 = row.get(0);
                snap.seq = Seq(head.max(0) as u64);
                let Some(_) = row.get::<_, Option<String>>(1) else {
                    continue;
                };
                let dr = driver_row_at(&row, 1);
                let id = dr.driver_id.clone();
                match dr.into_state() {
                    Ok(state) => snap.drivers.push(state),
                    Err(d) => self.damage.driver(&id, &d),
                }
            }
            self.saw_head(snap.seq);
            Ok(snap)
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
            let r = self.reader().await?;
            let rows = r.client.query(&r.track, &[&driver.as_str(), &from, &to, &(limit as i64)]).await?;
            Ok(self.events(rows))
        })
    }

    fn prune(&self, before: Millis) -> BoxFuture<'_, Result<u64, StorageError>> {
        Box::pin(async move {
            let c = self.plain.get().await?;
            let mut total = 0u64;
            loop {
                let row =
                    c.0.query_one(
                        "WITH del AS (
                             DELETE FROM events WHERE seq IN
                                 (SELECT seq FROM events WHERE received_at < $1 ORDER BY seq LIMIT $2)
                             RETURNING seq),
                         moved AS (
                             UPDATE stream SET pruned_through = GREATEST(pruned_through,
                                 (SELECT COALESCE(MAX(seq), 0) FROM del)) WHERE id = 1)
                         SELECT count(*) FROM del",
                        &[&before, &PRUNE_CHUNK],
                    )
                    .await?;
                let n: i64 = row.get(0);
                total += n as u64;
                if n < PRUNE_CHUNK {
                    return Ok(total);
                }
            }
        })
    }

    fn cursor(&self, name: &'static str) -> BoxFuture<'_, Result<Option<Seq>, StorageError>> {
        Box::pin(async move {
            let c = self.plain.get().await?;
            let row = c.0.query_opt("SELECT seq FROM cursors WHERE name = $1", &[&name]).await?;
            Ok(row.map(|r| Seq(r.get::<_, i64>(0).max(0) as u64)))
        })
    }

    fn set_cursor(&self, name: &'static str, seq: Seq) -> BoxFuture<'_, Result<(), StorageError>> {
        Box::pin(async move {
            let c = self.plain.get().await?;
            c.0.execute(
                "INSERT INTO cursors (name, seq) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET seq = excluded.seq",
                &[&name, &(seq.0 as i64)],
            )
            .await?;
            Ok(())
        })
    }

    fn revoke(&self, r: Revocation) -> BoxFuture<'_, Result<(), StorageError>> {
        Box::pin(async move {
            let c = self.plain.get().await?;
            let (kind, key) = revocation_key(&r.what);
            c.0.execute(
                "INSERT INTO revocations (kind, key, at_secs, until_secs) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (kind, key) DO UPDATE SET at_secs = GREATEST(revocations.at_secs, excluded.at_secs),
                     until_secs = GREATEST(revocations.until_secs, excluded.until_secs)",
                &[&kind, &key, &r.at_secs, &r.until_secs],
            )
            .await?;
            c.0.execute("DELETE FROM revocations WHERE until_secs < $1", &[&r.at_secs]).await?;
            Ok(())
        })
    }

    fn revocations(&self, now_secs: i64) -> BoxFuture<'_, Result<Vec<Revocation>, StorageError>> {
        Box::pin(async move {
            let c = self.plain.get().await?;
            let rows = c
                .0
                .query("SELECT kind, key, at_secs, until_secs FROM revocations WHERE until_secs >= $1", &[&now_secs])
                .await?;
            Ok(rows
                .into_iter()
                .filter_map(|r| {
                    let what = revoked_from(r.get::<_, &str>(0), r.get(1))?;
                    Some(Revocation { what, at_secs: r.get(2), until_secs: r.get(3) })
                })
                .collect())
        })
    }

    fn damaged_rows(&self) -> u64 {
        self.damage.get()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::PathBuf;
    use std::sync::Mutex;

    use super::*;
    use crate::pg_testing::{PgServer, TestDb};
    use crate::storage::testing::{Writers, run_all};

    #[tokio::test]
    async fn pg_log_passes_the_conformance_suite() {
        let server = PgServer::shared();
        // The suite names stores by folder: each folder gets its own database.
        let dbs: Mutex<HashMap<PathBuf, TestDb>> = Mutex::default();
        run_all(
            |dir| {
                let url =
                    dbs.lock().unwrap().entry(dir.to_path_buf()).or_insert_with(|| server.database("conf")).url.clone();
                async move { PgLog::open(&parse_url(&url).unwrap()).await.expect("opens") }
            },
            Writers::ManyLogs,
        )
        .await;
    }

    #[tokio::test]
    async fn a_store_from_before_v1_3_forgets_the_statuses_it_invented() {
        let server = PgServer::shared();
        let db = server.database("v13");
        let config = parse_url(&db.url).unwrap();
        drop(PgLog::open(&config).await.expect("creates the schema"));
        // Back to schema 1 (before v1.3): every driver got AVAILABLE until it
        // reported one. Only b sent a `driver:status` (kind 2); c reported
        // ON_TRIP in a fix.
        let (client, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        client
            .batch_execute(
                &[
                    crate::storage::legacy::EVENTS_TABLE,
                    "UPDATE stream SET schema_version = 1;
                 INSERT INTO events VALUES (1, 1, 'a', 'm1', 1, 1, '{\"lat\":1.5,\"lng\":2,\"driverEmail\":\"a@x\"}'),
                     (2, 2, 'b', 'm2', 2, 2, '{\"status\":\"AVAILABLE\"}'), (3, 1, 'c', 'm3', 3, 3, '{}');
                 UPDATE stream SET head = 3;
                 INSERT INTO drivers (driver_id, lat, lng, recorded_at, effective_at, status, last_seen)
                 VALUES ('a', 1, 2, 1, 1, 'AVAILABLE', 1), ('b', 1, 2, 1, 1, 'AVAILABLE', 2), ('c', 1, 2, 3, 3, 'ON_TRIP', 3);",
                ]
                .concat(),
            )
            .await
            .unwrap();
        let log = PgLog::open(&config).await.expect("upgrades");
        let snap = log.snapshot().await.unwrap();
        let status = |id: &str| snap.drivers.iter().find(|(d, _)| d.as_str() == id).and_then(|(_, s)| s.status);
        assert_eq!(status("a"), None, "invented: forgotten");
        assert_eq!(status("b"), Some(wecare_proto::DriverStatus::Available), "reported with driver:status: kept");
        assert_eq!(status("c"), Some(wecare_proto::DriverStatus::OnTrip), "not the default: kept");
        let version: i32 = client.query_one("SELECT schema_version FROM stream", &[]).await.unwrap().get(0);
        assert_eq!(version, SCHEMA_VERSION);
        // The stream moved to typed columns (issue 17): what read, reads the
        // same and gains today's fields; what did not (c's empty body) is
        // reported and skipped, as before.
        let page = log.read_after(Seq::ZERO, 10).await.unwrap();
        let events: Vec<serde_json::Value> =
            page.events.iter().map(|e| serde_json::from_str(e.json.get()).unwrap()).collect();
        assert_eq!(events.len(), 2, "{events:?}");
        assert_eq!(
            (&events[0]["latitude"], &events[0]["driverEmail"], &events[0]["id"]),
            (&1.5.into(), &"a@x".into(), &"m1".into())
        );
        assert_eq!(events[1]["status"], "AVAILABLE");
        assert_eq!(log.damaged_rows(), 1);
    }
}
