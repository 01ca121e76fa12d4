// Client-side helpers: the official socket.io-client v4, an event recorder
// with timeout-bounded waits, and a raw node:http REST helper.
import { io } from 'socket.io-client';
import http from 'node:http';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';

export const DEFAULT_WAIT_MS = 5000;
export const ISO_MS_Z = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
export const STREAM_EVENTS = new Set(['location:updated', 'driver:status:updated', 'driver:presence']);

export const uid = () => randomUUID();

export function withTimeout(promise, ms, what) {
  let t;
  return Promise.race([
    promise,
    new Promise((_, rej) => { t = setTimeout(() => rej(new Error(`timeout after ${ms} ms waiting for ${what}`)), ms); }),
  ]).finally(() => clearTimeout(t));
}

/** Poll `cond` (sync or async) every `intervalMs` until truthy; returns its value. */
export async function waitUntil(cond, { timeoutMs = DEFAULT_WAIT_MS, intervalMs = 25, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timeout after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/**
 * For ABSENCE assertions only (nothing can be awaited for "X never arrives"):
 * give in-flight frames a short moment after a positive barrier.
 */
export const settle = (ms = 150) => new Promise((r) => setTimeout(r, ms));

const openPeers = new Set();

/** Close every socket this process opened (for `after` hooks). */
export function closeAll() {
  for (const p of [...openPeers]) p.close();
}

/** A connected (or connecting) socket plus an ordered log of every event it received. */
export class Peer {
  constructor(socket) {
    this.socket = socket;
    openPeers.add(this);
    this.events = []; // { name, data, args, at }
    this.disconnects = [];
    this.listeners = new Set();
    socket.onAny((name, ...args) => {
      this.events.push({ name, data: args[0], args, at: Date.now() });
      this.#notify();
    });
    socket.on('disconnect', (reason, details) => {
      this.disconnects.push({ reason, details, at: Date.now() });
      this.#notify();
    });
  }

  #notify() { for (const l of [...this.listeners]) l(); }

  get id() { return this.socket.id; }
  get connected() { return this.socket.connected; }
  get transport() { return this.socket.io.engine?.transport?.name; }

  all(name, pred = () => true) {
    return this.events.filter((e) => e.name === name && pred(e.data)).map((e) => e.data);
  }

  /** Stream events (location:updated, driver:status:updated, driver:presence) in arrival order. */
  stream() {
    return this.events.filter((e) => STREAM_EVENTS.has(e.name)).map((e) => ({ type: e.name, ...e.data }));
  }

  names() { return this.events.map((e) => e.name); }

  /** Resolve when `check()` returns a truthy value (checked now and on every new event). */
  until(check, timeoutMs, what) {
    const v = check();
    if (v) return Promise.resolve(v);
    let listener;
    const p = new Promise((resolve) => {
      listener = () => { const r = check(); if (r) resolve(r); };
      this.listeners.add(listener);
    });
    return withTimeout(p, timeoutMs, what).finally(() => this.listeners.delete(listener));
  }

  /** First received `name` event (past or future) whose payload matches `pred`. */
  waitFor(name, pred = () => true, timeoutMs = DEFAULT_WAIT_MS) {
    return this.until(() => {
      const e = this.events.find((x) => x.name === name && pred(x.data));
      return e ? { v: e.data } : null;
    }, timeoutMs, `event ${name}`).then((r) => r.v);
  }

  /** Wait until at least `n` matching `name` events were received; returns them all. */
  waitForCount(name, n, pred = () => true, timeoutMs = DEFAULT_WAIT_MS) {
    return this.until(() => {
      const list = this.all(name, pred);
      return list.length >= n ? list : null;
    }, timeoutMs, `${n} x ${name} (have ${this.all(name, pred).length})`);
  }

  waitDisconnect(timeoutMs = DEFAULT_WAIT_MS) {
    return this.until(() => this.disconnects[0] ?? null, timeoutMs, 'disconnect');
  }

  /** Emit with an ack callback; resolves with the ack's first argument. */
  emitAck(event, ...args) { return this.emitAckWithin(DEFAULT_WAIT_MS, event, ...args); }

  emitAckWithin(timeoutMs, event, ...args) {
    return this.socket.timeout(timeoutMs).emitWithAck(event, ...args)
      .catch((err) => { throw new Error(`no ack for ${event} within ${timeoutMs} ms (${err.message})`); });
  }

  emit(event, ...args) { this.socket.emit(event, ...args); }

  close() {
    openPeers.delete(this);
    this.socket.disconnect();
    this.socket.io.engine?.close();
  }
}

/** Build (but do not connect) a socket with a recorder attached. */
export function makePeer(server, {
  token,
  auth,
  query,
  transports = ['websocket'],
  extraHeaders,
  reconnection = false,
  upgrade,
  path,
  timeoutMs = DEFAULT_WAIT_MS,
  url,
} = {}) {
  const a = { ...(auth ?? {}) };
  if (token !== undefined && a.token === undefined) a.token = token;
  const opts = {
    forceNew: true,
    autoConnect: false,
    reconnection,
    transports,
    auth: a,
    timeout: timeoutMs,
  };
  if (query) opts.query = query;
  if (extraHeaders) opts.extraHeaders = extraHeaders;
  if (upgrade !== undefined) opts.upgrade = upgrade;
  if (path) opts.path = path;
  const socket = io(url ?? server.nsUrl, opts);
  return new Peer(socket);
}

/** Connect; resolves with the Peer, rejects with the connect_error. */
export function connect(server, opts = {}) {
  const peer = makePeer(server, opts);
  const timeoutMs = (opts.timeoutMs ?? DEFAULT_WAIT_MS) + 1000;
  const p = new Promise((resolve, reject) => {
    peer.socket.once('connect', () => resolve(peer));
    peer.socket.once('connect_error', (err) => {
      peer.socket.disconnect();
      const e = new Error(`connect_error: ${err.message}`);
      e.connectError = err;
      reject(e);
    });
  });
  peer.socket.connect();
  return withTimeout(p, timeoutMs, 'socket connect').catch((err) => { peer.close(); throw err; });
}

/** Expect the connection to be refused; resolves with the connect_error Error. */
export function connectError(server, opts = {}) {
  const peer = makePeer(server, opts);
  const timeoutMs = (opts.timeoutMs ?? DEFAULT_WAIT_MS) + 1000;
  const p = new Promise((resolve, reject) => {
    peer.socket.once('connect', () => {
      peer.close();
      reject(new Error('connection was accepted, expected connect_error'));
    });
    peer.socket.once('connect_error', (err) => { peer.close(); resolve(err); });
  });
  peer.socket.connect();
  return withTimeout(p, timeoutMs, 'connect_error');
}

/** Driver socket; returns { peer, driverId, email, token }. */
export async function connectDriver(server, { driverId, email, tokenOpts = {}, ...opts } = {}) {
  const id = driverId ?? `drv-${uid().slice(0, 8)}`;
  const mail = email ?? `${id}@drivers.wecare.test`;
  const token = opts.token ?? server.driverToken({ driverId: id, email: mail, ...tokenOpts });
  const peer = await connect(server, { ...opts, token });
  return Object.assign(peer, { driverId: id, email: mail, token });
}

/**
 * Watcher socket. Without lastSeq, waits for the initial drivers:snapshot;
 * with lastSeq it returns right after connect (the caller awaits
 * sync:complete or drivers:snapshot).
 */
export async function connectWatcher(server, { role = 'officer', lastSeq, streamId, waitSnapshot, ...opts } = {}) {
  const token = opts.token ?? server.watcherToken({ role });
  const auth = { ...(opts.auth ?? {}) };
  if (lastSeq !== undefined) auth.lastSeq = lastSeq;
  if (streamId !== undefined) auth.streamId = streamId;
  const peer = await connect(server, { ...opts, auth, token });
  peer.token = token;
  if (waitSnapshot ?? lastSeq === undefined) peer.snapshot = await peer.waitFor('drivers:snapshot');
  return peer;
}

/**
 * A watcher the way a well-behaved app runs one: stock reconnection, and an
 * auth function so every (re)connect carries the last processed seq and the
 * streamId. Resolves after the first drivers:snapshot.
 */
export async function connectResumingWatcher(server, { role = 'officer', transports = ['websocket'] } = {}) {
  const token = server.watcherToken({ role });
  const state = { last: null, streamId: null };
  const socket = io(server.nsUrl, {
    forceNew: true,
    transports,
    auth: (cb) => cb(state.last === null ? { token } : { token, lastSeq: state.last, streamId: state.streamId }),
  });
  const peer = new Peer(socket);
  socket.on('drivers:snapshot', (snap) => { state.streamId = snap.streamId; state.last = snap.seq; });
  for (const name of STREAM_EVENTS) socket.on(name, (e) => { state.last = e.seq; });
  peer.resume = state;
  peer.token = token;
  peer.snapshot = await peer.waitFor('drivers:snapshot');
  return peer;
}

/** A plausible fix. */
export function fix(overrides = {}) {
  // 7 decimals, like a GPS fix (full-precision doubles have their own test)
  return {
    id: uid(),
    lat: Number((13.7563 + Math.random() * 0.01).toFixed(7)),
    lng: Number((100.5018 + Math.random() * 0.01).toFixed(7)),
    recordedAt: new Date().toISOString(),
    ...overrides,
  };
}

export function isoAgo(ms) { return new Date(Date.now() - ms).toISOString(); }

/**
 * Raw HTTP request (node:http, so any header and any body bytes can be sent).
 * Resolves { status, headers, text, body } (body = parsed JSON or undefined).
 */
export function rest(server, method, path, { token, body, raw, headers = {}, timeoutMs = DEFAULT_WAIT_MS, port } = {}) {
  const h = { ...headers };
  if (token) h.authorization = `Bearer ${token}`;
  let payload = null;
  if (raw !== undefined) payload = Buffer.isBuffer(raw) ? raw : Buffer.from(raw);
  else if (body !== undefined) payload = Buffer.from(JSON.stringify(body));
  if (payload && !Object.keys(h).some((k) => k.toLowerCase() === 'content-type')) h['content-type'] = 'application/json';
  if (payload) h['content-length'] = String(payload.length);
  return new Promise((resolve, reject) => {
    let responded = false;
    const req = http.request({ host: '127.0.0.1', port: port ?? server.port, method, path, headers: h, agent: false }, (res) => {
      responded = true;
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let parsed;
        try { parsed = text ? JSON.parse(text) : undefined; } catch { parsed = undefined; }
        resolve({ status: res.statusCode, headers: res.headers, text, body: parsed });
      });
      res.on('error', reject);
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`HTTP ${method} ${path} timed out after ${timeoutMs} ms`)));
    // A server may answer early (e.g. 413) and close while the body is still
    // being written: the response counts, the write error does not.
    req.on('error', (err) => { if (!responded) reject(err); });
    if (payload) req.write(payload);
    req.end();
  });
}

