/**
 * What the driver and the watcher do alike with their `/locations` socket:
 * open it (a fresh token on every attempt, reconnect forever, websocket
 * first then polling), reconnect by hand where socket.io-client will not
 * (the server closed the session, or refused the token), and refresh the
 * token in-band on `auth:expiring`.
 */
import { io, type Socket } from 'socket.io-client';
import { backoffDelay } from './backoff';
import { ClientEvent, NAMESPACE, type ClientToServerEvents, type RefreshAck, type ServerToClientEvents } from './events';

export type LocationsSocket = Socket<ServerToClientEvents, ClientToServerEvents>;

export interface OpenOptions {
  baseUrl: string;
  /** The handshake's `auth` payload, asked for on every connect attempt. */
  auth: () => Promise<object>;
  transports?: ('polling' | 'websocket')[];
  reconnectionDelayMs?: number;
  reconnectionDelayMaxMs?: number;
}

/** Opens the socket; socket.io-client reconnects it after transport failures, forever. */
export function openSocket(o: OpenOptions): LocationsSocket {
  return io(`${o.baseUrl}${NAMESPACE}`, {
    auth: (cb) => {
      // No auth at all rather than a handshake that never starts: the
      // server answers `Authentication required` and the caller retries.
      o.auth().then(cb, () => cb({}));
    },
    reconnection: true,
    reconnectionAttempts: Infinity,
    reconnectionDelay: o.reconnectionDelayMs ?? 500,
    reconnectionDelayMax: o.reconnectionDelayMaxMs ?? 5000,
    randomizationFactor: 0.5,
    timeout: 10_000,
    transports: o.transports ?? ['websocket', 'polling'],
    tryAllTransports: true,
  });
}

/**
 * Reconnects by hand, backing off (1 s doubling to 30 s, with jitter),
 * where socket.io-client does not: after a server-side DISCONNECT (token
 * expired, too many sockets) or a refused token. `attempt` runs when due.
 */
export class ManualReconnect {
  private timer: ReturnType<typeof setTimeout> | null = null;
  private attempts = 0;

  constructor(private readonly attempt: () => void) {}

  /** Schedules the next attempt, unless one is already due. */
  schedule(): void {
    if (this.timer) return;
    this.attempts += 1;
    const delay = backoffDelay(this.attempts, { baseMs: 1000, capMs: 30_000 }) + 250;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.attempt();
    }, delay);
  }

  /** Connected: nothing due, and the next drop starts from the first delay. */
  reset(): void {
    this.attempts = 0;
    this.cancel();
  }

  cancel(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}

/**
 * In-band refresh: sends a fresh token on the open socket, which stays up
 * (nothing is missed). True when the server took it; false when it did not,
 * or no token or no ack came — the expiry path then reconnects with a
 * fresh token.
 */
export async function refreshToken(socket: LocationsSocket, tokenProvider: () => Promise<string>): Promise<boolean> {
  try {
    const token = await tokenProvider();
    const ack: RefreshAck = await socket.timeout(10_000).emitWithAck(ClientEvent.AuthRefresh, { token });
    return ack.status === 'ok';
  } catch {
    return false;
  }
}
