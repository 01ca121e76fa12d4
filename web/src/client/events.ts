/**
 * The one place the wire vocabulary of `/locations` lives for the web client:
 * event names, codes and statuses (generated from the Rust proto crate into
 * `wire.gen.ts`, re-exported here) and payload types (wire contract v1.3,
 * docs/protocol.md §2–§7). Nothing else in `web/` spells an event name as a
 * string literal.
 */
import { ClientEvent, ErrorCode, HandshakeRefusal, ServerEvent, type DriverStatus } from './wire.gen';

// The vocabulary shared with the server, generated from crates/proto.
export {
  ClientEvent,
  DRIVER_STATUSES,
  ErrorCode,
  HandshakeRefusal,
  MAX_BATCH,
  NAMESPACE,
  RETRYABLE_CODES,
  ServerEvent,
  type DriverStatus,
} from './wire.gen';

export function asHandshakeRefusal(message: string): HandshakeRefusal | null {
  return (Object.values(HandshakeRefusal) as string[]).includes(message) ? (message as HandshakeRefusal) : null;
}

/** The disconnect reason socket.io-client reports for a server-side namespace DISCONNECT. */
export const SERVER_DISCONNECT_REASON = 'io server disconnect';
/** The disconnect reason of our own `socket.disconnect()`. */
export const CLIENT_DISCONNECT_REASON = 'io client disconnect';

/** ISO-8601 UTC with milliseconds, as every server timestamp. */
export type IsoTime = string;

export interface LocationUpdated {
  seq: number;
  id: string;
  driverId: string;
  driverEmail?: string;
  /** v1.2: the driver's display name, when its token has one. */
  driverName?: string;
  lat: number;
  lng: number;
  /** v1.2: `lat`, `lng` and `recordedAt` again under the deployed Map Command page's row names (absent on events stored before v1.2). */
  latitude?: number;
  longitude?: number;
  lastUpdated?: IsoTime;
  recordedAt: IsoTime;
  timestamp: IsoTime;
  /**
   * v1.3: the driver's current status, absent until the driver has reported
   * one (`driver:status`, or a fix's `status`). The server never invents one:
   * the WeCare backend owns the statuses it sets itself.
   */
  status?: DriverStatus | string;
  accuracy?: number | null;
  heading?: number | null;
  speed?: number | null;
  outdated: boolean;
  adjusted?: boolean;
}

export interface DriverStatusUpdated {
  seq: number;
  driverId: string;
  driverEmail?: string;
  status: DriverStatus | string;
  timestamp: IsoTime;
}

export interface DriverPresence {
  seq: number;
  driverId: string;
  online: boolean;
  timestamp: IsoTime;
}

export interface SnapshotDriver {
  driverId: string;
  lat: number | null;
  lng: number | null;
  recordedAt: IsoTime | null;
  /** v1.3: absent until the driver has reported a status (as on `location:updated`). */
  status?: DriverStatus | string;
  online: boolean;
  lastSeen: IsoTime | null;
}

export interface DriversSnapshot {
  streamId: string;
  seq: number;
  drivers: SnapshotDriver[];
}

export interface SyncComplete {
  streamId: string;
  fromSeq: number;
  toSeq: number;
  replayed: number;
}

export interface AuthExpiring {
  expiresAt: IsoTime;
}

export interface AuthExpired {
  expiredAt: IsoTime;
}

export interface WireError {
  code: ErrorCode | string;
  message: string;
}

export interface ErrorAck extends WireError {
  status: 'error';
  retryable?: boolean;
}

export type RefreshAck = { status: 'ok'; expiresAt: IsoTime } | ErrorAck;

/** A stream event as `events:sync` and `GET /api/realtime/events` carry it: the live payload plus `type`. */
export type StreamEvent =
  | ({ type: typeof ServerEvent.LocationUpdated } & LocationUpdated)
  | ({ type: typeof ServerEvent.DriverStatusUpdated } & DriverStatusUpdated)
  | ({ type: typeof ServerEvent.DriverPresence } & DriverPresence);

export type StreamEventType = StreamEvent['type'];

export const STREAM_EVENT_TYPES: readonly StreamEventType[] = [
  ServerEvent.LocationUpdated,
  ServerEvent.DriverStatusUpdated,
  ServerEvent.DriverPresence,
];

/** Body of `GET /api/realtime/events` (and the `events:sync` ack). */
export interface EventsPage {
  status?: 'ok';
  streamId: string;
  events: StreamEvent[];
  lastSeq: number;
  gap: boolean;
}

/** Body of `GET /api/realtime/latest`. */
export type LatestState = DriversSnapshot;

/** Handshake `auth` of a watcher (contract §5 resume). */
export interface WatcherAuth {
  token: string;
  lastSeq?: number;
  streamId?: string;
}

/** Typed socket maps for `Socket<ServerToClient, ClientToServer>`. */
export interface ServerToClientEvents {
  [ServerEvent.LocationUpdated]: (e: LocationUpdated) => void;
  [ServerEvent.DriverStatusUpdated]: (e: DriverStatusUpdated) => void;
  [ServerEvent.DriverPresence]: (e: DriverPresence) => void;
  [ServerEvent.DriversSnapshot]: (e: DriversSnapshot) => void;
  [ServerEvent.SyncComplete]: (e: SyncComplete) => void;
  [ServerEvent.AuthExpiring]: (e: AuthExpiring) => void;
  [ServerEvent.AuthExpired]: (e: AuthExpired) => void;
  [ServerEvent.Error]: (e: WireError) => void;
}

export interface ClientToServerEvents {
  [ClientEvent.AuthRefresh]: (p: { token: string }, ack: (r: RefreshAck) => void) => void;
  [ClientEvent.EventsSync]: (
    p: { since?: number; limit?: number; streamId?: string },
    ack: (r: EventsPage | ErrorAck) => void,
  ) => void;
  [ClientEvent.LocationBatch]: (p: { updates: LocationFix[] }, ack: (r: BatchAck | ErrorAck) => void) => void;
}

/** A fix as a driver sends it (`location:update`, an item of `location:batch`), contract §3. */
export interface LocationFix {
  /** Client message id, 1–64 chars: the dedup key with the driver. */
  id: string;
  lat: number;
  lng: number;
  /** Device time of the fix: ISO-8601 or epoch ms. */
  recordedAt: IsoTime | number;
  status?: DriverStatus | string;
  accuracy?: number;
  heading?: number;
  speed?: number;
}

export interface LocationOkAck {
  status: 'ok';
  id: string;
  seq: number;
  timestamp: IsoTime;
  duplicate: boolean;
  adjusted?: boolean;
}

/** One per-item result of `location:batch` / `POST /api/driver-locations`. */
export type LocationResult = LocationOkAck | ErrorAck;

/** Ack of `location:batch`, and the 200 body of `POST /api/driver-locations`. */
export interface BatchAck {
  status: 'ok';
  results: LocationResult[];
}

/** REST paths this client uses (docs/protocol.md §7). */
export const RestPath = {
  Events: '/api/realtime/events',
  Latest: '/api/realtime/latest',
  Track: (driverId: string) => `/api/realtime/drivers/${encodeURIComponent(driverId)}/track`,
  Health: '/healthz',
  /** Driver HTTP fallback (the legacy path the existing web client uses). */
  DriverLocations: '/api/driver-locations',
} as const;
