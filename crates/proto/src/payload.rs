//! Every payload of the wire, once (issue 17): what the server sends on the
//! socket and over REST, and the fixes a driver sends. The server encodes
//! with these types, the SDK and the CLI decode into them, and the web
//! client's TypeScript interfaces are generated from them
//! (`web/src/client/payloads.gen.ts`, see `typescript.rs`), so a field added
//! here is a field everywhere. Field names are the contract's (camelCase);
//! an optional field is left out when it has no value, never sent as `null`,
//! unless the contract says `null` (the snapshot's position of a driver
//! that has sent none). In TypeScript a status is `DriverStatus | string`:
//! a reader keeps working when a newer server knows one more status.

use serde::{Deserialize, Serialize};
#[cfg(test)]
use ts_rs::TS;

use crate::{DriverStatus, ErrorCode, Seq};

/// ISO-8601 UTC with milliseconds (`2026-01-16T08:30:00.000Z`), as every
/// time the server sends.
pub type IsoTime = String;

/// The `status` of a successful ack or REST body: always `"ok"`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(TS))]
pub enum OkStatus {
    /// `"ok"`.
    #[default]
    #[serde(rename = "ok")]
    Ok,
}

/// The `status` of a refusal: always `"error"`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(TS))]
pub enum ErrorStatus {
    /// `"error"`.
    #[default]
    #[serde(rename = "error")]
    Error,
}

/// `location:updated`: a stored fix (contract §4). `S`: its text fields —
/// owned when read, borrowed when the server renders one (once per stored
/// fix, the hottest encoding: no copy of the ids, names and times).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(TS))]
#[cfg_attr(test, ts(concrete(S = String)))]
#[serde(rename_all = "camelCase")]
pub struct LocationUpdated<S = String> {
    #[cfg_attr(test, ts(type = "number"))]
    pub seq: Seq,
    /// The client's message id (or `srv-…` for clients that send none).
    pub id: S,
    pub driver_id: S,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(optional, type = "string"))]
    pub driver_email: Option<S>,
    /// v1.2: the driver's display name, when its token has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(optional, type = "string"))]
    pub driver_name: Option<S>,
    pub lat: f64,
    pub lng: f64,
    /// v1.2: `lat`, `lng` and `recordedAt` again under the deployed Map
    /// Command page's row names.
    pub latitude: f64,
    pub longitude: f64,
    #[cfg_attr(test, ts(type = "IsoTime"))]
    pub recorded_at: S,
    #[cfg_attr(test, ts(type = "IsoTime"))]
    pub last_updated: S,
    /// When the server received it.
    #[cfg_attr(test, ts(type = "IsoTime"))]
    pub timestamp: S,
    /// v1.3: the driver's current status, absent until it reported one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(optional, type = "DriverStatus | string"))]
    pub status: Option<DriverStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(optional))]
    pub accuracy: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(optional))]
    pub heading: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(optional))]
    pub speed: Option<f64>,
    /// Older than the driver's position when it was stored: not the marker.
    pub outdated: bool,
    /// The device time was too far in the future and was replaced.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    #[cfg_attr(test, ts(optional = nullable))]
    pub adjusted: bool,
}

/// A stream event read for its place alone — its `seq`, and the client's
/// `id` of a `location:updated` — the rest skipped unparsed: what a reader
/// that only counts and orders events needs (the benchmark's watchers, which
/// read tens of thousands a second on the machine they measure).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct EventPlace<'a> {
    pub seq: Seq,
    #[serde(borrow, default)]
    pub id: Option<&'a str>,
}

/// `driver:status:updated`: a stored status change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(TS))]
#[cfg_attr(test, ts(optional_fields))]
#[serde(rename_all = "camelCase")]
pub struct DriverStatusUpdated {
    #[cfg_attr(test, ts(type = "number"))]
    pub seq: Seq,
    pub driver_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver_email: Option<String>,
    #[cfg_attr(test, ts(type = "DriverStatus | string"))]
    pub status: DriverStatus,
    #[cfg_attr(test, ts(type = "IsoTime"))]
    pub timestamp: IsoTime,
}

/// `driver:presence`: a driver came online or went offline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(TS))]
#[serde(rename_all = "camelCase")]
pub struct DriverPresence {
    #[cfg_attr(test, ts(type = "number"))]
    pub seq: Seq,
    pub driver_id: String,
    pub online: bool,
    #[cfg_attr(test, ts(type = "IsoTime"))]
    pub timestamp: IsoTime,
}

/// One driver of a snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(TS))]
#[serde(rename_all = "camelCase")]
pub struct SnapshotDriver {
    pub driver_id: String,
    /// `null` until the driver sent a fix.
    pub lat: Option<f64>,
    pub lng: Option<f64>,
    #[cfg_attr(test, ts(type = "IsoTime | null"))]
    pub recorded_at: Option<IsoTime>,
    /// v1.3: absent until the driver reported a status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(type = "DriverStatus | string", optional))]
    pub status: Option<DriverStatus>,
    pub online: bool,
    #[cfg_attr(test, ts(type = "IsoTime"))]
    pub last_seen: IsoTime,
}

