//! Moving the embedded store to PostgreSQL (`wecare-rt migrate --to`,
//! issue 16) without a gap: the same `streamId`, every event at the same
//! `seq` with its dedup id, the latest positions and statuses, the named
//! cursors (forwarding goes on where it was) and the revocations. So after
//! the switch a watcher resumes with its `lastSeq`, a driver's resent fix is
//! a duplicate, and nothing is forwarded twice or skipped.
//!
//! The target must be empty — or a migration of this same store that was
//! interrupted: the events go over in chunks, each committed with the
//! position it reached (`migration` table), so running it again goes on
//! from there. The source is read in one read transaction: stop the node
//! first (a running node's later commits would not be in the copy).

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};
use tokio_postgres::Client;
use tokio_postgres::types::ToSql;

use super::StorageError;
use super::postgres::{SCHEMA_SQL, SCHEMA_VERSION as PG_SCHEMA_VERSION};
use super::sqlite::FILE_NAME;

/// Events per chunk (one PostgreSQL transaction each).
const CHUNK: usize = 5_000;

/// What a migration did.
#[derive(Debug, Clone)]
pub struct MigrationReport {
    /// The stream moved (the same id on PostgreSQL).
    pub stream_id: String,
    /// Its head.
    pub head: u64,
    /// Events copied by this run (an interrupted run's are not counted again).
    pub events: u64,
    /// Events in the store.
    pub total: u64,
    /// How long this run took.
    pub took: Duration,
    /// Whether this run went on from an interrupted one.
    pub resumed: bool,
}

/// Copies the embedded store in `data_dir` into the PostgreSQL database at
/// `url`, telling `progress` the events copied so far and in all. See the
/// module docs.
///
/// # Errors
/// No store in `data_dir`; the database cannot be reached; it already holds
/// another stream or a finished migration; a read or a write fails (run it
/// again: it goes on from the last chunk committed).
pub async fn migrate_to_postgres(
    data_dir: &Path,
    url: &str,
    progress: &mut (dyn FnMut(u64, u64) + Send),
) -> Result<MigrationReport, StorageError> {
    let started = Instant::now();
    let source_path = data_dir.join(FILE_NAME);
    if !source_path.exists() {
        return Err(StorageError::Corrupt(format!("no store at {}", source_path.display())));
    }
    // A store of an older version is upgraded first, as starting this
    // version's server on it would do; the copy reads today's columns.
    drop(super::sqlite::SqliteLog::open(data_dir, std::sync::Arc::new(super::NoSockets))?);
    let mut source = Connection::open_with_flags(&source_path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    source.busy_timeout(Duration::from_secs(10))?;
    // One read transaction: one consistent state of the store throughout.
    let read = source.transaction()?;
    let meta = |key: &str| -> Result<Option<String>, StorageError> {
        use rusqlite::OptionalExtension;
        Ok(read.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0)).optional()?)
    };
    let stream_id = meta("stream_id")?.ok_or_else(|| StorageError::Corrupt("the store has no stream id".into()))?;
    let head: i64 = meta("head")?.and_then(|v| v.parse().ok()).unwrap_or(0);
    let pruned: i64 = meta("pruned_through")?.and_then(|v| v.parse().ok()).unwrap_or(0);
    let total: i64 = read.query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))?;

    let config = super::postgres::parse_url(url)?;
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    let conn_task = tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "migration connection ended");
        }
    });
    let result = async {
        let (from, resumed) = claim_target(&client, &stream_id, head, pruned).await?;
        let mut copied = 0u64;
        let mut after = from;
        let mut stmt =
            read.prepare(&format!("SELECT {EVENT_COLUMNS} FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2"))?;
        let done_before = count_through(&read, from)?;
        loop {
            let rows: Vec<EventRow> = stmt
                .query_map(rusqlite::params![after, CHUNK as i64], |r| {
                    Ok(EventRow {
                        seq: r.get(0)?,
                        received_at: r.get(1)?,
                        recorded_at: r.get(2)?,
                        lat: r.get(3)?,
                        lng: r.get(4)?,
                        accuracy: r.get(5)?,
                        heading: r.get(6)?,
                        speed: r.get(7)?,
                        driver: r.get(8)?,
                        label: r.get(9)?,
                        kind: r.get(10)?,
                        status: r.get(11)?,
                        flags: r.get(12)?,
                        msg_id: r.get(13)?,
                    })
                })?
                .collect::<Result<_, _>>()?;
            let Some(last) = rows.last().map(|r| r.seq) else { break };
            copy_events(&client, &rows, last).await?;
            copied += rows.len() as u64;
            after = last;
            progress(done_before + copied, total as u64);
        }
        copy_state(&client, &read).await?;
        client.execute("UPDATE migration SET finished = TRUE WHERE id = 1", &[]).await?;
        Ok(MigrationReport {
            stream_id: stream_id.clone(),
            head: head as u64,
            events: copied,
            total: total as u64,
            took: started.elapsed(),
            resumed,
        })
    }
    .await;
    drop(client);
    let _ = conn_task.await;
    result
}

