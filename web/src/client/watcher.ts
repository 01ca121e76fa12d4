/**
 * WatcherClient: the officer's live view of the fleet over the official
 * socket.io-client. Snapshot, then the live stream; resume with
 * `auth: { token, lastSeq, streamId }` on every reconnect (the `auth`
 * callback asks the token provider each time); re-snapshot on a hole or a new
 * stream; in-band token refresh; long-poll fallback while the socket is down.
 * The rules are docs/protocol.md §9 ("a well-behaved watcher").
 */
import { socketProblem, type ConnState, type Problem } from './connection';
import {
  CLIENT_DISCONNECT_REASON,
  HandshakeRefusal,
  SERVER_DISCONNECT_REASON,
  ServerEvent,
  asHandshakeRefusal,
  type StreamEvent,
  type WatcherAuth,
} from './events';
import { LongPoll } from './longpoll';
import { ManualReconnect, openSocket, refreshToken, type LocationsSocket } from './socket';
import * as persist from './persist';
import { StreamSync, type Outcome, type ResyncReason } from './sync';

export type TokenProvider = () => Promise<string>;

export interface WatcherOptions {
  /** Origin of the server, e.g. `https://rt.example` (no trailing slash). */
  baseUrl: string;
  /** Asked for a token on every connect attempt, refresh and REST request. */
  tokenProvider: TokenProvider;
  /** Where the position and fleet survive a reload; `null` keeps nothing. */
  storage?: persist.KeyValueStore | null;
  /**
   * socket.io transports. Defaults to websocket first, then polling
   * (`tryAllTransports`), with no polling→websocket upgrade race: against
   * this server a CONNECT sent over polling while the upgrade is under way
   * is refused (`Session ID unknown`), see the web/README.
   */
  transports?: ('polling' | 'websocket')[];
  longPollWaitMs?: number;
  /** How long `resynced-after-gap` stays on the banner. Defaults to 8000 ms. */
  resyncNoticeMs?: number;
}

export interface WatcherStats {
  /** Stream events received (applied or dropped), on any transport. */
  eventsReceived: number;
  socketConnects: number;
  socketDisconnects: number;
  refreshOk: number;
  refreshFailed: number;
  httpPages: number;
}

type Listener = () => void;

export class WatcherClient {
  readonly sync = new StreamSync();
  readonly stats: WatcherStats = {
    eventsReceived: 0,
    socketConnects: 0,
    socketDisconnects: 0,
    refreshOk: 0,
    refreshFailed: 0,
    httpPages: 0,
  };
  private socket: LocationsSocket | null = null;
  private readonly fallback: LongPoll;
  private stateValue: ConnState = { kind: 'connecting' };
  private readonly stateListeners = new Set<(s: ConnState) => void>();
  private readonly changeListeners = new Set<Listener>();
  /** socket.io-client's reconnect attempt number since the last successful connect (0: none started yet). */
  private attempt = 0;
  /** What the current socket connection is waiting for before it is `live`. */
  private awaiting: 'snapshot' | 'replay' | null = null;
  private replayed = 0;
  private pendingResync: ResyncReason | null = null;
  private noticeTimer: ReturnType<typeof setTimeout> | null = null;
  private readonly manual = new ManualReconnect(() => {
    if (!this.stopped && this.socket && !this.socket.connected) this.socket.connect();
  });
  private stopped = false;
  private saveTimer: ReturnType<typeof setTimeout> | null = null;

  constructor(private readonly opts: WatcherOptions) {
    this.fallback = new LongPoll({
      baseUrl: opts.baseUrl,
      tokenProvider: opts.tokenProvider,
      sync: this.sync,
      waitMs: opts.longPollWaitMs,
      onHealthy: (caughtUp) => {
        this.stats.httpPages += 1;
        if (!this.socket?.connected) this.setState({ kind: 'http-fallback', attempt: this.shownAttempt(), behind: !caughtUp });
      },
      onFailure: (problem) => {
        if (!this.socket?.connected && this.stateValue.kind !== 'auth-failed') {
          this.setState({ kind: 'reconnecting', attempt: this.shownAttempt(), problem });
        }
      },
      onResync: (reason) => {
        this.pendingResync = reason as ResyncReason;
      },
    });
    this.sync.onChange = () => {
      this.scheduleSave();
      for (const l of this.changeListeners) l();
    };
  }

