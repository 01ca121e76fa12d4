//! The embedded store's `events` rows (issue 17): typed columns, the
//! driver and the sender's label interned as numbers. Only the writer
//! thread inserts, so the interned numbers it learns are cached; a cache
//! entry made inside a transaction that then failed would name a row that
//! does not exist, so the writer drops the cache with the transaction.

use std::collections::HashMap;
use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension, params};

use crate::storage::StorageError;
use crate::storage::row::EventColumns;
use wecare_proto::DriverId;

/// The columns every event read selects, in [`read`]'s order.
pub(super) const SELECT: &str = "SELECT e.seq, e.kind, n.driver_id, l.email, l.name, e.msg_id, e.recorded_at,
        e.received_at, e.lat, e.lng, e.accuracy, e.heading, e.speed, e.status, e.flags
    FROM events e LEFT JOIN names n ON n.ix = e.driver LEFT JOIN labels l ON l.ix = e.label";

/// One selected row.
pub(super) fn read(r: &rusqlite::Row<'_>) -> rusqlite::Result<EventColumns> {
    Ok(EventColumns {
        seq: r.get(0)?,
        kind: r.get(1)?,
        driver_id: r.get::<_, Option<String>>(2)?.map(DriverId::new),
        email: r.get::<_, Option<String>>(3)?.map(Arc::from),
        name: r.get::<_, Option<String>>(4)?.map(Arc::from),
        msg_id: r.get(5)?,
        recorded_at: r.get(6)?,
        received_at: r.get(7)?,
        lat: r.get(8)?,
        lng: r.get(9)?,
        accuracy: r.get(10)?,
        heading: r.get(11)?,
        speed: r.get(12)?,
        status: r.get(13)?,
        flags: r.get(14)?,
    })
}

/// The writer's interned numbers of drivers and labels.
#[derive(Debug, Default)]
pub(super) struct Interned {
    drivers: HashMap<String, i64>,
    /// By email, then name: looked up by `&str`, so a known label costs no copy.
    labels: HashMap<String, HashMap<String, i64>>,
}

impl Interned {
    /// Forgets everything (after a failed transaction).
    pub(super) fn clear(&mut self) {
        self.drivers.clear();
        self.labels.clear();
    }

    /// The driver's number, if it has one (no row of an unknown driver exists).
    pub(super) fn known_driver(&mut self, conn: &Connection, driver: &str) -> Result<Option<i64>, StorageError> {
        if let Some(ix) = self.drivers.get(driver) {
            return Ok(Some(*ix));
        }
        let ix: Option<i64> = conn
            .prepare_cached("SELECT ix FROM names WHERE driver_id = ?1")?
            .query_row([driver], |r| r.get(0))
            .optional()?;
        if let Some(ix) = ix {
            self.drivers.insert(driver.to_string(), ix);
        }
        Ok(ix)
    }

    fn driver(&mut self, conn: &Connection, driver: &str) -> Result<i64, StorageError> {
        if let Some(ix) = self.known_driver(conn, driver)? {
            return Ok(ix);
        }
        conn.prepare_cached("INSERT INTO names (driver_id) VALUES (?1)")?.execute([driver])?;
        let ix = conn.last_insert_rowid();
        self.drivers.insert(driver.to_string(), ix);
        Ok(ix)
    }

    fn label(&mut self, conn: &Connection, email: &str, name: &str) -> Result<i64, StorageError> {
        if let Some(ix) = self.labels.get(email).and_then(|names| names.get(name)) {
            return Ok(*ix);
        }
        let found: Option<i64> = conn
            .prepare_cached("SELECT ix FROM labels WHERE email = ?1 AND name = ?2")?
            .query_row([email, name], |r| r.get(0))
            .optional()?;
        let ix = match found {
            Some(ix) => ix,
            None => {
                conn.prepare_cached("INSERT INTO labels (email, name) VALUES (?1, ?2)")?.execute([email, name])?;
                conn.last_insert_rowid()
            }
        };
        self.labels.entry(email.to_string()).or_default().insert(name.to_string(), ix);
        Ok(ix)
    }

    /// Inserts `row` (its driver and label interned as needed); `false`
    /// when the store already holds an event of this driver with this id.
    /// `insert` is [`INSERT`], prepared by the caller once per transaction:
    /// rusqlite's cache allocates each time it takes a statement back.
    pub(super) fn insert(
        &mut self,
        conn: &Connection,
        insert: &mut rusqlite::Statement<'_>,
        row: &EventColumns,
    ) -> Result<bool, StorageError> {
        let driver = self.driver(conn, row.driver_id.as_ref().map_or("", DriverId::as_str))?;
        let label = row.label().map(|(email, name)| self.label(conn, email, name)).transpose()?;
        let inserted = insert.execute(params![
            row.seq,
            row.kind,
            driver,
            label,
            row.msg_id,
            row.recorded_at,
            row.received_at,
            row.lat,
            row.lng,
            row.accuracy,
            row.heading,
            row.speed,
            row.status,
            row.flags
        ])?;
        Ok(inserted == 1)
    }
}

/// An event row, or nothing when its (driver, id) is stored already.
pub(super) const INSERT: &str =
    "INSERT INTO events (seq, kind, driver, label, msg_id, recorded_at, received_at, lat, lng,
     accuracy, heading, speed, status, flags)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
     ON CONFLICT (driver, msg_id) DO NOTHING";