/// `drivers:snapshot`, and the body of `GET /api/realtime/latest`: every
/// known driver as of `seq`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(TS))]
#[serde(rename_all = "camelCase")]
pub struct DriversSnapshot {
    pub stream_id: String,
    #[cfg_attr(test, ts(type = "number"))]
    pub seq: Seq,
    pub drivers: Vec<SnapshotDriver>,
}

/// `sync:complete`: the end of a replay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(TS))]
#[serde(rename_all = "camelCase")]
pub struct SyncComplete {
    pub stream_id: String,
    #[cfg_attr(test, ts(type = "number"))]
    pub from_seq: Seq,
    #[cfg_attr(test, ts(type = "number"))]
    pub to_seq: Seq,
    #[cfg_attr(test, ts(type = "number"))]
    pub replayed: u64,
}

/// `auth:expiring`: the token expires soon; refresh in-band.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(TS))]
#[serde(rename_all = "camelCase")]
pub struct AuthExpiring {
    #[cfg_attr(test, ts(type = "IsoTime"))]
    pub expires_at: IsoTime,
}

/// `auth:expired`: the socket is being closed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(TS))]
#[cfg_attr(test, ts(optional_fields))]
#[serde(rename_all = "camelCase")]
pub struct AuthExpired {
    #[cfg_attr(test, ts(type = "IsoTime"))]
    pub expired_at: IsoTime,
    /// `"revoked"` (logged out), or `"unverifiable"` (this server: the
    /// backend's token check failed closed); absent when it simply expired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The `error` event: a failure of an event sent without an ack callback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(TS))]
pub struct WireError {
    #[cfg_attr(test, ts(type = "ErrorCode"))]
    pub code: ErrorCode,
    pub message: String,
}

/// An error code as a client reads it: one this version knows, or a newer
/// server's, kept as it was sent (a client then goes by `retryable` alone).
/// Readers take acks as `ErrorAck<ReceivedCode>` (and the batch types
/// likewise) so that one new code never makes a whole ack unreadable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ReceivedCode {
    Known(ErrorCode),
    Other(String),
}

impl ReceivedCode {
    /// The code, when this version knows it.
    pub fn known(&self) -> Option<ErrorCode> {
        match self {
            Self::Known(c) => Some(*c),
            Self::Other(_) => None,
        }
    }

    /// The code as it travelled.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Known(c) => c.as_str(),
            Self::Other(s) => s,
        }
    }
}

/// A refusal, as an ack or a REST body. `C`: see [`ReceivedCode`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(TS))]
#[cfg_attr(test, ts(concrete(C = String)))]
pub struct ErrorAck<C = ErrorCode> {
    pub status: ErrorStatus,
    #[cfg_attr(test, ts(type = "ErrorCode"))]
    pub code: C,
    pub message: String,
    /// Whether sending the same message again later may succeed.
    pub retryable: bool,
}

impl ErrorAck {
    /// The refusal `code` with `message`, retryable as the code says.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { status: ErrorStatus::Error, code, message: message.into(), retryable: code.is_retryable() }
    }
}

/// A stored (or already stored) fix or status change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(TS))]
pub struct LocationOkAck {
    pub status: OkStatus,
    pub id: String,
    #[cfg_attr(test, ts(type = "number"))]
    pub seq: Seq,
    #[cfg_attr(test, ts(type = "IsoTime"))]
    pub timestamp: IsoTime,
    /// Already stored (a resend): `seq` is where it was stored first.
    pub duplicate: bool,
    /// The device time was too far in the future and was replaced.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    #[cfg_attr(test, ts(optional = nullable))]
    pub adjusted: bool,
}

/// The ack of one fix or status change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(TS))]
#[cfg_attr(test, ts(concrete(C = String)))]
#[serde(untagged)]
pub enum LocationResult<C = ErrorCode> {
    /// Stored.
    Ok(LocationOkAck),
    /// Refused.
    Error(ErrorAck<C>),
}

/// The ack of `location:batch`, and the 200 body of the REST fallback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(TS))]
#[cfg_attr(test, ts(concrete(C = String)))]
pub struct BatchAck<C = ErrorCode> {
    pub status: OkStatus,
    /// One per fix, in order.
    pub results: Vec<LocationResult<C>>,
}

/// A refused REST batch: the first refusal, and every item's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(TS))]
#[cfg_attr(test, ts(concrete(C = String)))]
pub struct RefusedBatch<C = ErrorCode> {
    #[serde(flatten)]
    pub error: ErrorAck<C>,
    pub results: Vec<LocationResult<C>>,
}

/// The ack of `auth:refresh` that took the new token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(TS))]
#[serde(rename_all = "camelCase")]
pub struct RefreshOk {
    pub status: OkStatus,
    #[cfg_attr(test, ts(type = "IsoTime"))]
    pub expires_at: IsoTime,
}

