//! The cluster's `events` rows (issue 17): typed columns, the driver and
//! the sender's label interned as numbers. Numbers are given inside a
//! group commit, under the stream lock, so two nodes never give one twice;
//! a node caches the numbers it has seen committed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Statement};

use crate::storage::StorageError;
use crate::storage::row::EventColumns;
use wecare_proto::DriverId;

/// The columns every event read selects, in [`read`]'s order.
pub(super) const SELECT: &str = "SELECT e.seq, e.kind, n.driver_id, l.email, l.name, e.msg_id, e.recorded_at,
        e.received_at, e.lat, e.lng, e.accuracy, e.heading, e.speed, e.status, e.flags
    FROM events e LEFT JOIN names n ON n.ix = e.driver LEFT JOIN labels l ON l.ix = e.label";

/// One selected row.
pub(super) fn read(r: &tokio_postgres::Row) -> EventColumns {
    EventColumns {
        seq: r.get(0),
        kind: i64::from(r.get::<_, i16>(1)),
        driver_id: r.get::<_, Option<&str>>(2).map(DriverId::new),
        email: r.get::<_, Option<&str>>(3).map(Arc::from),
        name: r.get::<_, Option<&str>>(4).map(Arc::from),
        msg_id: r.get(5),
        recorded_at: r.get(6),
        received_at: r.get(7),
        lat: r.get(8),
        lng: r.get(9),
        accuracy: r.get(10),
        heading: r.get(11),
        speed: r.get(12),
        status: i64::from(r.get::<_, i16>(13)),
        flags: i64::from(r.get::<_, i16>(14)),
    }
}

/// The interning statements, prepared on the writer connection.
pub(super) struct InternStatements {
    find_names: Statement,
    add_names: Statement,
    find_labels: Statement,
    add_labels: Statement,
    insert: Statement,
}

impl InternStatements {
    pub(super) async fn prepare(c: &Client) -> Result<Self, StorageError> {
        Ok(Self {
            find_names: c.prepare("SELECT driver_id, ix FROM names WHERE driver_id = ANY($1)").await?,
            add_names: c
                .prepare(
                    "INSERT INTO names (ix, driver_id)
                     SELECT (SELECT COALESCE(MAX(ix), 0) FROM names) + t.o, t.d
                     FROM unnest($1::text[]) WITH ORDINALITY AS t(d, o) RETURNING driver_id, ix",
                )
                .await?,
            find_labels: c
                .prepare(
                    "SELECT l.email, l.name, l.ix FROM labels l
                     JOIN unnest($1::text[], $2::text[]) AS k(e, n) ON l.email = k.e AND l.name = k.n",
                )
                .await?,
            add_labels: c
                .prepare(
                    "INSERT INTO labels (ix, email, name)
                     SELECT (SELECT COALESCE(MAX(ix), 0) FROM labels) + t.o, t.e, t.n
                     FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS t(e, n, o) RETURNING email, name, ix",
                )
                .await?,
            insert: c
                .prepare(
                    "INSERT INTO events (seq, received_at, recorded_at, lat, lng, accuracy, heading, speed, driver,
                         label, kind, status, flags, msg_id)
                     SELECT * FROM unnest($1::int8[], $2::int8[], $3::int8[], $4::float8[], $5::float8[],
                         $6::float8[], $7::float8[], $8::float8[], $9::int4[], $10::int4[], $11::int2[],
                         $12::int2[], $13::int2[], $14::bytea[])",
                )
                .await?,
        })
    }
}

/// Interned numbers: the node's cache of committed ones, or what one
/// commit learned (merged into the cache once it committed).
#[derive(Debug, Default)]
pub(super) struct Interned {
    drivers: HashMap<String, i32>,
    labels: HashMap<(String, String), i32>,
}

impl Interned {
    pub(super) fn driver(&self, driver: &str) -> Option<i32> {
        self.drivers.get(driver).copied()
    }

    /// Adds what a committed transaction learned.
    pub(super) fn merge(&mut self, learned: Self) {
        self.drivers.extend(learned.drivers);
        self.labels.extend(learned.labels);
    }

    fn label(&self, key: &(String, String)) -> Option<i32> {
        self.labels.get(key).copied()
    }
}

