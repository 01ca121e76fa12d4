/**
 * A drop-in for the deployed WeCare web app's `src/services/socketService.ts`
 * (`jetci/EMS`): the same exports, names, signatures and behaviour its
 * components rely on — `initializeSocket`, `getSocket`, `disconnectSocket`,
 * `sendLocationUpdate`, `updateCurrentLocation`, `onLocationUpdated`,
 * `onDriverStatusUpdated`, `onNotification`, `off`, the default export and
 * `LocationData` — with this project's clients behind them:
 *
 * - `sendLocationUpdate` puts the fix, with an id, in the durable IndexedDB
 *   outbox and returns at once; the driver client sends it (newest first,
 *   acks, backoff, HTTP fallback), and resends after a reload, a crash or
 *   days offline: stored once. Tabs of one driver share the outbox and elect
 *   one sender (Web Locks), so each fix is sent once.
 * - `on…` listeners get the stream with `auth.lastSeq`/`streamId` resume,
 *   the position kept per tab across reloads (`sessionStorage`): a reloaded
 *   page misses nothing within retention and gets nothing twice.
 * - The token is read from `localStorage.wecare_token` on every attempt;
 *   expiry and in-band refresh as the server asks.
 *
 * Every difference a caller could notice is listed in this package's README.
 */
import type { Socket } from 'socket.io-client';
import { DriverClient } from '../client/driver';
import { ServerEvent } from '../client/events';
import { IndexedDbOutbox, MemoryOutbox, type Outbox } from '../client/outbox';
import { ManualReconnect, openSocket, refreshToken, type LocationsSocket } from '../client/socket';

/** What the deployed components send (the tracker: driverId, lat, lng, status; others: timestamp). */
export interface LocationData {
  driverId?: string;
  lat: number;
  lng: number;
  status?: string;
  timestamp?: string;
}

type Callback = (data: any) => void; // eslint-disable-line @typescript-eslint/no-explicit-any

const TOKEN_KEY = 'wecare_token';
/** Where a tab keeps its place in the stream across reloads (per tab: sessionStorage). */
const POSITION_KEY = 'wecare.rt.compat.position.v1';
const OUTBOX_DB = 'wecare.rt.compat.outbox.v1';
const NOTIFICATION_NEW = 'notification:new';
const STREAM_EVENTS = [ServerEvent.LocationUpdated, ServerEvent.DriverStatusUpdated, ServerEvent.DriverPresence] as const;

function readToken(): string | null {
  try {
    return globalThis.localStorage?.getItem(TOKEN_KEY) ?? null;
  } catch {
    return null;
  }
}

/** As deployed: `VITE_SOCKET_URL` where a bundler defines `process.env`, else this page's origin. */
function serverUrl(): string {
  const fromEnv = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.VITE_SOCKET_URL;
  if (fromEnv) return fromEnv.replace(/\/+$/, '');
  if (typeof window !== 'undefined' && window.location?.origin) return window.location.origin;
  return 'http://localhost:3000';
}

/** The token's claims (not verified: the server does that), to tell a driver from a watcher. */
function claimsOf(token: string): Record<string, unknown> {
  try {
    const part = (token.split('.')[1] ?? '').replace(/-/g, '+').replace(/_/g, '/');
    const bytes = Uint8Array.from(atob(part), (c) => c.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes)) as Record<string, unknown>;
  } catch {
    return {};
  }
}

interface Position {
  streamId: string;
  lastSeq: number;
}

function loadPosition(): Position | null {
  try {
    const raw = globalThis.sessionStorage?.getItem(POSITION_KEY);
    const p = raw ? (JSON.parse(raw) as Position) : null;
    return p && typeof p.streamId === 'string' && Number.isInteger(p.lastSeq) ? p : null;
  } catch {
    return null;
  }
}

function savePosition(p: Position): void {
  try {
    globalThis.sessionStorage?.setItem(POSITION_KEY, JSON.stringify(p));
  } catch {
    /* storage full or unavailable: the next reload starts from a snapshot */
  }
}

/** One page's connection: the socket every listener uses, and for a driver the sender. */
class Session {
  readonly socket: LocationsSocket;
  private position = loadPosition();
  private readonly manual: ManualReconnect;
  private closed = false;
  private driver: DriverClient | null = null;
  private outbox: Promise<Outbox> | null = null;
  /** Fixes handed to `record`, in call order. */
  private recording: Promise<unknown> = Promise.resolve();
  private readonly wakeChannel: BroadcastChannel | null = null;
  private releaseLead: (() => void) | null = null;
  private readonly listeners = new Map<string, Set<Callback>>();

