//! The driver's durable outbox: every fix is stored here, under a fresh id,
//! before it is sent, and leaves only when the server has acked it (or
//! refused it for good, into the dead-letter table).
//!
//! [`SqliteOutbox`] is the durable implementation (one file, WAL,
//! `synchronous=FULL`); [`MemoryOutbox`] keeps the same contract in RAM for
//! tests and for apps that accept losing fixes with the process.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;

use crate::backoff::random_id;

/// A stored fix waiting for its ack.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEntry {
    /// The message id (also in `payload.id`): the server's dedup key.
    pub id: String,
    /// The `location:update` payload, `id` included.
    pub payload: Value,
    /// When it was stored, epoch milliseconds.
    pub created_at_ms: i64,
}

/// A fix the server refused as non-retryable; it is never sent again.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// The message id.
    pub id: String,
    /// The payload as it was sent.
    pub payload: Value,
    /// The server's error code, e.g. `INVALID_COORDINATES`.
    pub code: String,
    /// The server's message, for humans.
    pub message: String,
    /// When it was parked, epoch milliseconds.
    pub parked_at_ms: i64,
}

/// Counters of an outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OutboxStats {
    /// Fixes waiting for an ack.
    pub pending: u64,
    /// Fixes in the dead-letter table.
    pub dead_letters: u64,
    /// Fixes discarded unsent by the [`OutboxLimits`] (over the count, or
    /// older than the age limit), since the outbox was created.
    pub dropped: u64,
}

/// Bounds of an outbox. When a new fix would exceed `max_entries`, the
/// **oldest** pending fixes are discarded (the newest position matters most)
/// and counted in [`OutboxStats::dropped`]; fixes older than `max_age` are
/// discarded the same way. Both are enforced when a fix is appended and when
/// the outbox is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxLimits {
    /// Most pending fixes kept. Defaults to 100 000 (about 28 h at one fix per second).
    pub max_entries: usize,
    /// Oldest fix kept. Defaults to 24 h, the server's default retention:
    /// an older fix would not be in the stream for long anyway.
    pub max_age: Duration,
}

impl Default for OutboxLimits {
    fn default() -> Self {
        Self { max_entries: 100_000, max_age: Duration::from_secs(24 * 3600) }
    }
}

/// Why the outbox failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutboxError {
    /// The SQLite file could not be opened, read or written.
    #[error("outbox storage error: {0}")]
    Storage(#[from] rusqlite::Error),
    /// A payload that is not a JSON object.
    #[error("outbox payload must be a JSON object")]
    NotAnObject,
    /// A stored payload could not be decoded (the file was edited or corrupted).
    #[error("outbox entry {id} is corrupt: {source}")]
    Corrupt {
        /// The entry's id.
        id: String,
        /// Why it could not be decoded.
        source: serde_json::Error,
    },
}

/// A durable queue of outgoing fixes. Methods block (disk I/O): async
/// callers run them on a blocking thread, as [`Driver`](crate::Driver) does.
///
/// Contract: `push` stores the payload under a fresh random id before it
/// returns; `peek` returns the **newest** pending entry first, then the rest
/// oldest-first (after an outage the live position goes out first and the
/// backlog follows in recording order); `remove` and `park` are idempotent
/// and ignore unknown ids.
pub trait Outbox: Send + Sync + std::fmt::Debug {
    /// Stores `payload` (a JSON object) with a fresh id; returns the id.
    ///
    /// # Errors
    /// [`OutboxError::NotAnObject`], or a storage error.
    fn push(&self, payload: Value) -> Result<String, OutboxError> {
        self.push_at(payload, now_ms())
    }

    /// [`push`](Self::push) with an explicit clock, for the age limit.
    ///
    /// # Errors
    /// As [`push`](Self::push).
    fn push_at(&self, payload: Value, now_ms: i64) -> Result<String, OutboxError>;