  get state(): ConnState {
    return this.stateValue;
  }

  onState(l: (s: ConnState) => void): () => void {
    this.stateListeners.add(l);
    return () => this.stateListeners.delete(l);
  }

  /** Called after every change of the fleet. */
  onChange(l: Listener): () => void {
    this.changeListeners.add(l);
    return () => this.changeListeners.delete(l);
  }

  start(): void {
    persist.load(this.opts.storage ?? null, this.sync);
    this.stopped = false;
    const socket = openSocket({
      baseUrl: this.opts.baseUrl,
      auth: () => this.handshakeAuth(),
      transports: this.opts.transports,
    });
    this.socket = socket;
    this.bind(socket);
  }

  stop(): void {
    this.stopped = true;
    this.fallback.stop();
    this.manual.cancel();
    this.socket?.disconnect();
    this.socket = null;
    this.flushSave();
    this.setState({ kind: 'stopped' });
  }

  /** Try the socket now (e.g. after a new token was pasted) instead of waiting for the backoff. */
  reconnectNow(): void {
    this.manual.cancel();
    if (!this.stopped && this.socket && !this.socket.connected) this.socket.connect();
  }

  /** Forget everything persisted (sign-out). */
  forget(): void {
    persist.clear(this.opts.storage ?? null);
  }

  private async handshakeAuth(): Promise<WatcherAuth> {
    let token = '';
    try {
      token = await this.opts.tokenProvider();
    } catch {
      /* the server answers `Authentication required`, shown on the banner */
    }
    const auth: WatcherAuth = { token };
    if (this.sync.lastSeq !== null) {
      auth.lastSeq = this.sync.lastSeq;
      if (this.sync.streamId) auth.streamId = this.sync.streamId;
    }
    this.awaiting = auth.lastSeq === undefined ? 'snapshot' : 'replay';
    return auth;
  }

  private bind(socket: LocationsSocket): void {
    socket.on('connect', () => {
      this.stats.socketConnects += 1;
      this.attempt = 0;
      this.manual.reset();
      // From here on the socket is the only source: no race with a page in
      // flight. Stopping the long-poll leaves no window: the server replays
      // from the lastSeq this handshake sent, which is at or before anything
      // the long-poll applied since (those replayed events are dropped by seq).
      this.fallback.stop();
      this.replayed = 0;
      this.setState(this.awaiting === 'replay' ? { kind: 'catching-up', events: 0 } : { kind: 'connecting' });
    });
    socket.on('disconnect', (reason) => {
      this.stats.socketDisconnects += 1;
      // Our own disconnect (stop, or a re-snapshot that reconnects at once).
      if (this.stopped || reason === CLIENT_DISCONNECT_REASON) return;
      this.socketDown(socketProblem(reason));
      // A server-side DISCONNECT (token expired, account over its socket
      // limit) is not retried by socket.io-client: reconnect ourselves,
      // with a fresh token from the provider.
      if (reason === SERVER_DISCONNECT_REASON) this.scheduleManualConnect();
    });
    socket.on('connect_error', (err) => {
      if (this.stopped) return;
      const refusal = asHandshakeRefusal(err.message);
      if (refusal === null) {
        // Transport-level failure: the manager retries on its own.
        this.socketDown(socketProblem(err.message));
        return;
      }
      if (refusal === HandshakeRefusal.Forbidden) {
        this.fallback.stop();
        this.setState({ kind: 'auth-failed', refusal, retrying: false });
        return;
      }
      // A refused token is not retried by socket.io-client either.
      this.setState({ kind: 'auth-failed', refusal, retrying: true });
      this.scheduleManualConnect();
    });
    socket.io.on('reconnect_attempt', (n) => {
      this.attempt = n;
      const s = this.stateValue;
      if (s.kind === 'reconnecting' || s.kind === 'http-fallback') this.setState({ ...s, attempt: this.shownAttempt() });
    });

    socket.on(ServerEvent.DriversSnapshot, (s) => {
      // A snapshot we did not ask for (instead of a replay, or mid-stream)
      // means our position was no good: another stream, or pruned events.
      if (this.awaiting !== 'snapshot' && !this.pendingResync) {
        this.pendingResync = this.sync.streamId !== null && this.sync.streamId !== s.streamId ? 'new-stream' : 'gap';
      }
      this.sync.applySnapshot(s);
      this.awaiting = null;
      this.becomeCurrent();
    });
    socket.on(ServerEvent.SyncComplete, (s) => {
      this.handle(this.sync.applySyncComplete(s));
      if (this.awaiting === 'replay') {
        this.awaiting = null;
        this.becomeCurrent();
      }
    });
    socket.on(ServerEvent.LocationUpdated, (e) => this.onStreamEvent({ type: ServerEvent.LocationUpdated, ...e }));
    socket.on(ServerEvent.DriverStatusUpdated, (e) =>
      this.onStreamEvent({ type: ServerEvent.DriverStatusUpdated, ...e }),
    );
    socket.on(ServerEvent.DriverPresence, (e) => this.onStreamEvent({ type: ServerEvent.DriverPresence, ...e }));
    socket.on(ServerEvent.AuthExpiring, () => void this.refresh());
    // auth:expired is followed by the server's DISCONNECT, handled above.
  }

