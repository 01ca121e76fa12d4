// A fake WeCare backend for the §10 tests (position forwarding and
// revocation): an HTTP server on 127.0.0.1 that behaves like the deployed
// backend (jetci/EMS `wecare-backend/`, read for this, not copied) in
// everything the server meets:
//
//  Every /api request passes a per-client-address limiter (express-rate-limit
//  as deployed: a fixed window that starts at the address's first request,
//  `limit` requests per `windowMs`, 100 a minute by default; refused
//  requests count too). Every answer carries the draft-6 headers
//  `RateLimit-Policy`, `RateLimit-Limit`, `RateLimit-Remaining`,
//  `RateLimit-Reset`; a 429 adds `Retry-After` (the reset, in seconds) and
//  the body {"error":"Too many requests from this IP, please slow down",…}.
//
//  authenticateToken (the middleware of the protected routes): no bearer →
//  401 "Authentication required"; a bad signature or an expired token → 403
//  "Invalid or expired token"; no `id` → 401; a logged-out token → 401
//  "Token has been revoked".
//
//  PUT /api/driver-locations/:driverId  { latitude, longitude, status? }
//      authenticateToken, then the role list of the mount (admin, DEVELOPER,
//      OFFICER, radio_center, driver, EXECUTIVE, case-insensitive; 403
//      "Insufficient permissions" otherwise); 400 when latitude/longitude
//      are missing or not valid coordinates; else it INSERTS a location row
//      (one per call: `history`) and, when the body has a truthy `status`,
//      writes it verbatim into the driver's status. 200.
//  GET /api/driver-locations            per driver: the newest row and the driver's status
//  GET /api/facilities                  authenticateToken only: a cheap route that honours logout
//  GET /api/auth/me                     its own signature check, NOT the logout list (as deployed)
//  POST /api/auth/logout                adds the bearer to the logout list (kept in memory)
//
// `restart()` is a process restart: connections dropped, the logout list
// and the limiter's counts forgotten (both live in memory), rows and
// statuses kept (they are in the database).
//
// Deliberate differences: a PUT for a driver the backend does not know
// creates it (the real one answers 500, a foreign-key error), and /me
// answers 200 for any valid token (the real one 404s an unknown user id).
//
// Every request is recorded in arrival order (`requests`: at, method, path,
// driverId, body, bearer, claims, status, answeredAt), and `until()` waits
// for a condition on them, re-checked on every request and answer.
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
/** The roles the deployed backend admits to /api/driver-locations. */
export const DRIVER_LOCATION_ROLES = ['admin', 'DEVELOPER', 'OFFICER', 'radio_center', 'driver', 'EXECUTIVE'];