  constructor(readonly isDriver: boolean, readonly driverId: string | null) {
    this.socket = openSocket({ baseUrl: serverUrl(), auth: async () => this.auth() });
    this.manual = new ManualReconnect(() => {
      if (!this.closed && !this.socket.connected) this.socket.connect();
    });
    this.bind();
    if (isDriver) {
      this.outbox = openOutbox();
      if (typeof BroadcastChannel !== 'undefined') {
        this.wakeChannel = new BroadcastChannel(`${OUTBOX_DB}:${driverId ?? ''}`);
        this.wakeChannel.onmessage = () => this.driver?.poke();
      }
      void this.lead();
    }
  }

  private auth(): object {
    const token = readToken();
    if (!token) return {};
    // A driver's lastSeq is ignored by the server; only watchers resume.
    return this.position && !this.isDriver
      ? { token, lastSeq: this.position.lastSeq, streamId: this.position.streamId }
      : { token };
  }

  private bind(): void {
    const s = this.socket;
    s.on('connect', () => this.manual.reset());
    s.on('disconnect', (reason) => {
      // The server ended the session (token expired, too many sockets):
      // socket.io-client does not reconnect by itself; with a fresh token we do.
      if (reason === 'io server disconnect' && !this.closed) this.manual.schedule();
    });
    s.on('connect_error', () => {
      if (!s.active && !this.closed) this.manual.schedule();
    });
    s.on(ServerEvent.AuthExpiring, () => void refreshToken(s, async () => readToken() ?? Promise.reject(new Error('no token'))));
    s.on(ServerEvent.DriversSnapshot, (snap) => {
      this.position = { streamId: snap.streamId, lastSeq: snap.seq };
      savePosition(this.position);
    });
  }

  /**
   * Adds `cb` for `event`. One dispatcher per event name stands between the
   * socket and the callbacks: a stream event seen before (this tab had
   * processed it before a reload) reaches none of them, every other one
   * reaches all, and the tab's position moves on with it.
   */
  listen(event: string, cb: Callback): () => void {
    let callbacks = this.listeners.get(event);
    if (!callbacks) {
      const set = new Set<Callback>();
      callbacks = set;
      this.listeners.set(event, set);
      const stream = (STREAM_EVENTS as readonly string[]).includes(event);
      this.socket.on(event as never, ((data: { seq?: unknown }) => {
        if (stream && typeof data?.seq === 'number' && !this.advance(data.seq)) return;
        for (const f of [...set]) f(data);
      }) as never);
    }
    callbacks.add(cb);
    return () => this.unlisten(event, cb);
  }

  /** As `socket.off(event, cb)`: that callback, or every callback of `event`. */
  unlisten(event: string, cb?: Callback): void {
    const callbacks = this.listeners.get(event);
    if (cb) callbacks?.delete(cb);
    else callbacks?.clear();
  }

  /** Moves the tab's position to `seq`; false when it was already there (a repeat). */
  private advance(seq: number): boolean {
    if (!this.position) return true;
    if (seq <= this.position.lastSeq) return false;
    this.position = { ...this.position, lastSeq: seq };
    savePosition(this.position);
    return true;
  }

  /** Records a fix in the outbox, in call order; resolves once it is stored. */
  record(data: LocationData): Promise<unknown> {
    const outbox = this.outbox ?? (this.outbox = openOutbox());
    const fix = {
      lat: data.lat,
      lng: data.lng,
      recordedAt: data.timestamp ?? new Date().toISOString(),
      ...(data.status ? { status: data.status } : {}),
    };
    this.recording = this.recording.then(async () => {
      if (this.driver) return this.driver.record(fix);
      const stored = await (await outbox).add(fix);
      this.wakeChannel?.postMessage('wake');
      return stored;
    });
    return this.recording;
  }

  whenStored(): Promise<void> {
    return this.recording.then(() => undefined);
  }

  /** Becomes this driver's one sender among its tabs (Web Locks), for as long as the page lives. */
  private async lead(): Promise<void> {
    const start = async () => {
      if (this.closed) return;
      const outbox = await this.outbox!;
      const driver = new DriverClient({
        baseUrl: serverUrl(),
        tokenProvider: async () => readToken() ?? Promise.reject(new Error('No authentication token found')),
        outbox,
      });
      this.driver = driver;
      driver.start();
      await new Promise<void>((release) => {
        this.releaseLead = release;
      });
    };
    const locks = (globalThis.navigator as Navigator | undefined)?.locks;
    if (!locks) return start(); // every tab sends; the server's dedup keeps each fix once
    await locks.request(`${OUTBOX_DB}:${this.driverId ?? ''}`, start);
  }

