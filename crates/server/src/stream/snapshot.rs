//! The `drivers:snapshot` / `GET /api/realtime/latest` payload.

use serde::Serialize;
use wecare_proto::{DriverStatus, Seq};

use crate::clock::iso;
use crate::storage::Snapshot;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DriverEntry {
    driver_id: String,
    lat: Option<f64>,
    lng: Option<f64>,
    recorded_at: Option<String>,
    /// v1.3: absent until the driver reported a status.
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<DriverStatus>,
    online: bool,
    last_seen: String,
}

/// `{ streamId, seq, drivers: [...] }`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SnapshotPayload {
    stream_id: String,
    pub(crate) seq: Seq,
    drivers: Vec<DriverEntry>,
}

/// The snapshot as of `snap.seq`; `online` is what the stream said up to
/// that `seq`, so a snapshot and the events after it always agree.
pub(crate) fn payload(stream_id: &str, snap: Snapshot) -> SnapshotPayload {
    let mut drivers: Vec<DriverEntry> = snap
        .drivers
        .into_iter()
        .map(|(id, s)| DriverEntry {
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
    SnapshotPayload { stream_id: stream_id.to_string(), seq: snap.seq, drivers }
}