/// Events copied by earlier runs (those at or below `through`).
fn count_through(read: &rusqlite::Transaction<'_>, through: i64) -> Result<u64, StorageError> {
    let n: i64 = read.query_row("SELECT COUNT(*) FROM events WHERE seq <= ?1", [through], |r| r.get(0))?;
    Ok(n as u64)
}

/// Makes the database the target of this store's migration: an empty one
/// gets the schema and the stream's row; one an interrupted migration of
/// the same stream left behind is taken up where it stopped. Returns the
/// `seq` the events are copied after, and whether it resumes.
async fn claim_target(client: &Client, stream_id: &str, head: i64, pruned: i64) -> Result<(i64, bool), StorageError> {
    client.batch_execute("SELECT pg_advisory_lock(87326502)").await?;
    let has_stream: bool = client.query_one("SELECT to_regclass('public.stream') IS NOT NULL", &[]).await?.get(0);
    let has_migration: bool = client.query_one("SELECT to_regclass('public.migration') IS NOT NULL", &[]).await?.get(0);
    if has_stream {
        let existing = client.query_opt("SELECT stream_id FROM stream WHERE id = 1", &[]).await?;
        let progress = if has_migration {
            client.query_opt("SELECT stream_id, events_through, finished FROM migration WHERE id = 1", &[]).await?
        } else {
            None
        };
        return match (existing, progress) {
            (None, None) => fresh(client, stream_id, head, pruned).await,
            (Some(s), Some(p))
                if s.get::<_, String>(0) == stream_id && p.get::<_, String>(0) == stream_id && !p.get::<_, bool>(2) =>
            {
                Ok((p.get(1), true))
            }
            (Some(_), Some(p)) if p.get::<_, bool>(2) => Err(StorageError::Config(
                "the target database already holds this stream: the migration is done (start the nodes on it)".into(),
            )),
            _ => {
                Err(StorageError::Config("the target database is not empty: migrate into a new, empty database".into()))
            }
        };
    }
    fresh(client, stream_id, head, pruned).await
}

async fn fresh(client: &Client, stream_id: &str, head: i64, pruned: i64) -> Result<(i64, bool), StorageError> {
    client.batch_execute("BEGIN").await?;
    let result = async {
        client.batch_execute(SCHEMA_SQL).await?;
        client
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS migration (
                     id INTEGER PRIMARY KEY CHECK (id = 1),
                     stream_id TEXT NOT NULL,
                     events_through BIGINT NOT NULL,
                     finished BOOLEAN NOT NULL DEFAULT FALSE
                 )",
            )
            .await?;
        client
            .execute(
                "INSERT INTO stream (id, stream_id, head, pruned_through, schema_version) VALUES (1, $1, $2, $3, $4)",
                &[&stream_id, &head, &pruned, &PG_SCHEMA_VERSION],
            )
            .await?;
        client
            .execute("INSERT INTO migration (id, stream_id, events_through) VALUES (1, $1, $2)", &[&stream_id, &pruned])
            .await?;
        Ok::<_, StorageError>(())
    }
    .await;
    client.batch_execute(if result.is_ok() { "COMMIT" } else { "ROLLBACK" }).await?;
    result.map(|()| (pruned, false))
}

/// The `events` columns, the same in both stores (interned numbers included).
const EVENT_COLUMNS: &str =
    "seq, received_at, recorded_at, lat, lng, accuracy, heading, speed, driver, label, kind, status, flags, msg_id";

struct EventRow {
    seq: i64,
    received_at: i64,
    recorded_at: Option<i64>,
    lat: Option<f64>,
    lng: Option<f64>,
    accuracy: Option<f64>,
    heading: Option<f64>,
    speed: Option<f64>,
    driver: i32,
    label: Option<i32>,
    kind: i16,
    status: i16,
    flags: i16,
    msg_id: Vec<u8>,
}

