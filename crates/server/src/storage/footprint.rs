//! `wecare-rt bench-store` (issue 17): how many bytes the store keeps per
//! fix. A fleet's fixes go through the real append path (dedup, the marker
//! rule, the group commit) in batches as the sequencer makes them; then the
//! store's size — tables and indexes — is divided by the fixes stored.
//!
//! The fixes look like the field's: a 128-bit hex id (the Rust SDK's) or a
//! UUID (the browser's), full-precision coordinates, accuracy, heading and
//! speed, the sender's email and name from its token, and a status each
//! driver reported once.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wecare_proto::{DriverId, DriverStatus, MessageId};

use super::postgres::{PgLog, parse_url};
use super::sqlite::{FILE_NAME, SqliteLog};
use super::{EventLog, StorageError};
use crate::clock::now_ms;
use crate::domain::event::{NewEvent, Sender};
use crate::domain::validate::{Fix, StatusChange};

/// Fixes per append (about what the sequencer groups at a few thousand fixes/s).
const BATCH: usize = 500;

/// Where the fixes go.
#[derive(Debug, Clone)]
pub enum FootprintTarget {
    /// A new embedded store in this (empty) folder.
    Embedded(std::path::PathBuf),
    /// An empty PostgreSQL database.
    Postgres(String),
}

/// What the measurement found.
#[derive(Debug, Clone)]
pub struct FootprintReport {
    /// Fixes stored.
    pub fixes: u64,
    /// Bytes of the events, their indexes and what they refer to.
    pub bytes: u64,
    /// How long appending took.
    pub took: Duration,
}

impl FootprintReport {
    /// Bytes per stored fix.
    #[must_use]
    pub fn per_fix(&self) -> f64 {
        self.bytes as f64 / self.fixes.max(1) as f64
    }
}

/// Stores `fixes` fixes from `drivers` drivers in `target` and measures it,
/// telling `progress` the fixes stored so far.
///
/// # Errors
/// The store cannot be opened or written, or the target is not empty.
pub async fn measure_footprint(
    target: &FootprintTarget,
    fixes: u64,
    drivers: u32,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<FootprintReport, StorageError> {
    let log: Arc<dyn EventLog> = match target {
        FootprintTarget::Embedded(dir) => Arc::new(SqliteLog::open(dir, Arc::new(crate::storage::NoSockets))?),
        FootprintTarget::Postgres(url) => Arc::new(PgLog::open(&parse_url(url)?).await?),
    };
    if log.head().0 != 0 {
        return Err(StorageError::Config("the target store is not empty".into()));
    }
    let drivers = drivers.max(1);
    let senders: Vec<Sender> = (0..drivers)
        .map(|d| Sender {
            driver: DriverId::new(format!("drv-{d:05}")),
            email: Some(format!("driver{d}@wecare.example").into()),
            name: Some(format!("Driver {d}").into()),
        })
        .collect();
    let start = now_ms() - 86_400_000;
    let statuses: Vec<NewEvent> = senders
        .iter()
        .map(|s| NewEvent::status(s.clone(), StatusChange { id: None, status: DriverStatus::Busy }, start))
        .collect();
    for chunk in statuses.chunks(BATCH) {
        log.append(chunk.to_vec()).await?;
    }
    let began = Instant::now();
    // A fixed seed: the same fleet every run.
    let mut rng: u64 = 7;
    let mut done = 0u64;
    while done < fixes {
        let n = (fixes - done).min(BATCH as u64);
        let batch: Vec<NewEvent> = (done..done + n)
            .map(|i| {
                let d = (i % u64::from(drivers)) as usize;
                let at = start + (i / u64::from(drivers)) as i64 * 1000;
                let fix = Fix {
                    id: Some(random_id(&mut rng, i % 2 == 0)),
                    lat: 13.5 + unit(&mut rng),
                    lng: 100.3 + unit(&mut rng),
                    recorded_at: at,
                    adjusted: false,
                    status: None,
                    accuracy: Some((unit(&mut rng) * 30.0).round() + 3.0),
                    heading: Some((unit(&mut rng) * 360.0).round()),
                    speed: Some((unit(&mut rng) * 200.0).round() / 10.0),
                };
                NewEvent::location(senders[d].clone(), fix, at + 150)
            })
            .collect();
        log.append(batch).await?;
        done += n;
        progress(done);
    }
    let took = began.elapsed();
    let bytes = match target {
        FootprintTarget::Embedded(dir) => {
            drop(log);
            embedded_bytes(dir)?
        }
        FootprintTarget::Postgres(url) => postgres_bytes(url).await?,
    };
    Ok(FootprintReport { fixes, bytes, took })
}

/// The file's size once the write-ahead log is folded in.
fn embedded_bytes(dir: &Path) -> Result<u64, StorageError> {
    let conn = rusqlite::Connection::open(dir.join(FILE_NAME))?;
    conn.pragma_update(None, "wal_checkpoint", "TRUNCATE")?;
    let pages: i64 = conn.pragma_query_value(None, "page_count", |r| r.get(0))?;
    let free: i64 = conn.pragma_query_value(None, "freelist_count", |r| r.get(0))?;
    let size: i64 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
    Ok(((pages - free) * size).max(0) as u64)
}

/// The events table with its indexes and TOAST, and every table it refers to.
async fn postgres_bytes(url: &str) -> Result<u64, StorageError> {
    let (client, connection) = parse_url(url)?.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    client.batch_execute("VACUUM ANALYZE").await?;
    let row = client
        .query_one(
            "SELECT SUM(pg_total_relation_size(c.oid))::bigint FROM pg_class c
             WHERE c.relkind = 'r' AND c.relname = ANY(ARRAY['events', 'names', 'labels'])
               AND c.relnamespace = 'public'::regnamespace",
            &[],
        )
        .await?;
    let bytes: Option<i64> = row.get(0);
    Ok(bytes.unwrap_or(0).max(0) as u64)
}

/// A small deterministic generator (xorshift64*; the state must not be 0).
fn next(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

/// In `[0, 1)`.
fn unit(state: &mut u64) -> f64 {
    (next(state) >> 11) as f64 / (1u64 << 53) as f64
}

/// A 32-character hex id, or (`uuid`) a hyphenated UUID as browsers make.
fn random_id(state: &mut u64, uuid: bool) -> MessageId {
    let hex = format!("{:016x}{:016x}", next(state), next(state));
    let id = if uuid {
        format!("{}-{}-4{}-a{}-{}", &hex[..8], &hex[8..12], &hex[13..16], &hex[17..20], &hex[20..32])
    } else {
        hex
    };
    MessageId::parse(id).expect("36 characters at most is a valid id")
}