/// The numbers of `drivers` (new ones are given), from `cache` or the database.
pub(super) async fn drivers<'a>(
    c: &Client,
    s: &InternStatements,
    cache: &Mutex<Interned>,
    drivers: impl IntoIterator<Item = &'a str>,
) -> Result<Interned, StorageError> {
    let mut learned = Interned::default();
    let mut missing: Vec<&str> = {
        let cache = cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        drivers
            .into_iter()
            .filter(|d| match cache.driver(d) {
                Some(ix) => {
                    learned.drivers.insert((*d).to_string(), ix);
                    false
                }
                None => true,
            })
            .collect()
    };
    missing.sort_unstable();
    missing.dedup();
    if missing.is_empty() {
        return Ok(learned);
    }
    for r in c.query(&s.find_names, &[&missing]).await? {
        learned.drivers.insert(r.get(0), r.get(1));
    }
    let new: Vec<&str> = missing.into_iter().filter(|d| !learned.drivers.contains_key(*d)).collect();
    if !new.is_empty() {
        for r in c.query(&s.add_names, &[&new]).await? {
            learned.drivers.insert(r.get(0), r.get(1));
        }
    }
    Ok(learned)
}

/// Inserts `rows`, giving their labels numbers as needed; `learned` holds
/// their drivers' numbers (from [`drivers`]) and gains the labels'.
pub(super) async fn insert(
    c: &Client,
    s: &InternStatements,
    cache: &Mutex<Interned>,
    learned: &mut Interned,
    rows: &[EventColumns],
) -> Result<(), StorageError> {
    let mut missing: Vec<(String, String)> = Vec::new();
    {
        let cache = cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for key in rows.iter().filter_map(EventColumns::label) {
            let key = (key.0.to_string(), key.1.to_string());
            if learned.labels.contains_key(&key) {
                continue;
            }
            match cache.label(&key) {
                Some(ix) => _ = learned.labels.insert(key, ix),
                None => missing.push(key),
            }
        }
    }
    missing.sort_unstable();
    missing.dedup();
    if !missing.is_empty() {
        let (emails, names): (Vec<&str>, Vec<&str>) = missing.iter().map(|(e, n)| (e.as_str(), n.as_str())).unzip();
        for r in c.query(&s.find_labels, &[&emails, &names]).await? {
            learned.labels.insert((r.get(0), r.get(1)), r.get(2));
        }
        let (emails, names): (Vec<&str>, Vec<&str>) =
            missing.iter().filter(|k| !learned.labels.contains_key(*k)).map(|(e, n)| (e.as_str(), n.as_str())).unzip();
        if !emails.is_empty() {
            for r in c.query(&s.add_labels, &[&emails, &names]).await? {
                learned.labels.insert((r.get(0), r.get(1)), r.get(2));
            }
        }
    }
    let mut cols = Columns::default();
    for row in rows {
        let driver = row.driver_id.as_ref().and_then(|d| learned.drivers.get(d.as_str()).copied());
        let driver = driver.ok_or_else(|| StorageError::Corrupt("a driver without its number".into()))?;
        let label = row.label().and_then(|(e, n)| learned.labels.get(&(e.to_string(), n.to_string())).copied());
        cols.push(row, driver, label);
    }
    let params: [&(dyn ToSql + Sync); 14] = [
        &cols.seq,
        &cols.received_at,
        &cols.recorded_at,
        &cols.lat,
        &cols.lng,
        &cols.accuracy,
        &cols.heading,
        &cols.speed,
        &cols.driver,
        &cols.label,
        &cols.kind,
        &cols.status,
        &cols.flags,
        &cols.msg_id,
    ];
    c.execute(&s.insert, &params).await?;
    Ok(())
}

/// Event rows as the column arrays `unnest` takes.
#[derive(Default)]
struct Columns<'a> {
    seq: Vec<i64>,
    received_at: Vec<i64>,
    recorded_at: Vec<Option<i64>>,
    lat: Vec<Option<f64>>,
    lng: Vec<Option<f64>>,
    accuracy: Vec<Option<f64>>,
    heading: Vec<Option<f64>>,
    speed: Vec<Option<f64>>,
    driver: Vec<i32>,
    label: Vec<Option<i32>>,
    kind: Vec<i16>,
    status: Vec<i16>,
    flags: Vec<i16>,
    msg_id: Vec<&'a [u8]>,
}

impl<'a> Columns<'a> {
    fn push(&mut self, r: &'a EventColumns, driver: i32, label: Option<i32>) {
        self.seq.push(r.seq);
        self.received_at.push(r.received_at);
        self.recorded_at.push(r.recorded_at);
        self.lat.push(r.lat);
        self.lng.push(r.lng);
        self.accuracy.push(r.accuracy);
        self.heading.push(r.heading);
        self.speed.push(r.speed);
        self.driver.push(driver);
        self.label.push(label);
        // Kinds, statuses and flags are small by construction (row.rs).
        self.kind.push(r.kind as i16);
        self.status.push(r.status as i16);
        self.flags.push(r.flags as i16);
        self.msg_id.push(&r.msg_id);
    }
}
