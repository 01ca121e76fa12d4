// A fake WeCare backend for the §10 tests (position forwarding and
// revocation): an HTTP server on 127.0.0.1 that behaves like the real
// routes the server talks to.
//
//  PUT /api/driver-locations/:driverId  { latitude, longitude, status }
//      bearer required (any valid, not logged-out token, as the real
//      `authenticateToken`), 400 when latitude/longitude are missing or out
//      of range (like the real handler), else the row is stored (upsert by
//      driver) and 200.
//  GET /api/driver-locations            the stored rows (what the Map Command page polls)
//  GET /api/auth/me                     200 for a valid token that was not logged out, 401 otherwise
//
// Tokens are checked like the backend does: HS256 with the shared
// JWT_SECRET, `exp` in epoch seconds, and a logout blacklist (`logout`).
//
// Every request is recorded in arrival order (`requests`: at, method, path,
// driverId, body, bearer, claims, status, answeredAt), and `until()` waits for a
// condition on them, re-checked on every request and answer.
//
// Failure modes: `refuse()` stops listening (and drops open connections;
// `resume()` listens again on the same port), `setMode('error500')` answers
// every request 500, `setMode('slow')` answers after SLOW_MS (beyond the
// server's 10 s request timeout; a request whose client gave up meanwhile
// is not stored, like a handler that checks for an aborted request), and
// `rejectDriver(id)` answers that driver's PUTs 400.
import http from 'node:http';
import { EventEmitter } from 'node:events';
import { verifyJwt } from './token.mjs';

export const SLOW_MS = 12_000;
const MAX_BODY = 1 << 20;