/// One chunk of events, and how far the copy got, in one transaction.
async fn copy_events(client: &Client, rows: &[EventRow], last: i64) -> Result<(), StorageError> {
    let seq: Vec<i64> = rows.iter().map(|r| r.seq).collect();
    let received: Vec<i64> = rows.iter().map(|r| r.received_at).collect();
    let recorded: Vec<Option<i64>> = rows.iter().map(|r| r.recorded_at).collect();
    let lat: Vec<Option<f64>> = rows.iter().map(|r| r.lat).collect();
    let lng: Vec<Option<f64>> = rows.iter().map(|r| r.lng).collect();
    let accuracy: Vec<Option<f64>> = rows.iter().map(|r| r.accuracy).collect();
    let heading: Vec<Option<f64>> = rows.iter().map(|r| r.heading).collect();
    let speed: Vec<Option<f64>> = rows.iter().map(|r| r.speed).collect();
    let driver: Vec<i32> = rows.iter().map(|r| r.driver).collect();
    let label: Vec<Option<i32>> = rows.iter().map(|r| r.label).collect();
    let kind: Vec<i16> = rows.iter().map(|r| r.kind).collect();
    let status: Vec<i16> = rows.iter().map(|r| r.status).collect();
    let flags: Vec<i16> = rows.iter().map(|r| r.flags).collect();
    let msg_id: Vec<&[u8]> = rows.iter().map(|r| r.msg_id.as_slice()).collect();
    let params: [&(dyn ToSql + Sync); 14] = [
        &seq, &received, &recorded, &lat, &lng, &accuracy, &heading, &speed, &driver, &label, &kind, &status, &flags,
        &msg_id,
    ];
    client.batch_execute("BEGIN").await?;
    let result = async {
        client
            .execute(
                &format!(
                    "INSERT INTO events ({EVENT_COLUMNS})
                     SELECT * FROM unnest($1::int8[], $2::int8[], $3::int8[], $4::float8[], $5::float8[],
                         $6::float8[], $7::float8[], $8::float8[], $9::int4[], $10::int4[], $11::int2[],
                         $12::int2[], $13::int2[], $14::bytea[])"
                ),
                &params,
            )
            .await?;
        client.execute("UPDATE migration SET events_through = $1 WHERE id = 1", &[&last]).await?;
        Ok::<_, StorageError>(())
    }
    .await;
    client.batch_execute(if result.is_ok() { "COMMIT" } else { "ROLLBACK" }).await?;
    result
}

/// The latest state per driver, the named cursors and the revocations —
/// small, and written over whatever an interrupted run left.
async fn copy_state(client: &Client, read: &rusqlite::Transaction<'_>) -> Result<(), StorageError> {
    client.batch_execute("BEGIN").await?;
    let result = async {
        client
            .batch_execute(
                "DELETE FROM names; DELETE FROM labels; DELETE FROM drivers; DELETE FROM cursors;
                 DELETE FROM revocations;",
            )
            .await?;
        // The interned numbers, kept: the events copied name drivers and labels by them.
        let mut names = read.prepare("SELECT ix, driver_id FROM names")?;
        for row in names.query_map([], |r| Ok((r.get::<_, i32>(0)?, r.get::<_, String>(1)?)))? {
            let (ix, driver) = row?;
            client.execute("INSERT INTO names (ix, driver_id) VALUES ($1, $2)", &[&ix, &driver]).await?;
        }
        let mut labels = read.prepare("SELECT ix, email, name FROM labels")?;
        let rows = labels.query_map([], |r| Ok((r.get::<_, i32>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)))?;
        for row in rows {
            let (ix, email, name) = row?;
            client
                .execute("INSERT INTO labels (ix, email, name) VALUES ($1, $2, $3)", &[&ix, &email, &name])
                .await?;
        }
        let mut drivers = read.prepare(
            "SELECT driver_id, lat, lng, recorded_at, effective_at, status, email, last_seen, online FROM drivers",
        )?;
        let rows = drivers.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Option<f64>>(1)?,
                r.get::<_, Option<f64>>(2)?,
                r.get::<_, Option<i64>>(3)?,
                r.get::<_, Option<i64>>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, Option<String>>(6)?,
                r.get::<_, i64>(7)?,
                r.get::<_, bool>(8)?,
            ))
        })?;
        for row in rows {
            let (id, lat, lng, recorded_at, effective_at, status, email, last_seen, online) = row?;
            client
                .execute(
                    "INSERT INTO drivers (driver_id, lat, lng, recorded_at, effective_at, status, email, last_seen, online)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                    &[&id, &lat, &lng, &recorded_at, &effective_at, &status, &email, &last_seen, &online],
                )
                .await?;
        }
        let mut cursors = read.prepare("SELECT name, seq FROM cursors")?;
        for row in cursors.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
            let (name, seq) = row?;
            client.execute("INSERT INTO cursors (name, seq) VALUES ($1, $2)", &[&name, &seq]).await?;
        }
        let mut revocations = read.prepare("SELECT kind, key, at_secs, until_secs FROM revocations")?;
        let rows = revocations.query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?, r.get::<_, i64>(3)?))
        })?;
        for row in rows {
            let (kind, key, at, until) = row?;
            client
                .execute(
                    "INSERT INTO revocations (kind, key, at_secs, until_secs) VALUES ($1, $2, $3, $4)",
                    &[&kind, &key, &at, &until],
                )
                .await?;
        }
        Ok::<_, StorageError>(())
    }
    .await;
    client.batch_execute(if result.is_ok() { "COMMIT" } else { "ROLLBACK" }).await?;
    result
}
