/**
 * DriverClient: the driver app's side of `/locations` on the official
 * socket.io-client (docs/protocol.md §9 "a well-behaved driver").
 *
 * `record(fix)` stores the fix in the outbox (fresh id) and wakes the sender;
 * the sender drains it with `location:batch` (≤ 1000, `emitWithAck` with a
 * timeout). The `auth` callback asks the token provider on every (re)connect;
 * reconnects forever, also after `auth:expired` / `io server disconnect` / a
 * refused token (only `Forbidden` stops it); in-band `auth:refresh` on
 * `auth:expiring`. When the socket has been down for `httpFallbackAfterMs`,
 * the same outbox drains over `POST /api/driver-locations` (Bearer) until the
 * socket is back; dedup on the server makes any overlap harmless.
 */
import type { BackoffOptions } from './backoff';
import {
  CLIENT_DISCONNECT_REASON,
  ClientEvent,
  HandshakeRefusal,
  MAX_BATCH,
  RestPath,
  SERVER_DISCONNECT_REASON,
  ServerEvent,
  asHandshakeRefusal,
  type BatchAck,
  type ErrorAck,
  type IsoTime,
  type LocationFix,
  type LocationResult,
} from './events';
import type { NewFix, Outbox } from './outbox';
import { DEFAULT_SEND_BACKOFF, Sender } from './sender';
import { ManualReconnect, openSocket, refreshToken, type LocationsSocket } from './socket';

export type TokenProvider = () => Promise<string>;

export type DriverConnection =
  | 'connecting'
  | 'connected'
  | 'reconnecting'
  | 'http-fallback'
  | 'auth-failed'
  | 'stopped';

export interface DriverState {
  connection: DriverConnection;
  /** Fixes in the outbox, not yet acknowledged. */
  pending: number;
  /** The last `ok` result (also `duplicate`). */
  lastAck: { id: string; seq: number; timestamp: IsoTime; duplicate: boolean; via: string; at: number } | null;
  /** Fixes parked as refused (not retryable); read them with `deadLetters()`. */
  deadLetters: number;
  /** Fixes dropped because the outbox was full. */
  dropped: number;
  /** The last send failure (retry pending), or `null`. */
  lastError: string | null;
  /** The last handshake refusal, while it holds. */
  authError: string | null;
}

export interface DriverOptions {
  /** Origin of the server, e.g. `https://rt.example` (no trailing slash). */
  baseUrl: string;
  /** Asked for a token on every connect attempt, refresh and REST request. */
  tokenProvider: TokenProvider;
  outbox: Outbox;
  /** Socket down this long → drain over `POST /api/driver-locations`. Default 15000. */
  httpFallbackAfterMs?: number;
  /** Per-batch ack (and HTTP request) timeout. Default 15000. */
  ackTimeoutMs?: number;
  batchMax?: number;
  /** Retry backoff of the sender. Default 1 s … 30 s, full jitter. */
  backoff?: BackoffOptions;
  transports?: ('polling' | 'websocket')[];
  reconnectionDelayMs?: number;
  reconnectionDelayMaxMs?: number;
  fetch?: typeof fetch;
}

export interface DriverStats {
  socketConnects: number;
  socketDisconnects: number;
  refreshOk: number;
  refreshFailed: number;
  sentSocket: number;
  sentHttp: number;
  retries: number;
}

export class DriverClient {
  readonly stats: DriverStats = {
    socketConnects: 0,
    socketDisconnects: 0,
    refreshOk: 0,
    refreshFailed: 0,
    sentSocket: 0,
    sentHttp: 0,
    retries: 0,
  };
  private socket: LocationsSocket | null = null;
  private readonly sender: Sender;
  private stateValue: DriverState = {
    connection: 'connecting',
    pending: 0,
    lastAck: null,
    deadLetters: 0,
    dropped: 0,
    lastError: null,
    authError: null,
  };
  private readonly listeners = new Set<(s: DriverState) => void>();
  /** When the socket went down (or the client started without one). */
  private downSince = Date.now();
  private fallbackTimer: ReturnType<typeof setTimeout> | null = null;
  private readonly manual = new ManualReconnect(() => {
    if (!this.stopped && this.socket && !this.socket.connected) this.socket.connect();
    this.armFallback();
  });
  private stopped = true;
  private forbidden = false;