export class Backend extends EventEmitter {
  constructor(secret) {
    super();
    this.setMaxListeners(0);
    this.secret = secret;
    this.port = null;
    this.mode = 'ok';
    this.rejected = new Set();
    this.blacklist = new Set();
    this.rows = new Map(); // driverId → { latitude, longitude, status, recordedAt, seq, updatedAt }
    this.requests = [];
    this.sockets = new Set();
    this.timers = new Set();
    this.listening = false;
    this.server = http.createServer((req, res) => this.#handle(req, res));
    this.server.keepAliveTimeout = 30_000;
    this.server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
  }

  get url() { return `http://127.0.0.1:${this.port}`; }
  /** A FORWARD_URL template for this backend. */
  get forwardUrl() { return `${this.url}/api/driver-locations/{driverId}`; }
  /** An AUTH_CHECK_URL for this backend. */
  get authCheckUrl() { return `${this.url}/api/auth/me`; }

  /** Listen (on `port`, or a free one the first time). */
  listen(port = this.port ?? 0) {
    return new Promise((resolve, reject) => {
      const onError = (err) => reject(err);
      this.server.once('error', onError);
      this.server.listen(port, '127.0.0.1', () => {
        this.server.off('error', onError);
        this.port = this.server.address().port;
        this.listening = true;
        resolve(this);
      });
    });
  }

  /** Stop listening and drop every open connection: calls are refused. */
  async refuse() {
    if (!this.listening) return;
    this.listening = false;
    const closed = new Promise((resolve) => this.server.close(() => resolve()));
    for (const s of this.sockets) s.destroy();
    await closed;
  }

  /** Listen again on the same port. */
  resume() { return this.listen(this.port); }

  /** 'ok' | 'error500' | 'slow' (see the module docs). */
  setMode(mode) {
    if (!['ok', 'error500', 'slow'].includes(mode)) throw new Error(`unknown mode ${mode}`);
    this.mode = mode;
  }

  rejectDriver(driverId) { this.rejected.add(String(driverId)); }
  acceptDriver(driverId) { this.rejected.delete(String(driverId)); }

  /** Log a token out: the backend refuses it from now on. */
  logout(token) { this.blacklist.add(token); }

  /** Claims of a valid, not logged-out bearer token, else null. */
  authenticate(req) {
    const h = req.headers.authorization ?? '';
    if (!h.startsWith('Bearer ')) return null;
    const token = h.slice(7).trim();
    if (this.blacklist.has(token)) return null;
    return verifyJwt(token, this.secret);
  }

  /** Recorded PUTs of position for `driverId` (all, whatever their answer). */
  puts(driverId) {
    return this.requests.filter((r) => r.method === 'PUT' && r.driverId !== undefined && (driverId === undefined || r.driverId === String(driverId)));
  }

  /** Recorded calls to /api/auth/me. */
  authChecks() { return this.requests.filter((r) => r.path === '/api/auth/me'); }

  /**
   * Resolve with cond()'s value once truthy (checked now and on every
   * request and answer). `what` (a string, or a function called on timeout)
   * describes it.
   */
  until(cond, timeoutMs, what = 'backend condition') {
    const v = cond();
    if (v) return Promise.resolve(v);
    return new Promise((resolve, reject) => {
      const check = () => {
        const r = cond();
        if (r) { cleanup(); resolve(r); }
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`timeout after ${timeoutMs} ms waiting for ${typeof what === 'function' ? what() : what}`));
      }, timeoutMs);
      const cleanup = () => { clearTimeout(timer); this.off('change', check); };
      this.on('change', check);
    });
  }

  async close() {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    await this.refuse();
  }

  #handle(req, res) {
    const chunks = [];
    let size = 0;
    req.on('data', (c) => {
      size += c.length;
      if (size <= MAX_BODY) chunks.push(c);
    });
    req.on('end', () => {
      const url = new URL(req.url, 'http://backend');
      const rec = { at: Date.now(), method: req.method, path: url.pathname, body: undefined, claims: null, status: null, answeredAt: null };
      const text = Buffer.concat(chunks).toString('utf8');
      if (text) {
        try { rec.body = JSON.parse(text); } catch { rec.body = text; }
      }
      const auth = req.headers.authorization ?? '';
      rec.bearer = auth.startsWith('Bearer ') ? auth.slice(7).trim() : null;
      rec.claims = this.authenticate(req);
      const m = /^\/api\/driver-locations\/([^/]+)$/.exec(url.pathname);
      if (m) {
        try { rec.driverId = decodeURIComponent(m[1]); } catch { rec.driverId = m[1]; }
      }
      this.requests.push(rec);
      this.emit('change');
      const answer = (status, body, store) => {
        if (res.destroyed || req.socket.destroyed) {
          rec.status = 'aborted';
        } else {
          if (store) store();
          rec.status = status;
          res.writeHead(status, { 'content-type': 'application/json' });
          res.end(JSON.stringify(body));
        }
        rec.answeredAt = Date.now();
        this.emit('change');
      };
      this.#route(req, rec, answer);
    });
  }

  #route(req, rec, answer) {
    if (this.mode === 'error500') return answer(500, { error: 'Internal server error' });
    const run = () => {
      if (rec.path === '/api/auth/me' && req.method === 'GET') {
        return rec.claims ? answer(200, { user: rec.claims }) : answer(401, { error: 'Invalid or expired token' });
      }
      if (rec.path === '/api/driver-locations' && req.method === 'GET') {
        if (!rec.claims) return answer(401, { error: 'Access token required' });
        return answer(200, [...this.rows].map(([driverId, r]) => ({ driverId, ...r })));
      }
      if (rec.driverId !== undefined && req.method === 'PUT') {
        if (!rec.claims) return answer(401, { error: 'Access token required' });
        if (this.rejected.has(rec.driverId)) return answer(400, { error: 'Driver not found' });
        const b = rec.body ?? {};
        const { latitude, longitude } = typeof b === 'object' ? b : {};
        if (typeof latitude !== 'number' || typeof longitude !== 'number') return answer(400, { error: 'Latitude and longitude are required' });
        if (latitude < -90 || latitude > 90 || longitude < -180 || longitude > 180) return answer(400, { error: 'Invalid coordinates' });
        return answer(200, { message: 'Location updated' }, () => {
          this.rows.set(rec.driverId, { latitude, longitude, status: b.status, recordedAt: b.recordedAt, seq: b.seq, updatedAt: Date.now() });
        });
      }
      return answer(404, { error: 'Not found' });
    };
    if (this.mode === 'slow') {
      const t = setTimeout(() => { this.timers.delete(t); run(); }, SLOW_MS);
      this.timers.add(t);
      return undefined;
    }
    return run();
  }
}

/** A fake backend listening on a free loopback port, checking tokens with `secret`. */
export function startBackend({ secret }) {
  return new Backend(secret).listen();
}