export class Backend extends EventEmitter {
  /** `limit` requests per `windowMs` per client address (Infinity: no limiter). */
  constructor(secret, { limit = 100, windowMs = 60_000 } = {}) {
    super();
    this.setMaxListeners(0);
    this.secret = secret;
    this.limit = limit;
    this.windowMs = windowMs;
    this.port = null;
    this.mode = 'ok';
    this.rejected = new Set();
    this.blacklist = new Set();
    this.windows = new Map(); // client address → { start, count }
    this.statuses = new Map(); // driverId → status (the drivers table)
    this.history = []; // every location row inserted: { driverId, latitude, longitude, at }
    this.rows = new Map(); // driverId → newest { latitude, longitude, recordedAt, seq, updatedAt }
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
  /** An AUTH_CHECK_URL for this backend that honours logout (as the README says). */
  get authCheckUrl() { return `${this.url}/api/facilities`; }
  /** The backend's GET /api/auth/me, which does not honour logout. */
  get meUrl() { return `${this.url}/api/auth/me`; }

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

  /** A process restart: what lives in memory (logout list, limiter) is forgotten. */
  async restart() {
    await this.refuse();
    this.blacklist.clear();
    this.windows.clear();
    await this.resume();
  }

  /** 'ok' | 'error500' | 'slow' (see the module docs). */
  setMode(mode) {
    if (!['ok', 'error500', 'slow'].includes(mode)) throw new Error(`unknown mode ${mode}`);
    this.mode = mode;
  }

  rejectDriver(driverId) { this.rejected.add(String(driverId)); }
  acceptDriver(driverId) { this.rejected.delete(String(driverId)); }

  /** The dispatcher's side: the backend sets a driver's status itself (e.g. ON_DUTY on ride assignment). */
  setDriverStatus(driverId, status) { this.statuses.set(String(driverId), status); }

  /** Log a token out, as its POST /api/auth/logout does. */
  logout(token) { this.blacklist.add(token); }

  /** Recorded PUTs of position for `driverId` (all, whatever their answer). */
  puts(driverId) {
    return this.requests.filter((r) => r.method === 'PUT' && r.driverId !== undefined && (driverId === undefined || r.driverId === String(driverId)));
  }

  /** Recorded token checks (calls to the AUTH_CHECK_URL routes). */
  authChecks() { return this.requests.filter((r) => r.path === '/api/facilities' || r.path === '/api/auth/me'); }

  /** Recorded requests answered 429. */
  throttled() { return this.requests.filter((r) => r.status === 429); }

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
      rec.claims = rec.bearer ? verifyJwt(rec.bearer, this.secret) : null;
      const m = /^\/api\/driver-locations\/([^/]+)$/.exec(url.pathname);
      if (m) {
        try { rec.driverId = decodeURIComponent(m[1]); } catch { rec.driverId = m[1]; }
      }
      this.requests.push(rec);
      this.emit('change');
      const headers = { 'content-type': 'application/json' };
      const answer = (status, body, store) => {
        if (res.destroyed || req.socket.destroyed) {
          rec.status = 'aborted';
        } else {
          if (store) store();
          rec.status = status;
          rec.headers = headers;
          res.writeHead(status, headers);
          res.end(JSON.stringify(body));
        }
        rec.answeredAt = Date.now();
        this.emit('change');
      };
      if (rec.path.startsWith('/api/') && !this.#admit(req, headers)) {
        return answer(429, { error: 'Too many requests from this IP, please slow down', retryAfter: '1 minute' });
      }
      return this.#route(req, rec, answer);
    });
  }

  /** The limiter: counts the request, sets its headers; false when over the limit. */
  #admit(req, headers) {
    if (!Number.isFinite(this.limit)) return true;
    const key = req.socket.remoteAddress ?? '?';
    const now = Date.now();
    let w = this.windows.get(key);
    if (!w || now >= w.start + this.windowMs) {
      w = { start: now, count: 0 };
      this.windows.set(key, w);
    }
    w.count += 1;
    const reset = Math.max(0, Math.ceil((w.start + this.windowMs - now) / 1000));
    headers['ratelimit-policy'] = `${this.limit};w=${Math.round(this.windowMs / 1000)}`;
    headers['ratelimit-limit'] = String(this.limit);
    headers['ratelimit-remaining'] = String(Math.max(0, this.limit - w.count));
    headers['ratelimit-reset'] = String(reset);
    if (w.count <= this.limit) return true;
    headers['retry-after'] = String(reset);
    return false;
  }

  /** authenticateToken: the claims, or answers the refusal and returns null. */
  #authenticate(rec, answer) {
    if (!rec.bearer) { answer(401, { error: 'Authentication required' }); return null; }
    if (!rec.claims) { answer(403, { error: 'Invalid or expired token' }); return null; }
    if (!rec.claims.id) { answer(401, { error: 'Invalid token payload' }); return null; }
    if (this.blacklist.has(rec.bearer)) { answer(401, { error: 'Token has been revoked' }); return null; }
    return rec.claims;
  }

  /** The mount's requireRole, case-insensitive. */
  #roleAdmitted(claims) {
    const role = String(claims.role ?? '').toLowerCase();
    return DRIVER_LOCATION_ROLES.some((r) => r.toLowerCase() === role);
  }

  #route(req, rec, answer) {
    if (this.mode === 'error500') return answer(500, { error: 'Internal server error' });
    const run = () => {
      if (rec.path === '/api/auth/me' && req.method === 'GET') {
        if (!rec.bearer) return answer(401, { error: 'No token provided' });
        return rec.claims ? answer(200, { id: rec.claims.id, email: rec.claims.email, role: rec.claims.role }) : answer(401, { error: 'Invalid token' });
      }
      if (rec.path === '/api/auth/logout' && req.method === 'POST') {
        if (rec.claims) this.blacklist.add(rec.bearer);
        return answer(200, { message: 'Logged out successfully' });
      }
      if (rec.path === '/api/facilities' && req.method === 'GET') {
        if (!this.#authenticate(rec, answer)) return undefined;
        return answer(200, []);
      }
      const locations = rec.path === '/api/driver-locations' || rec.driverId !== undefined;
      if (locations) {
        const claims = this.#authenticate(rec, answer);
        if (!claims) return undefined;
        if (!this.#roleAdmitted(claims)) {
          return answer(403, {
            error: 'Insufficient permissions',
            message: `This resource requires one of the following roles: ${DRIVER_LOCATION_ROLES.join(', ')}`,
            userRole: claims.role,
            requiredRoles: DRIVER_LOCATION_ROLES,
          });
        }
      }
      if (rec.path === '/api/driver-locations' && req.method === 'GET') {
        return answer(200, [...this.rows].map(([driverId, r]) => ({ driverId, ...r, status: this.statuses.get(driverId) ?? 'AVAILABLE' })));
      }
      if (rec.driverId !== undefined && req.method === 'PUT') {
        if (this.rejected.has(rec.driverId)) return answer(400, { error: 'Driver not found' });
        const b = rec.body && typeof rec.body === 'object' ? rec.body : {};
        const { latitude, longitude } = b;
        if (latitude === undefined || longitude === undefined) return answer(400, { error: 'Missing required fields: latitude, longitude' });
        const [lat, lng] = [Number(latitude), Number(longitude)];
        if (!Number.isFinite(lat) || !Number.isFinite(lng) || lat < -90 || lat > 90 || lng < -180 || lng > 180) {
          return answer(400, { error: 'Invalid coordinates. Latitude must be between -90 and 90, longitude between -180 and 180' });
        }
        return answer(200, { success: true, location: { driverId: rec.driverId, latitude: lat, longitude: lng, lastUpdated: new Date().toISOString() } }, () => {
          const at = Date.now();
          this.history.push({ driverId: rec.driverId, latitude: lat, longitude: lng, at });
          // As deployed: any truthy status is written over the driver's, verbatim.
          if (b.status) this.statuses.set(rec.driverId, b.status);
          this.rows.set(rec.driverId, { latitude: lat, longitude: lng, recordedAt: b.recordedAt, seq: b.seq, updatedAt: at });
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

/**
 * A fake backend listening on a free loopback port, checking tokens with
 * `secret`; `limit` per `windowMs` per client address (default 100 a
 * minute, as deployed; Infinity turns the limiter off).
 */
export function startBackend({ secret, limit, windowMs }) {
  return new Backend(secret, { limit, windowMs }).listen();
}