// ---- ack assertions (contract §3) ----

export const RETRYABLE = { INVALID_PAYLOAD: false, INVALID_COORDINATES: false, FORBIDDEN: false, RATE_LIMITED: true, UNAVAILABLE: true };
export function assertOk(ack, sent) {
  assert.equal(ack?.status, 'ok', JSON.stringify(ack));
  if (sent?.id !== undefined) assert.equal(ack.id, sent.id);
  assert.equal(typeof ack.id, 'string');
  assert.ok(Number.isInteger(ack.seq) && ack.seq >= 1, `seq ${ack.seq}`);
  assert.match(ack.timestamp, ISO_MS_Z);
  assert.equal(typeof ack.duplicate, 'boolean');
}

export function assertError(ack, code, what = '') {
  assert.equal(ack?.status, 'error', `${what}: ${JSON.stringify(ack)}`);
  assert.equal(ack.code, code, `${what}: ${JSON.stringify(ack)}`);
  assert.equal(typeof ack.message, 'string', `${what}: message`);
  assert.equal(ack.retryable, RETRYABLE[code], `${what}: retryable for ${code}`);
}

// ---- additions for lifecycle.test.mjs / flood.test.mjs ----

/**
 * Every stored event with seq > `since`, paging GET /api/realtime/events
 * (limit 1000) until the head. Resolves { streamId, events, lastSeq }.
 */