  constructor(private readonly opts: DriverOptions) {
    this.sender = new Sender({
      outbox: opts.outbox,
      batchMax: Math.min(MAX_BATCH, opts.batchMax ?? MAX_BATCH),
      backoff: opts.backoff ?? DEFAULT_SEND_BACKOFF,
      transport: () => this.pickTransport(),
      onAck: (a, via) => {
        this.patch({ lastAck: { id: a.id, seq: a.seq, timestamp: a.timestamp, duplicate: a.duplicate, via, at: Date.now() }, lastError: null });
      },
      onDeadLetter: () => {
        this.patch({ deadLetters: this.stateValue.deadLetters + 1 });
      },
      onRetry: (reason) => {
        this.stats.retries += 1;
        this.patch({ lastError: reason });
      },
      onRound: () => void this.refreshCounts(),
    });
  }

  get state(): DriverState {
    return this.stateValue;
  }

  /** Called with the state now and after every change; returns the unsubscribe. */
  subscribe(l: (s: DriverState) => void): () => void {
    this.listeners.add(l);
    l(this.stateValue);
    return () => this.listeners.delete(l);
  }

  /** Stores the fix (durably, with a fresh id unless it has one), then wakes the sender. */
  async record(fix: NewFix): Promise<LocationFix> {
    const stored = await this.opts.outbox.add(fix);
    await this.refreshCounts();
    this.sender.wake();
    return stored;
  }

  deadLetters() {
    return this.opts.outbox.deadLetters();
  }

  /** Fixes were added to the outbox by someone else (another tab): send them. */
  poke(): void {
    void this.refreshCounts();
    this.sender.wake();
  }

  /** Resolves when the sender has nothing more it can do right now. */
  idle(): Promise<void> {
    return this.sender.idle();
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.forbidden = false;
    this.downSince = Date.now();
    this.armFallback();
    const socket = openSocket({
      baseUrl: this.opts.baseUrl,
      auth: async () => ({ token: await this.token() }),
      transports: this.opts.transports,
      reconnectionDelayMs: this.opts.reconnectionDelayMs,
      reconnectionDelayMaxMs: this.opts.reconnectionDelayMaxMs,
    });
    this.socket = socket;
    this.bind(socket);
    void this.refreshCounts();
    this.sender.wake();
  }

  stop(): void {
    this.stopped = true;
    this.sender.stop();
    this.clearTimers();
    this.socket?.disconnect();
    this.socket = null;
    this.patch({ connection: 'stopped' });
  }

  private async token(): Promise<string> {
    try {
      return await this.opts.tokenProvider();
    } catch {
      return ''; // the server answers `Authentication required`; retried
    }
  }

  private bind(socket: LocationsSocket): void {
    socket.on('connect', () => {
      this.stats.socketConnects += 1;
      this.clearTimers();
      this.patch({ connection: 'connected', authError: null });
      this.sender.resetBackoff();
    });
    socket.on('disconnect', (reason) => {
      this.stats.socketDisconnects += 1;
      if (this.stopped || reason === CLIENT_DISCONNECT_REASON) return;
      this.socketDown();
      // Not retried by socket.io-client: reconnect ourselves, with a fresh token.
      if (reason === SERVER_DISCONNECT_REASON) this.scheduleManualConnect();
    });
    socket.on('connect_error', (err) => {
      if (this.stopped) return;
      const refusal = asHandshakeRefusal(err.message);
      if (refusal === null) {
        this.socketDown(); // transport failure: the manager retries on its own
        return;
      }
      this.socketDown();
      if (refusal === HandshakeRefusal.Forbidden) {
        // Not a driver: neither the socket nor HTTP will take anything.
        this.forbidden = true;
        this.clearTimers();
        this.patch({ connection: 'auth-failed', authError: refusal });
        return;
      }
      this.patch({ connection: 'auth-failed', authError: refusal });
      this.scheduleManualConnect();
    });
    socket.on(ServerEvent.AuthExpiring, () => void this.refresh());
    // auth:expired is followed by the server's DISCONNECT ('io server disconnect'), handled above.
  }

