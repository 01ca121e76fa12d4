// Generated from crates/proto (src/typescript.rs) — do not edit.
// Regenerate: WECARE_WRITE_TS=1 cargo test -p wecare-proto typescript

/** Socket.io namespace of the location stream. */
export const NAMESPACE = '/locations';

/** Most fixes in one `location:batch`. */
export const MAX_BATCH = 1000;

/** Events the server sends. */
export const ServerEvent = {
  LocationUpdated: 'location:updated',
  DriverStatusUpdated: 'driver:status:updated',
  DriverPresence: 'driver:presence',
  DriversSnapshot: 'drivers:snapshot',
  SyncComplete: 'sync:complete',
  AuthExpiring: 'auth:expiring',
  AuthExpired: 'auth:expired',
  Error: 'error',
} as const;

/** Events a client sends. */
export const ClientEvent = {
  AuthRefresh: 'auth:refresh',
  EventsSync: 'events:sync',
  LocationUpdate: 'location:update',
  LocationBatch: 'location:batch',
  DriverStatus: 'driver:status',
} as const;

/** The stable error codes of acks, `error` events and REST bodies. */
export const ErrorCode = {
  AuthRequired: 'AUTH_REQUIRED',
  InvalidToken: 'INVALID_TOKEN',
  TokenExpired: 'TOKEN_EXPIRED',
  Forbidden: 'FORBIDDEN',
  InvalidPayload: 'INVALID_PAYLOAD',
  InvalidCoordinates: 'INVALID_COORDINATES',
  RateLimited: 'RATE_LIMITED',
  Unavailable: 'UNAVAILABLE',
  StorageUnavailable: 'STORAGE_UNAVAILABLE',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** Codes worth sending the same message again for (later). */
export const RETRYABLE_CODES: readonly ErrorCode[] = [ErrorCode.RateLimited, ErrorCode.Unavailable, ErrorCode.StorageUnavailable];

/** Stable `connect_error` messages (contract §2); clients rely on these only. */
export const HandshakeRefusal = {
  AuthRequired: 'Authentication required',
  InvalidToken: 'Invalid token',
  TokenExpired: 'Token expired',
  Forbidden: 'Forbidden',
} as const;
export type HandshakeRefusal = (typeof HandshakeRefusal)[keyof typeof HandshakeRefusal];

/** Driver statuses, upper case as the server stores and broadcasts them. */
export const DRIVER_STATUSES = ['AVAILABLE', 'BUSY', 'ON_TRIP', 'ON_DUTY', 'OFF_DUTY', 'UNAVAILABLE', 'OFFLINE'] as const;
export type DriverStatus = (typeof DRIVER_STATUSES)[number];
