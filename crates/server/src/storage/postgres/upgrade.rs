//! Creating or upgrading the cluster's schema: one node at a time (an
//! advisory lock), in one transaction, so nodes starting together agree and
//! a crash mid-upgrade leaves the old schema as it was.

use tokio_postgres::Client;

use super::rows::{self, InternStatements, Interned};
use super::{SCHEMA_SQL, new_stream_id};
use crate::storage::StorageError;
use crate::storage::legacy::{self, LegacyRow};

/// The schema this version writes. 2: v1.3 (no invented statuses); 3:
/// typed event columns (issue 17).
pub(crate) const SCHEMA_VERSION: i32 = 3;
/// Old rows converted per round of the v3 step.
const CHUNK: i64 = 10_000;

/// Creates the schema, or brings an older one to [`SCHEMA_VERSION`].
///
/// # Errors
/// The database holds a newer schema, or a statement fails (nothing changed).
pub(super) async fn run(client: &Client) -> Result<(), StorageError> {
    client.batch_execute("BEGIN; SELECT pg_advisory_xact_lock(87326501);").await?;
    let result = steps(client).await;
    let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
    client.batch_execute(end).await?;
    result
}

async fn steps(client: &Client) -> Result<(), StorageError> {
    let has_stream: bool = client.query_one("SELECT to_regclass('public.stream') IS NOT NULL", &[]).await?.get(0);
    let version: Option<i32> = if has_stream {
        client.query_opt("SELECT schema_version FROM stream WHERE id = 1", &[]).await?.map(|r| r.get(0))
    } else {
        None
    };
    match version {
        Some(v) if v > SCHEMA_VERSION => {
            return Err(StorageError::Corrupt(format!("schema version {v} is newer than this server")));
        }
        Some(v) if v < SCHEMA_VERSION => {
            if v < 2 {
                client.batch_execute(crate::storage::FORGET_INVENTED_STATUSES).await?;
            }
            if v < 3 {
                typed_events(client).await?;
            }
            client.batch_execute(SCHEMA_SQL).await?;
            client.execute("UPDATE stream SET schema_version = $1 WHERE id = 1", &[&SCHEMA_VERSION]).await?;
        }
        Some(_) => client.batch_execute(SCHEMA_SQL).await?,
        None => {
            client.batch_execute(SCHEMA_SQL).await?;
            client
                .execute(
                    "INSERT INTO stream (id, stream_id, head, schema_version) VALUES (1, $1, 0, $2)",
                    &[&new_stream_id(), &SCHEMA_VERSION],
                )
                .await?;
        }
    }
    Ok(())
}

/// v3 (issue 17): the stream in typed columns instead of the watcher JSON.
async fn typed_events(client: &Client) -> Result<(), StorageError> {
    client
        .batch_execute(
            "ALTER TABLE events RENAME TO events_legacy;
             DROP INDEX events_dedup; DROP INDEX events_track; DROP INDEX events_received;
             ALTER INDEX events_pkey RENAME TO events_legacy_pkey;",
        )
        .await?;
    client.batch_execute(SCHEMA_SQL).await?;
    let total: i64 = client.query_one("SELECT COUNT(*) FROM events_legacy", &[]).await?.get(0);
    tracing::info!(events = total, "upgrading the stream to typed columns (schema 3)");
    let statements = InternStatements::prepare(client).await?;
    let read = client
        .prepare(&format!("SELECT {} FROM events_legacy WHERE seq > $1 ORDER BY seq LIMIT $2", legacy::COLUMNS))
        .await?;
    // Numbers given here commit with the upgrade or not at all: a private cache.
    let cache = std::sync::Mutex::new(Interned::default());
    let mut after = i64::MIN;
    loop {
        let old = client.query(&read, &[&after, &CHUNK]).await?;
        let Some(last) = old.last() else {
            break;
        };
        after = last.get(0);
        let converted: Vec<_> = old
            .iter()
            .map(|r| {
                legacy::convert(LegacyRow {
                    seq: r.get(0),
                    kind: i64::from(r.get::<_, i16>(1)),
                    driver_id: r.get(2),
                    msg_id: r.get(3),
                    recorded_at: r.get(4),
                    received_at: r.get(5),
                    body: r.get(6),
                })
            })
            .collect();
        let drivers = converted.iter().filter_map(|r| r.driver_id.as_ref().map(wecare_proto::DriverId::as_str));
        let mut learned = rows::drivers(client, &statements, &cache, drivers).await?;
        rows::insert(client, &statements, &cache, &mut learned, &converted).await?;
        cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner).merge(learned);
    }
    client.batch_execute("DROP TABLE events_legacy").await?;
    Ok(())
}