  private socketDown(): void {
    if (this.stateValue.connection === 'connected') this.downSince = Date.now();
    if (this.stateValue.connection !== 'http-fallback' && !this.forbidden) this.patch({ connection: 'reconnecting' });
    this.armFallback();
  }

  private fallbackDue(): boolean {
    return Date.now() - this.downSince >= (this.opts.httpFallbackAfterMs ?? 15_000);
  }

  private armFallback(): void {
    if (this.fallbackTimer || this.stopped || this.forbidden) return;
    const wait = Math.max(0, this.downSince + (this.opts.httpFallbackAfterMs ?? 15_000) - Date.now());
    this.fallbackTimer = setTimeout(() => {
      this.fallbackTimer = null;
      if (this.stopped || this.socket?.connected) return;
      this.patch({ connection: 'http-fallback' });
      this.sender.wake();
    }, wait);
  }

  private clearTimers(): void {
    if (this.fallbackTimer) clearTimeout(this.fallbackTimer);
    this.fallbackTimer = null;
    this.manual.reset();
  }

  private scheduleManualConnect(): void {
    if (!this.stopped) this.manual.schedule();
  }

  private async refresh(): Promise<void> {
    if (!this.socket) return;
    if (await refreshToken(this.socket, this.opts.tokenProvider)) this.stats.refreshOk += 1;
    else this.stats.refreshFailed += 1;
  }

  private pickTransport(): { name: string; send: (f: LocationFix[]) => Promise<LocationResult[]> } | null {
    if (this.stopped || this.forbidden) return null;
    const socket = this.socket;
    if (socket?.connected) return { name: 'socket', send: (f) => this.sendSocket(socket, f) };
    if (this.fallbackDue()) return { name: 'http', send: (f) => this.sendHttp(f) };
    return null;
  }

  private async sendSocket(socket: LocationsSocket, updates: LocationFix[]): Promise<LocationResult[]> {
    const ack: BatchAck | ErrorAck = await socket
      .timeout(this.opts.ackTimeoutMs ?? 15_000)
      .emitWithAck(ClientEvent.LocationBatch, { updates });
    if (ack.status !== 'ok') throw new Error(`${ack.code}: ${ack.message}`);
    this.stats.sentSocket += updates.length;
    return ack.results;
  }

  private async sendHttp(updates: LocationFix[]): Promise<LocationResult[]> {
    const token = await this.token();
    const f = this.opts.fetch ?? fetch;
    const res = await f(`${this.opts.baseUrl}${RestPath.DriverLocations}`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ updates }),
      signal: AbortSignal.timeout(this.opts.ackTimeoutMs ?? 15_000),
    });
    const body = (await res.json().catch(() => null)) as BatchAck | ErrorAck | null;
    if (res.status === 403) {
      this.forbidden = true;
      this.patch({ connection: 'auth-failed', authError: HandshakeRefusal.Forbidden });
    }
    if (res.status !== 200 || !body || body.status !== 'ok') {
      throw new Error(`HTTP ${res.status}${body && body.status === 'error' ? ` ${body.code}` : ''}`);
    }
    this.stats.sentHttp += updates.length;
    return body.results;
  }

  private async refreshCounts(): Promise<void> {
    try {
      const [pending, dropped, dead] = await Promise.all([
        this.opts.outbox.count(),
        this.opts.outbox.dropped(),
        this.opts.outbox.deadLetters(),
      ]);
      this.patch({ pending, dropped, deadLetters: dead.length });
    } catch {
      /* the outbox is closed (page going away) */
    }
  }

  private patch(p: Partial<DriverState>): void {
    const next = { ...this.stateValue, ...p };
    if (JSON.stringify(next) === JSON.stringify(this.stateValue)) return;
    this.stateValue = next;
    for (const l of this.listeners) l(next);
  }
}
