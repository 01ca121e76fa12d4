//! Event names: the one place they are spelled.

/// Driver → server: one GPS fix, with ack.
pub const LOCATION_UPDATE: &str = "location:update";
/// Driver → server: up to 1000 fixes, with ack.
pub const LOCATION_BATCH: &str = "location:batch";
/// Driver → server: status change (the original server's name).
pub const DRIVER_STATUS: &str = "driver:status";
/// Alias of [`DRIVER_STATUS`].
pub const DRIVER_STATUS_UPDATE: &str = "driver:status:update";
/// Any client → server: in-band token refresh, with ack.
pub const AUTH_REFRESH: &str = "auth:refresh";
/// Watcher → server: pull a page of the stream, with ack.
pub const EVENTS_SYNC: &str = "events:sync";

/// Server → watchers: a stored fix.
pub const LOCATION_UPDATED: &str = "location:updated";
/// Server → watchers: a stored status change.
pub const DRIVER_STATUS_UPDATED: &str = "driver:status:updated";
/// Server → watchers: a driver came online or went offline.
pub const DRIVER_PRESENCE: &str = "driver:presence";
/// Server → watcher: the state of every known driver as of a `seq`.
pub const DRIVERS_SNAPSHOT: &str = "drivers:snapshot";
/// Server → watcher: the end of a replay.
pub const SYNC_COMPLETE: &str = "sync:complete";
/// Server → any client: the token expires soon.
pub const AUTH_EXPIRING: &str = "auth:expiring";
/// Server → any client: the token expired; the socket is being closed.
pub const AUTH_EXPIRED: &str = "auth:expired";
/// Server → client: a failure of an event sent without an ack callback.
pub const ERROR: &str = "error";

/// Maximum number of fixes in one `location:batch`.
pub const MAX_BATCH: usize = 1000;
