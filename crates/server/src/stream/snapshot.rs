//! The `drivers:snapshot` / `GET /api/realtime/latest` payload, and the
//! one copy of it every reader shares.

use std::sync::{Arc, Mutex};

use serde_json::value::RawValue;
use wecare_proto::Seq;
use wecare_proto::payload::{DriversSnapshot, SnapshotDriver};

use crate::clock::iso;
use crate::storage::{EventLog, Snapshot, StorageError};

/// A snapshot, encoded once.
#[derive(Debug)]
pub(crate) struct EncodedSnapshot {
    pub(crate) seq: Seq,
    /// `{ streamId, seq, drivers }`, shared by reference (a REST answer
    /// takes a clone of the handle, not of the bytes).
    pub(crate) json: bytes::Bytes,
}

impl EncodedSnapshot {
    /// The JSON as a raw value, to emit without parsing it again.
    pub(crate) fn raw(&self) -> &RawValue {
        serde_json::from_slice(&self.json).expect("encoded from a serializable payload")
    }
}

/// The snapshot every reader shares (issue 19): a new one is built — read
/// on the store's reader, encoded off the runtime — only when the stream has
/// moved on since the current one, by one reader at a time; every request
/// that arrives meanwhile waits for that build and shares it. So a loop of
/// `GET /api/realtime/latest` costs at most one build at a time, never the
/// store's writer, and an answer always holds every event acked before the
/// request (read-your-writes: an officer who just saw an ack finds it).
#[derive(Debug, Default)]
pub(crate) struct SnapshotCache {
    current: Mutex<Option<Arc<EncodedSnapshot>>>,
    building: tokio::sync::Mutex<()>,
}

impl SnapshotCache {
    /// The current snapshot of `log`.
    ///
    /// # Errors
    /// The store could not be read.
    pub(crate) async fn get(&self, log: &dyn EventLog) -> Result<Arc<EncodedSnapshot>, StorageError> {
        if let Some(s) = self.usable(log) {
            return Ok(s);
        }
        let _building = self.building.lock().await;
        if let Some(s) = self.usable(log) {
            return Ok(s);
        }
        let p = payload(log.stream_id(), log.snapshot().await?);
        // Tens of megabytes for a large fleet: not on a runtime thread.
        let encoded = tokio::task::spawn_blocking(move || serde_json::to_vec(&p).map(|json| (p.seq, json)))
            .await
            .map_err(|e| StorageError::Corrupt(e.to_string()))?;
        let (seq, json) = encoded.map_err(|e| StorageError::Corrupt(e.to_string()))?;
        let snap = Arc::new(EncodedSnapshot { seq, json: json.into() });
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::clone(&snap));
        Ok(snap)
    }

    /// The current snapshot, if nothing was committed since it was read.
    fn usable(&self, log: &dyn EventLog) -> Option<Arc<EncodedSnapshot>> {
        let current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        current.as_ref().filter(|snap| snap.seq >= log.head()).map(Arc::clone)
    }
}

/// The snapshot as of `snap.seq`; `online` is what the stream said up to
/// that `seq`, so a snapshot and the events after it always agree.
pub(crate) fn payload(stream_id: &str, snap: Snapshot) -> DriversSnapshot {
    let mut drivers: Vec<SnapshotDriver> = snap
        .drivers
        .into_iter()
        .map(|(id, s)| SnapshotDriver {
            online: s.online,
            driver_id: id.as_str().to_string(),
            lat: s.position.map(|p| p.lat),
            lng: s.position.map(|p| p.lng),
            recorded_at: s.position.map(|p| iso(p.recorded_at)),
            status: s.status,
            last_seen: iso(s.last_seen),
        })
        .collect();
    drivers.sort_by(|a, b| a.driver_id.cmp(&b.driver_id));
    DriversSnapshot { stream_id: stream_id.to_string(), seq: snap.seq, drivers }
}
