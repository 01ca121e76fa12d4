// Generated from crates/proto (src/payload.rs, by src/typescript.rs) — do not edit.
// Regenerate: WECARE_WRITE_TS=1 cargo test -p wecare-proto typescript

import type { DriverStatus, ErrorCode } from './wire.gen';

/** ISO-8601 UTC with milliseconds, as every time the server sends. */
export type IsoTime = string;

export type OkStatus = "ok";

export type ErrorStatus = "error";

export type LocationUpdated = { seq: number, 
/**
 * The client's message id (or `srv-…` for clients that send none).
 */
id: string, driverId: string, driverEmail?: string, 
/**
 * v1.2: the driver's display name, when its token has one.
 */
driverName?: string, lat: number, lng: number, 
/**
 * v1.2: `lat`, `lng` and `recordedAt` again under the deployed Map
 * Command page's row names.
 */
latitude: number, longitude: number, recordedAt: IsoTime, lastUpdated: IsoTime, 
/**
 * When the server received it.
 */
timestamp: IsoTime, 
/**
 * v1.3: the driver's current status, absent until it reported one.
 */
status?: DriverStatus | string, accuracy?: number, heading?: number, speed?: number, 
/**
 * Older than the driver's position when it was stored: not the marker.
 */
outdated: boolean, 
/**
 * The device time was too far in the future and was replaced.
 */
adjusted?: boolean, };

export type DriverStatusUpdated = { seq: number, driverId: string, driverEmail?: string, status: DriverStatus | string, timestamp: IsoTime, };

export type DriverPresence = { seq: number, driverId: string, online: boolean, timestamp: IsoTime, };

export type SnapshotDriver = { driverId: string, 
/**
 * `null` until the driver sent a fix.
 */
lat: number | null, lng: number | null, recordedAt: IsoTime | null, 
/**
 * v1.3: absent until the driver reported a status.
 */
status?: DriverStatus | string, online: boolean, lastSeen: IsoTime, };

export type DriversSnapshot = { streamId: string, seq: number, drivers: Array<SnapshotDriver>, };

export type SyncComplete = { streamId: string, fromSeq: number, toSeq: number, replayed: number, };

export type AuthExpiring = { expiresAt: IsoTime, };

export type AuthExpired = { expiredAt: IsoTime, 
/**
 * `"revoked"` (logged out), or `"unverifiable"` (this server: the
 * backend's token check failed closed); absent when it simply expired.
 */
reason?: string, };

export type WireError = { code: ErrorCode, message: string, };

export type ErrorAck = { status: ErrorStatus, code: ErrorCode, message: string, 
/**
 * Whether sending the same message again later may succeed.
 */
retryable: boolean, };

export type LocationOkAck = { status: OkStatus, id: string, seq: number, timestamp: IsoTime, 
/**
 * Already stored (a resend): `seq` is where it was stored first.
 */
duplicate: boolean, 
/**
 * The device time was too far in the future and was replaced.
 */
adjusted?: boolean, };

export type LocationResult = LocationOkAck | ErrorAck;

export type BatchAck = { status: OkStatus, 
/**
 * One per fix, in order.
 */
results: Array<LocationResult>, };

export type RefusedBatch = { results: Array<LocationResult>, status: ErrorStatus, code: ErrorCode, message: string, 
/**
 * Whether sending the same message again later may succeed.
 */
retryable: boolean, };

export type RefreshOk = { status: OkStatus, expiresAt: IsoTime, };

export type StreamEvent = { "type": "location:updated" } & LocationUpdated | { "type": "driver:status:updated" } & DriverStatusUpdated | { "type": "driver:presence" } & DriverPresence;

export type EventsPage = { status: OkStatus, streamId: string, events: Array<StreamEvent>, 
/**
 * The last `seq` of the page, or where it started when it is empty.
 */
lastSeq: number, 
/**
 * Events after the requested position were pruned by retention (or
 * the position was another stream's): start over from a snapshot.
 */
gap: boolean, };

export type Track = { status: OkStatus, driverId: string, fixes: Array<LocationUpdated>, };

export type LocationFix = { 
/**
 * The client's message id, 1–64 characters: the dedup key with the driver.
 */
id: string, lat: number, lng: number, 
/**
 * Device time of the fix: ISO-8601 (or, from older clients, epoch ms).
 */
recordedAt: IsoTime | number, status?: DriverStatus | string, accuracy?: number, heading?: number, speed?: number, };

export type Notified = { status: OkStatus, delivered: number, };

export type RevokedBody = { status: OkStatus, disconnected: number, };

export type LoggedOut = { status: OkStatus, };