  close(): void {
    this.closed = true;
    this.manual.cancel();
    this.driver?.stop();
    this.driver = null;
    this.releaseLead?.();
    this.wakeChannel?.close();
    this.socket.disconnect();
  }
}

let warnedMemory = false;
async function openOutbox(): Promise<Outbox> {
  try {
    return await IndexedDbOutbox.open({ name: OUTBOX_DB });
  } catch (e) {
    if (!warnedMemory) {
      warnedMemory = true;
      console.warn(`[wecare-rt] IndexedDB is not available (${(e as Error)?.message ?? e}): unsent fixes are kept in memory only and lost if the page closes`);
    }
    return new MemoryOutbox();
  }
}

let session: Session | null = null;

/** Opens the page's socket (as deployed: throws when there is no token). */
export function initializeSocket(): Socket {
  if (session) return session.socket as unknown as Socket;
  const token = readToken();
  if (!token) throw new Error('No authentication token found');
  const claims = claimsOf(token);
  const driverId = claims.driver_id != null ? String(claims.driver_id) : null;
  const isDriver = driverId !== null || String(claims.role ?? '').toLowerCase() === 'driver';
  session = new Session(isDriver, driverId ?? (claims.id != null ? String(claims.id) : null));
  return session.socket as unknown as Socket;
}

/** The page's socket, opened on first use. */
export function getSocket(): Socket {
  return session ? (session.socket as unknown as Socket) : initializeSocket();
}

/** Closes the socket (fixes not yet sent stay in the outbox for the next page). */
export function disconnectSocket(): void {
  session?.close();
  session = null;
}

/** Queues a fix for sending and returns at once (it is stored durably first). */
export function sendLocationUpdate(data: LocationData): void {
  getSocket();
  void session!.record(data).catch((e) => console.warn('[wecare-rt] a fix could not be stored', e));
}

/**
 * Kept for the deployed API. The deployed module sent this position over
 * HTTP every 10 s while disconnected; here every fix handed to
 * `sendLocationUpdate` is kept and sent (over HTTP too when the socket stays
 * down), so there is nothing more to do with it.
 */
export function updateCurrentLocation(data: LocationData): void {
  current = data;
}
let current: LocationData | null = null;

export function onLocationUpdated(callback: Callback): () => void {
  getSocket();
  return session!.listen(ServerEvent.LocationUpdated, callback);
}

export function onDriverStatusUpdated(callback: Callback): () => void {
  getSocket();
  return session!.listen(ServerEvent.DriverStatusUpdated, callback);
}

export function onNotification(callback: Callback): () => void {
  getSocket();
  return session!.listen(NOTIFICATION_NEW, callback);
}

export function off(event: string, callback?: Callback): void {
  session?.unlisten(event, callback);
}

/**
 * Resolves once every fix handed to `sendLocationUpdate` so far is stored
 * (in IndexedDB, or in memory where it is unavailable). Not in the deployed
 * module: for a logout or an app that wants to know.
 */
export function whenStored(): Promise<void> {
  return session ? session.whenStored() : Promise.resolve();
}

/**
 * Ends this token's sessions on the server (`POST /api/realtime/logout`: its
 * sockets close at once, the token is refused from now on) and closes the
 * socket. Not in the deployed module: call it in the app's logout, before
 * the token is removed from local storage. Unsent fixes stay in the outbox.
 */
export async function logout(): Promise<void> {
  const token = readToken();
  disconnectSocket();
  if (!token) return;
  try {
    await fetch(`${serverUrl()}/api/realtime/logout`, { method: 'POST', headers: { Authorization: `Bearer ${token}` } });
  } catch {
    /* offline: the token still expires, and the backend's own logout applies */
  }
}

/** The position last handed to `updateCurrentLocation` (not in the deployed module). */
export function currentLocation(): LocationData | null {
  return current;
}

export default {
  initializeSocket,
  getSocket,
  disconnectSocket,
  sendLocationUpdate,
  updateCurrentLocation,
  onLocationUpdated,
  onDriverStatusUpdated,
  onNotification,
  off,
};