    /// Up to `max` pending entries: the newest first, then oldest-first.
    ///
    /// # Errors
    /// A storage error or a corrupt entry.
    fn peek(&self, max: usize) -> Result<Vec<OutboxEntry>, OutboxError>;

    /// Removes acked entries.
    ///
    /// # Errors
    /// A storage error.
    fn remove(&self, ids: &[String]) -> Result<(), OutboxError>;

    /// Moves an entry to the dead-letter table with the server's reason.
    ///
    /// # Errors
    /// A storage error.
    fn park(&self, id: &str, code: &str, message: &str) -> Result<(), OutboxError>;

    /// The dead letters, oldest first.
    ///
    /// # Errors
    /// A storage error or a corrupt entry.
    fn dead_letters(&self) -> Result<Vec<DeadLetter>, OutboxError>;

    /// Empties the dead-letter table (the app has read and handled it).
    ///
    /// # Errors
    /// A storage error.
    fn clear_dead_letters(&self) -> Result<(), OutboxError>;

    /// Current counters.
    ///
    /// # Errors
    /// A storage error.
    fn stats(&self) -> Result<OutboxStats, OutboxError>;
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn with_id(payload: Value, id: &str) -> Result<Value, OutboxError> {
    let Value::Object(mut map) = payload else {
        return Err(OutboxError::NotAnObject);
    };
    map.insert("id".to_owned(), Value::String(id.to_owned()));
    Ok(Value::Object(map))
}

fn max_age_ms(limits: &OutboxLimits) -> i64 {
    i64::try_from(limits.max_age.as_millis()).unwrap_or(i64::MAX)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

const SCHEMA: &str = "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = FULL;
CREATE TABLE IF NOT EXISTS outbox (
    pos INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    payload TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letters (
    pos INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    payload TEXT NOT NULL,
    code TEXT NOT NULL,
    message TEXT NOT NULL,
    parked_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
";

/// The durable outbox: one SQLite file. Several handles (or processes) may
/// open the same file; SQLite serializes them.
#[derive(Debug)]
pub struct SqliteOutbox {
    conn: Mutex<Connection>,
    limits: OutboxLimits,
}

impl SqliteOutbox {
    /// Opens (or creates) the outbox at `path` and enforces `limits` once.
    ///
    /// # Errors
    /// When the file cannot be opened or its schema created.
    pub fn open(path: impl AsRef<Path>, limits: OutboxLimits) -> Result<Self, OutboxError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.execute_batch(SCHEMA)?;
        let outbox = Self { conn: Mutex::new(conn), limits };
        {
            let mut conn = lock(&outbox.conn);
            let tx = conn.transaction()?;
            enforce_limits(&tx, &outbox.limits, now_ms())?;
            tx.commit()?;
        }
        Ok(outbox)
    }
}

fn enforce_limits(tx: &rusqlite::Transaction<'_>, limits: &OutboxLimits, now: i64) -> Result<(), OutboxError> {
    let expired = tx.execute("DELETE FROM outbox WHERE created_ms < ?1", [now.saturating_sub(max_age_ms(limits))])?;
    let count: i64 = tx.query_row("SELECT COUNT(*) FROM outbox", [], |r| r.get(0))?;
    let max = i64::try_from(limits.max_entries).unwrap_or(i64::MAX);
    let mut evicted = 0;
    if count > max {
        evicted = tx.execute(
            "DELETE FROM outbox WHERE pos IN (SELECT pos FROM outbox ORDER BY pos ASC LIMIT ?1)",
            [count - max],
        )?;
    }
    let dropped = i64::try_from(expired + evicted).unwrap_or(i64::MAX);
    if dropped > 0 {
        tracing::warn!(expired, evicted, "outbox limits discarded unsent fixes");
        tx.execute(
            "INSERT INTO counters (name, value) VALUES ('dropped', ?1)
             ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
            [dropped],
        )?;
    }
    Ok(())
}

fn decode(id: String, payload: &str) -> Result<Value, OutboxError> {
    serde_json::from_str(payload).map_err(|source| OutboxError::Corrupt { id, source })
}

impl Outbox for SqliteOutbox {
    fn push_at(&self, payload: Value, now_ms: i64) -> Result<String, OutboxError> {
        let id = random_id();
        let payload = with_id(payload, &id)?;
        let text = payload.to_string();
        let mut conn = lock(&self.conn);
        let tx = conn.transaction()?;
        tx.execute("INSERT INTO outbox (id, payload, created_ms) VALUES (?1, ?2, ?3)", params![id, text, now_ms])?;
        enforce_limits(&tx, &self.limits, now_ms)?;
        tx.commit()?;
        Ok(id)
    }

    fn peek(&self, max: usize) -> Result<Vec<OutboxEntry>, OutboxError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let conn = lock(&self.conn);
        let row = |r: &rusqlite::Row<'_>| -> rusqlite::Result<(i64, String, String, i64)> {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        };
        let newest = conn
            .query_row("SELECT pos, id, payload, created_ms FROM outbox ORDER BY pos DESC LIMIT 1", [], row)
            .optional()?;
        let Some(newest) = newest else {
            return Ok(Vec::new());
        };
        let mut rows = vec![newest.clone()];
        let rest = i64::try_from(max - 1).unwrap_or(i64::MAX);
        let mut stmt = conn.prepare_cached(
            "SELECT pos, id, payload, created_ms FROM outbox WHERE pos < ?1 ORDER BY pos ASC LIMIT ?2",
        )?;
        for r in stmt.query_map(params![newest.0, rest], row)? {
            rows.push(r?);
        }
        rows.into_iter()
            .map(|(_, id, payload, created_at_ms)| {
                let payload = decode(id.clone(), &payload)?;
                Ok(OutboxEntry { id, payload, created_at_ms })
            })
            .collect()
    }

    fn remove(&self, ids: &[String]) -> Result<(), OutboxError> {
        let mut conn = lock(&self.conn);
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached("DELETE FROM outbox WHERE id = ?1")?;
            for id in ids {
                stmt.execute([id])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn park(&self, id: &str, code: &str, message: &str) -> Result<(), OutboxError> {
        let mut conn = lock(&self.conn);
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT OR IGNORE INTO dead_letters (id, payload, code, message, parked_ms)
             SELECT id, payload, ?2, ?3, ?4 FROM outbox WHERE id = ?1",
            params![id, code, message, now_ms()],
        )?;
        tx.execute("DELETE FROM outbox WHERE id = ?1", [id])?;
        tx.commit()?;
        Ok(())
    }

    fn dead_letters(&self) -> Result<Vec<DeadLetter>, OutboxError> {
        let conn = lock(&self.conn);
        let mut stmt =
            conn.prepare_cached("SELECT id, payload, code, message, parked_ms FROM dead_letters ORDER BY pos ASC")?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))?;
        let mut out = Vec::new();
        for r in rows {
            let (id, payload, code, message, parked_at_ms) = r?;
            let payload = decode(id.clone(), &payload)?;
            out.push(DeadLetter { id, payload, code, message, parked_at_ms });
        }
        Ok(out)
    }

    fn clear_dead_letters(&self) -> Result<(), OutboxError> {
        lock(&self.conn).execute("DELETE FROM dead_letters", [])?;
        Ok(())
    }

    fn stats(&self) -> Result<OutboxStats, OutboxError> {
        let conn = lock(&self.conn);
        let count = |sql: &str| -> Result<u64, OutboxError> {
            let n: i64 = conn.query_row(sql, [], |r| r.get(0))?;
            Ok(u64::try_from(n).unwrap_or(0))
        };
        Ok(OutboxStats {
            pending: count("SELECT COUNT(*) FROM outbox")?,
            dead_letters: count("SELECT COUNT(*) FROM dead_letters")?,
            dropped: count("SELECT COALESCE((SELECT value FROM counters WHERE name = 'dropped'), 0)")?,
        })
    }
}

/// An outbox in RAM: the same contract as [`SqliteOutbox`], minus surviving
/// the process. For tests.
#[derive(Debug, Default)]
pub struct MemoryOutbox {
    state: Mutex<MemoryState>,
    limits: OutboxLimits,
}

#[derive(Debug, Default)]
struct MemoryState {
    pending: VecDeque<OutboxEntry>,
    dead: Vec<DeadLetter>,
    dropped: u64,
}

impl MemoryOutbox {
    /// An empty outbox with `limits`.
    pub fn new(limits: OutboxLimits) -> Self {
        Self { state: Mutex::default(), limits }
    }
}

impl Outbox for MemoryOutbox {
    fn push_at(&self, payload: Value, now_ms: i64) -> Result<String, OutboxError> {
        let id = random_id();
        let payload = with_id(payload, &id)?;
        let mut state = lock(&self.state);
        state.pending.push_back(OutboxEntry { id: id.clone(), payload, created_at_ms: now_ms });
        let oldest_kept = now_ms.saturating_sub(max_age_ms(&self.limits));
        let before = state.pending.len();
        state.pending.retain(|e| e.created_at_ms >= oldest_kept);
        let mut dropped = before - state.pending.len();
        while state.pending.len() > self.limits.max_entries {
            state.pending.pop_front();
            dropped += 1;
        }
        state.dropped += dropped as u64;
        Ok(id)
    }

