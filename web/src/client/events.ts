/**
 * The one place the wire vocabulary of `/locations` lives for the web client:
 * event names, codes and statuses (`wire.gen.ts`) and the payload types
 * (`payloads.gen.ts`), both generated from the Rust proto crate and
 * re-exported here (wire contract v1.3, docs/protocol.md §2–§7), plus the
 * socket's typed event maps. Nothing else in `web/` spells an event name as
 * a string literal or writes a payload's shape.
 */
import { ClientEvent, HandshakeRefusal, ServerEvent } from './wire.gen';
import type * as P from './payloads.gen';

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

// The payloads, generated from crates/proto (src/payload.rs).
export type * from './payloads.gen';

export type RefreshAck = P.RefreshOk | P.ErrorAck;

export type StreamEventType = P.StreamEvent['type'];

export const STREAM_EVENT_TYPES: readonly StreamEventType[] = [
  ServerEvent.LocationUpdated,
  ServerEvent.DriverStatusUpdated,
  ServerEvent.DriverPresence,
];

/** Body of `GET /api/realtime/latest`. */
export type LatestState = P.DriversSnapshot;

/** Handshake `auth` of a watcher (contract §5 resume). */
export interface WatcherAuth {
  token: string;
  lastSeq?: number;
  streamId?: string;
}

/** Typed socket maps for `Socket<ServerToClient, ClientToServer>`. */
export interface ServerToClientEvents {
  [ServerEvent.LocationUpdated]: (e: P.LocationUpdated) => void;
  [ServerEvent.DriverStatusUpdated]: (e: P.DriverStatusUpdated) => void;
  [ServerEvent.DriverPresence]: (e: P.DriverPresence) => void;
  [ServerEvent.DriversSnapshot]: (e: P.DriversSnapshot) => void;
  [ServerEvent.SyncComplete]: (e: P.SyncComplete) => void;
  [ServerEvent.AuthExpiring]: (e: P.AuthExpiring) => void;
  [ServerEvent.AuthExpired]: (e: P.AuthExpired) => void;
  [ServerEvent.Error]: (e: P.WireError) => void;
}

export interface ClientToServerEvents {
  [ClientEvent.AuthRefresh]: (p: { token: string }, ack: (r: RefreshAck) => void) => void;
  [ClientEvent.EventsSync]: (
    p: { since?: number; limit?: number; streamId?: string },
    ack: (r: P.EventsPage | P.ErrorAck) => void,
  ) => void;
  [ClientEvent.LocationBatch]: (p: { updates: P.LocationFix[] }, ack: (r: P.BatchAck | P.ErrorAck) => void) => void;
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
