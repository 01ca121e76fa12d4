//! Opening a store written by an older version: each schema step runs
//! once, in order, inside the transaction that opens the store, so a crash
//! mid-upgrade leaves the old store as it was.

use rusqlite::Transaction;

use super::rows::Interned;
use crate::storage::StorageError;
use crate::storage::legacy::{self, LegacyRow};

/// The schema this version writes.
pub(super) const SCHEMA_VERSION: i64 = 6;
/// Old rows converted per statement of the v6 step (bounded memory).
const CHUNK: i64 = 10_000;

/// Brings the store at `version` (0: new) to [`SCHEMA_VERSION`]; says
/// whether it rewrote the stream (then the file has the old rows' space
/// free inside it: [`reclaim`] after the commit gives it back).
pub(super) fn run(tx: &Transaction<'_>, version: i64) -> Result<bool, StorageError> {
    if version > SCHEMA_VERSION {
        return Err(StorageError::Corrupt(format!("schema version {version} is newer than this server")));
    }
    // Creates what is missing; an old store keeps its old `events` until v6 below.
    tx.execute_batch(include_str!("schema.sql"))?;
    if version == 1 {
        // v2: presence is part of the persisted latest state.
        tx.execute_batch("ALTER TABLE drivers ADD COLUMN online INTEGER NOT NULL DEFAULT 0")?;
    }
    if (1..5).contains(&version) {
        tx.execute_batch(crate::storage::FORGET_INVENTED_STATUSES)?;
    }
    let rewrote = (1..6).contains(&version);
    if rewrote {
        typed_events(tx)?;
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    Ok(rewrote)
}

/// Gives the disk the space the old rows left (a rewrite of the file,
/// atomic like a commit; outside any transaction).
pub(super) fn reclaim(conn: &rusqlite::Connection) -> Result<(), StorageError> {
    let started = std::time::Instant::now();
    conn.execute_batch("VACUUM")?;
    conn.pragma_update(None, "wal_checkpoint", "TRUNCATE")?;
    tracing::info!(took_ms = started.elapsed().as_millis() as u64, "the upgraded store was compacted");
    Ok(())
}

/// v6 (issue 17): the stream in typed columns instead of the watcher JSON.
fn typed_events(tx: &Transaction<'_>) -> Result<(), StorageError> {
    tx.execute_batch(
        "ALTER TABLE events RENAME TO events_legacy;
         DROP INDEX events_dedup; DROP INDEX events_track; DROP INDEX events_received;",
    )?;
    tx.execute_batch(include_str!("schema.sql"))?;
    let total: i64 = tx.query_row("SELECT COUNT(*) FROM events_legacy", [], |r| r.get(0))?;
    tracing::info!(events = total, "upgrading the store to typed columns (schema 6)");
    let mut interned = Interned::default();
    let mut after = i64::MIN;
    let mut done = 0i64;
    loop {
        let rows: Vec<LegacyRow> = {
            let mut stmt = tx.prepare_cached(&format!(
                "SELECT {} FROM events_legacy WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                legacy::COLUMNS
            ))?;
            let rows = stmt.query_map([after, CHUNK], |r| {
                Ok(LegacyRow {
                    seq: r.get(0)?,
                    kind: r.get(1)?,
                    driver_id: r.get(2)?,
                    msg_id: r.get(3)?,
                    recorded_at: r.get(4)?,
                    received_at: r.get(5)?,
                    body: r.get(6)?,
                })
            })?;
            rows.collect::<Result<_, _>>()?
        };
        let Some(last) = rows.last() else {
            break;
        };
        after = last.seq;
        done += rows.len() as i64;
        let mut insert = tx.prepare_cached(super::rows::INSERT)?;
        for row in rows {
            interned.insert(tx, &mut insert, &legacy::convert(row))?;
        }
        if done % 100_000 < CHUNK {
            tracing::info!(done, total, "upgrading the store");
        }
    }
    tx.execute_batch("DROP TABLE events_legacy")?;
    Ok(())
}