    fn peek(&self, max: usize) -> Result<Vec<OutboxEntry>, OutboxError> {
        let state = lock(&self.state);
        let Some(newest) = state.pending.back() else {
            return Ok(Vec::new());
        };
        if max == 0 {
            return Ok(Vec::new());
        }
        let backlog = state.pending.len() - 1;
        let mut out = vec![newest.clone()];
        out.extend(state.pending.iter().take(backlog).take(max - 1).cloned());
        Ok(out)
    }

    fn remove(&self, ids: &[String]) -> Result<(), OutboxError> {
        lock(&self.state).pending.retain(|e| !ids.contains(&e.id));
        Ok(())
    }

    fn park(&self, id: &str, code: &str, message: &str) -> Result<(), OutboxError> {
        let mut state = lock(&self.state);
        if let Some(at) = state.pending.iter().position(|e| e.id == id) {
            let entry = state.pending.remove(at).expect("position is in range");
            state.dead.push(DeadLetter {
                id: entry.id,
                payload: entry.payload,
                code: code.to_owned(),
                message: message.to_owned(),
                parked_at_ms: now_ms(),
            });
        }
        Ok(())
    }

    fn dead_letters(&self) -> Result<Vec<DeadLetter>, OutboxError> {
        Ok(lock(&self.state).dead.clone())
    }