  private onStreamEvent(e: StreamEvent): void {
    this.stats.eventsReceived += 1;
    const outcome = this.sync.applyEvent(e);
    this.handle(outcome);
    if (outcome.kind === 'applied' && this.awaiting === 'replay') {
      this.replayed += 1;
      this.setState({ kind: 'catching-up', events: this.replayed });
    }
  }

  /** A resync on the socket: reconnect without `lastSeq`, so the server sends a snapshot. */
  private handle(outcome: Outcome): void {
    if (outcome.kind !== 'resync' || !this.socket) return;
    this.pendingResync = outcome.reason;
    this.sync.forgetPosition();
    this.socket.disconnect().connect();
  }

  private becomeCurrent(): void {
    if (this.pendingResync) {
      const reason = this.pendingResync;
      this.pendingResync = null;
      this.setState({ kind: 'resynced-after-gap', reason });
      if (this.noticeTimer) clearTimeout(this.noticeTimer);
      this.noticeTimer = setTimeout(() => {
        if (this.stateValue.kind === 'resynced-after-gap') this.setState({ kind: 'live' });
      }, this.opts.resyncNoticeMs ?? 8000);
    } else {
      this.setState({ kind: 'live' });
    }
  }

  private socketDown(problem: Problem): void {
    this.awaiting = null;
    if (this.stateValue.kind !== 'http-fallback') {
      this.setState({ kind: 'reconnecting', attempt: this.shownAttempt(), problem });
    }
    this.fallback.start();
  }

  /**
   * The attempt the officer is told about, counted from 1: right after a
   * drop socket.io-client has not started attempt 1 yet, but it is the one
   * under way (waiting for its backoff).
   */
  private shownAttempt(): number {
    return Math.max(1, this.attempt);
  }

  private scheduleManualConnect(): void {
    if (!this.stopped) this.manual.schedule();
  }

  /** In-band refresh on `auth:expiring`: the socket stays up, nothing is missed. */
  private async refresh(): Promise<void> {
    if (!this.socket) return;
    if (await refreshToken(this.socket, this.opts.tokenProvider)) this.stats.refreshOk += 1;
    else this.stats.refreshFailed += 1;
  }

  private setState(s: ConnState): void {
    this.stateValue = s;
    for (const l of this.stateListeners) l(s);
  }

  private scheduleSave(): void {
    if (this.saveTimer) return;
    this.saveTimer = setTimeout(() => this.flushSave(), 1000);
  }

  flushSave(): void {
    if (this.saveTimer) clearTimeout(this.saveTimer);
    this.saveTimer = null;
    persist.save(this.opts.storage ?? null, this.sync);
  }
}