export async function allEvents(server, { since = 0, token } = {}) {
  const tok = token ?? server.watcherToken();
  const events = [];
  let from = since;
  let streamId;
  for (let page = 0; page < 1000; page += 1) {
    const r = await rest(server, 'GET', `/api/realtime/events?since=${from}&limit=1000`, { token: tok });
    assert.equal(r.status, 200, r.text.slice(0, 300));
    streamId = r.body.streamId;
    events.push(...r.body.events);
    if (r.body.events.length === 0) return { streamId, events, lastSeq: r.body.lastSeq };
    from = r.body.lastSeq;
  }
  throw new Error('allEvents: too many pages');
}

/** Prometheus text → Map of `name{labels}` → number (samples only). */
export async function metricsSnapshot(server) {
  const r = await rest(server, 'GET', '/metrics');
  assert.equal(r.status, 200, r.text.slice(0, 200));
  const m = new Map();
  for (const line of r.text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    m.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return m;
}

/**
 * A raw Engine.IO v4 long-polling session (no socket.io-client), to send
 * frames the official client never would. `post(raw)` sends one payload,
 * `get()` reads what the server queued.
 */
export async function rawPollingSession(server) {
  const base = '/socket.io/?EIO=4&transport=polling';
  const open = await rest(server, 'GET', base);
  assert.equal(open.status, 200, open.text);
  const { sid } = JSON.parse(open.text.slice(open.text.indexOf('{')));
  const p = `${base}&sid=${encodeURIComponent(sid)}`;
  return {
    sid,
    post: (raw) => rest(server, 'POST', p, { raw, headers: { 'content-type': 'text/plain;charset=UTF-8' } }),
    get: (timeoutMs = 10_000) => rest(server, 'GET', p, { timeoutMs }),
  };
}