    fn clear_dead_letters(&self) -> Result<(), OutboxError> {
        lock(&self.state).dead.clear();
        Ok(())
    }

    fn stats(&self) -> Result<OutboxStats, OutboxError> {
        let state = lock(&self.state);
        Ok(OutboxStats {
            pending: state.pending.len() as u64,
            dead_letters: state.dead.len() as u64,
            dropped: state.dropped,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ids(entries: &[OutboxEntry]) -> Vec<String> {
        entries.iter().map(|e| e.id.clone()).collect()
    }

    /// The contract every implementation keeps.
    fn conformance(outbox: &dyn Outbox) {
        assert!(outbox.peek(10).unwrap().is_empty());
        assert!(matches!(outbox.push(json!([1])), Err(OutboxError::NotAnObject)));
        let a = outbox.push(json!({"lat": 1.0, "lng": 1.0})).unwrap();
        let b = outbox.push(json!({"lat": 2.0, "lng": 2.0})).unwrap();
        let c = outbox.push(json!({"lat": 3.0, "lng": 3.0})).unwrap();
        let d = outbox.push(json!({"lat": 4.0, "lng": 4.0})).unwrap();
        assert_eq!(a.len(), 32);
        let all = outbox.peek(10).unwrap();
        assert_eq!(ids(&all), vec![d.clone(), a.clone(), b.clone(), c.clone()], "newest first, then oldest-first");
        assert_eq!(all[0].payload, json!({"id": d, "lat": 4.0, "lng": 4.0}));
        assert_eq!(ids(&outbox.peek(2).unwrap()), vec![d.clone(), a.clone()]);
        assert_eq!(ids(&outbox.peek(1).unwrap()), vec![d.clone()]);
        assert!(outbox.peek(0).unwrap().is_empty());

        outbox.remove(&[d.clone(), "unknown".to_owned()]).unwrap();
        assert_eq!(ids(&outbox.peek(10).unwrap()), vec![c.clone(), a.clone(), b.clone()]);

        outbox.park(&a, "INVALID_COORDINATES", "lat out of range").unwrap();
        outbox.park("unknown", "X", "y").unwrap();
        let dead = outbox.dead_letters().unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!((dead[0].id.as_str(), dead[0].code.as_str()), (a.as_str(), "INVALID_COORDINATES"));
        assert_eq!(dead[0].message, "lat out of range");
        assert_eq!(dead[0].payload["lat"], json!(1.0));
        assert_eq!(outbox.stats().unwrap(), OutboxStats { pending: 2, dead_letters: 1, dropped: 0 });
        outbox.clear_dead_letters().unwrap();
        assert_eq!(outbox.stats().unwrap().dead_letters, 0);
    }

    fn limits_policy(outbox: &dyn Outbox) {
        // max_entries = 3, max_age = 10 s
        let t0 = 1_000_000;
        let first = outbox.push_at(json!({"n": 1}), t0).unwrap();
        let _ = outbox.push_at(json!({"n": 2}), t0 + 1).unwrap();
        let _ = outbox.push_at(json!({"n": 3}), t0 + 2).unwrap();
        let fourth = outbox.push_at(json!({"n": 4}), t0 + 3).unwrap();
        let stats = outbox.stats().unwrap();
        assert_eq!((stats.pending, stats.dropped), (3, 1), "the oldest is dropped and counted");
        assert!(!ids(&outbox.peek(10).unwrap()).contains(&first));
        // 10 s later everything but the new one has expired.
        let fifth = outbox.push_at(json!({"n": 5}), t0 + 3 + 10_000).unwrap();
        let left = ids(&outbox.peek(10).unwrap());
        assert_eq!(left, vec![fifth, fourth], "t0+3 is exactly at the age limit and kept");
        assert_eq!(outbox.stats().unwrap().dropped, 3);
    }

    fn small_limits() -> OutboxLimits {
        OutboxLimits { max_entries: 3, max_age: Duration::from_secs(10) }
    }

    #[test]
    fn memory_outbox_keeps_the_contract() {
        conformance(&MemoryOutbox::new(OutboxLimits::default()));
        limits_policy(&MemoryOutbox::new(small_limits()));
    }

    #[test]
    fn sqlite_outbox_keeps_the_contract() {
        let dir = tempfile::tempdir().unwrap();
        conformance(&SqliteOutbox::open(dir.path().join("a.sqlite3"), OutboxLimits::default()).unwrap());
        limits_policy(&SqliteOutbox::open(dir.path().join("b.sqlite3"), small_limits()).unwrap());
    }

    #[test]
    fn sqlite_outbox_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.sqlite3");
        let (a, b) = {
            let outbox = SqliteOutbox::open(&path, OutboxLimits::default()).unwrap();
            let a = outbox.push(json!({"lat": 1.0})).unwrap();
            let b = outbox.push(json!({"lat": 2.0})).unwrap();
            outbox.park(&a, "FORBIDDEN", "no").unwrap();
            (a, b)
        };
        let outbox = SqliteOutbox::open(&path, OutboxLimits::default()).unwrap();
        assert_eq!(ids(&outbox.peek(10).unwrap()), vec![b]);
        assert_eq!(outbox.dead_letters().unwrap()[0].id, a);
    }
}