/// A stream event as `events:sync` and `GET /api/realtime/events` list it:
/// the live payload plus its event name as `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(TS))]
#[serde(tag = "type")]
pub enum StreamEvent {
    /// `location:updated`.
    #[serde(rename = "location:updated")]
    LocationUpdated(LocationUpdated),
    /// `driver:status:updated`.
    #[serde(rename = "driver:status:updated")]
    DriverStatusUpdated(DriverStatusUpdated),
    /// `driver:presence`.
    #[serde(rename = "driver:presence")]
    DriverPresence(DriverPresence),
}

impl StreamEvent {
    /// The live event `name` with payload `data`, if `name` is a stream
    /// event; an error when the payload does not fit it.
    ///
    /// # Errors
    /// `data` is not the payload of `name`.
    pub fn from_live(name: &str, data: serde_json::Value) -> Result<Option<Self>, serde_json::Error> {
        Ok(Some(match name {
            crate::event::LOCATION_UPDATED => Self::LocationUpdated(serde_json::from_value(data)?),
            crate::event::DRIVER_STATUS_UPDATED => Self::DriverStatusUpdated(serde_json::from_value(data)?),
            crate::event::DRIVER_PRESENCE => Self::DriverPresence(serde_json::from_value(data)?),
            _ => return Ok(None),
        }))
    }

    /// The event name it is sent under live.
    pub fn name(&self) -> &'static str {
        match self {
            Self::LocationUpdated(_) => crate::event::LOCATION_UPDATED,
            Self::DriverStatusUpdated(_) => crate::event::DRIVER_STATUS_UPDATED,
            Self::DriverPresence(_) => crate::event::DRIVER_PRESENCE,
        }
    }

    /// The driver it is about.
    pub fn driver_id(&self) -> &str {
        match self {
            Self::LocationUpdated(e) => &e.driver_id,
            Self::DriverStatusUpdated(e) => &e.driver_id,
            Self::DriverPresence(e) => &e.driver_id,
        }
    }

    /// Its position in the stream.
    pub fn seq(&self) -> Seq {
        match self {
            Self::LocationUpdated(e) => e.seq,
            Self::DriverStatusUpdated(e) => e.seq,
            Self::DriverPresence(e) => e.seq,
        }
    }
}

/// A page of the stream: the `events:sync` ack, and the body of `GET
/// /api/realtime/events`. `E` is how the events travel: typed for readers
/// ([`StreamEvent`]s), or already encoded for the server that sends them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(TS))]
#[cfg_attr(test, ts(concrete(E = Vec<StreamEvent>)))]
#[serde(rename_all = "camelCase")]
pub struct EventsPage<E = Vec<StreamEvent>> {
    pub status: OkStatus,
    pub stream_id: String,
    pub events: E,
    /// The last `seq` of the page, or where it started when it is empty.
    #[cfg_attr(test, ts(type = "number"))]
    pub last_seq: Seq,
    /// Events after the requested position were pruned by retention (or
    /// the position was another stream's): start over from a snapshot.
    pub gap: bool,
}

/// The body of `GET /api/realtime/drivers/{id}/track`: a driver's fixes by
/// device time. `F` as `E` of [`EventsPage`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(TS))]
#[cfg_attr(test, ts(concrete(F = Vec<LocationUpdated>)))]
#[serde(rename_all = "camelCase")]
pub struct Track<F = Vec<LocationUpdated>> {
    pub status: OkStatus,
    pub driver_id: String,
    pub fixes: F,
}

/// A fix as a driver sends it (`location:update`, an item of
/// `location:batch`, the REST fallback), contract §3.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(TS))]
#[cfg_attr(test, ts(optional_fields))]
#[serde(rename_all = "camelCase")]
pub struct LocationFix {
    /// The client's message id, 1–64 characters: the dedup key with the driver.
    pub id: String,
    pub lat: f64,
    pub lng: f64,
    /// Device time of the fix: ISO-8601 (or, from older clients, epoch ms).
    #[cfg_attr(test, ts(type = "IsoTime | number"))]
    pub recorded_at: IsoTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(type = "DriverStatus | string"))]
    pub status: Option<DriverStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heading: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed: Option<f64>,
}

/// `POST /api/realtime/notify`: how many sockets got the event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(TS))]
pub struct Notified {
    pub status: OkStatus,
    #[cfg_attr(test, ts(type = "number"))]
    pub delivered: u64,
}

/// `POST /api/realtime/revoke`: sockets this node closed at once (other
/// nodes close theirs too).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(TS))]
pub struct RevokedBody {
    pub status: OkStatus,
    #[cfg_attr(test, ts(type = "number"))]
    pub disconnected: u64,
}

/// `POST /api/realtime/logout`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(TS))]
pub struct LoggedOut {
    pub status: OkStatus,
}
