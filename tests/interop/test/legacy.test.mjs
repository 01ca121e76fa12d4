// Compatibility with the deployed WeCare web client (socketService.ts, the
// driver location tracker and the Map Command / live status panels), which
// must work against this server unchanged. The two classes below behave
// exactly like those clients: stock socket.io-client options (only forceNew,
// so two "browser tabs" can live in one process, and the Origin header a
// browser on the dev server would send), backend-issued tokens without any
// of the new fields, no message ids, no lastSeq.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { io } from 'socket.io-client';
import { startServer } from '../lib/server.mjs';
import { nowSeconds } from '../lib/token.mjs';
import { withTimeout, waitUntil, ISO_MS_Z } from '../lib/client.mjs';

const BROWSER_ORIGIN = 'http://localhost:5173';
const ACK_GIVE_UP_MS = 5000; // the web client's ack timeout before the HTTP fallback

/** Token as the WeCare backend issues it: { id, email, role, driver_id?, exp } (exp in seconds). */
function backendToken(server, claims) {
  return server.token({ ...claims, iat: undefined, exp: nowSeconds() + 7 * 24 * 3600 });
}

class LegacyDriverApp {
  constructor(server, token, driverId) {
    this.server = server;
    this.token = token;
    this.driverId = driverId;
    this.socket = io(`${server.url}/locations`, { auth: { token }, forceNew: true, extraHeaders: { Origin: BROWSER_ORIGIN } });
    this.errors = [];
    this.socket.on('error', (e) => this.errors.push(e));
  }

  ready() {
    return withTimeout(new Promise((resolve, reject) => {
      if (this.socket.connected) resolve();
      this.socket.once('connect', resolve);
      this.socket.once('connect_error', reject);
    }), 5000, 'legacy driver connect');
  }

  /** sendLocation: ack.status === 'ok' is success; no ok ack within 5 s → POST /api/driver-locations, same body. */
  sendLocation(data) {
    return new Promise((resolve) => {
      let done = false;
      const fallback = async () => {
        const res = await fetch(`${this.server.url}/api/driver-locations`, {
          method: 'POST',
          headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${this.token}` },
          body: JSON.stringify(data),
        });
        let body = null;
        try { body = await res.json(); } catch { /* keep null */ }
        resolve({ via: 'http', ok: res.ok, httpStatus: res.status, body });
      };
      const timer = setTimeout(() => { if (!done) { done = true; fallback(); } }, ACK_GIVE_UP_MS);
      this.socket.emit('location:update', data, (ack) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        if (ack && ack.status === 'ok') resolve({ via: 'socket', ok: true, ack });
        else fallback();
      });
    });
  }

  setStatus(status, event = 'driver:status') {
    this.socket.emit(event, { driverId: this.driverId, status });
  }

  close() { this.socket.disconnect(); }
}

class LegacyOfficerMap {
  constructor(server, token) {
    this.socket = io(`${server.url}/locations`, { auth: { token }, forceNew: true, extraHeaders: { Origin: BROWSER_ORIGIN } });
    this.markers = new Map(); // driverId → { lat, lng, status, timestamp }
    this.notifications = [];
    this.updates = 0;
    this.socket.on('location:updated', (data) => {
      this.updates += 1;
      const prev = this.markers.get(data.driverId) ?? {};
      this.markers.set(data.driverId, { ...prev, lat: data.lat, lng: data.lng, status: data.status ?? prev.status, timestamp: data.timestamp });
    });
    this.socket.on('driver:status:updated', (data) => {
      const prev = this.markers.get(data.driverId) ?? {};
      this.markers.set(data.driverId, { ...prev, status: data.status });
    });
    this.socket.on('notification:new', (n) => this.notifications.push(n));
  }

  ready() {
    return withTimeout(new Promise((resolve, reject) => {
      if (this.socket.connected) resolve();
      this.socket.once('connect', resolve);
      this.socket.once('connect_error', reject);
    }), 5000, 'legacy officer connect');
  }

  /** The live status panel counts by upper-case status. */
  countByStatus(status) {
    return [...this.markers.values()].filter((m) => m.status === status).length;
  }

  close() { this.socket.disconnect(); }
}

/**
 * The deployed Map Command page: rows `{ driverId, driverName, latitude,
 * longitude, status, lastUpdated }` from the backend's 10-second poll, and
 * each `location:updated` merged into its row with `{ ...row, ...event }`.
 */
class MapCommandPage {
  constructor(server, token, rows) {
    this.rows = rows.map((r) => ({ ...r }));
    this.socket = io(`${server.url}/locations`, { auth: { token }, forceNew: true, extraHeaders: { Origin: BROWSER_ORIGIN } });
    this.socket.on('location:updated', (event) => {
      this.rows = this.rows.map((row) => (String(row.driverId) === String(event.driverId) ? { ...row, ...event } : row));
    });
  }

  ready() {
    return withTimeout(new Promise((resolve, reject) => {
      if (this.socket.connected) resolve();
      this.socket.once('connect', resolve);
      this.socket.once('connect_error', reject);
    }), 5000, 'Map Command connect');
  }

  /** Where the page draws the marker of `driverId`. */
  marker(driverId) {
    const row = this.rows.find((r) => String(r.driverId) === String(driverId));
    return row && { lat: row.latitude, lng: row.longitude, at: row.lastUpdated, name: row.driverName };
  }

  close() { this.socket.disconnect(); }
}

describe('legacy WeCare web client compatibility', () => {
  let server;
  const apps = [];

  before(async () => {
    // Deployed defaults: no ALLOWED_ORIGINS (dev origins), default rate limit and presence grace.
    server = await startServer({ env: { ALLOWED_ORIGINS: null, RATE_LIMIT_PER_SEC: null, PRESENCE_GRACE_MS: null } });
  });
  after(async () => {
    for (const a of apps) a.close();
    await server?.dispose();
  });

  const driverApp = async (driverId, userId) => {
    const token = backendToken(server, { id: userId, email: `driver${userId}@wecare.test`, role: 'driver', driver_id: driverId });
    const app = new LegacyDriverApp(server, token, driverId);
    apps.push(app);
    await app.ready();
    return app;
  };
  const officerMap = async (role = 'officer') => {
    const token = backendToken(server, { id: 900 + apps.length, email: `${role}@wecare.test`, role });
    const map = new LegacyOfficerMap(server, token);
    apps.push(map);
    await map.ready();
    return map;
  };

  test('driver location over the socket: ok ack; the Map keys the marker by driver_id with upper-case status', async () => {
    const map = await officerMap();
    const radio = await officerMap('radio_center');
    const driver = await driverApp('a1b2c3d4-0001', 42);
    const data = { driverId: 'a1b2c3d4-0001', lat: 13.7563, lng: 100.5018, status: 'available', timestamp: new Date().toISOString() };
    const res = await driver.sendLocation(data);
    assert.equal(res.via, 'socket', `fell back to HTTP: ${JSON.stringify(res)}`);
    assert.equal(res.ack.status, 'ok');
    for (const m of [map, radio]) {
      const marker = await waitUntil(() => m.markers.get('a1b2c3d4-0001'), { what: 'marker for driver_id' });
      assert.equal(marker.lat, 13.7563);
      assert.equal(marker.lng, 100.5018);
      assert.equal(marker.status, 'AVAILABLE');
      assert.match(marker.timestamp, ISO_MS_Z);
      assert.equal(m.countByStatus('AVAILABLE') >= 1, true);
    }
    assert.equal(map.markers.has('42'), false, 'keyed by driver_id, not the user id');
    assert.deepEqual(driver.errors, []);
  });

  test('status changes (driver:status and driver:status:update, any case) reach the Map in upper case', async () => {
    const map = await officerMap();
    const driver = await driverApp('a1b2c3d4-0002', 43);
    const res = await driver.sendLocation({ driverId: 'a1b2c3d4-0002', lat: 13.8, lng: 100.6, status: 'ON_DUTY', timestamp: new Date().toISOString() });
    assert.equal(res.via, 'socket');
    await waitUntil(() => map.markers.get('a1b2c3d4-0002')?.status === 'ON_DUTY', { what: 'ON_DUTY marker' });
    driver.setStatus('busy');
    await waitUntil(() => map.markers.get('a1b2c3d4-0002')?.status === 'BUSY', { what: 'BUSY via driver:status' });
    driver.setStatus('On_Trip', 'driver:status:update');
    await waitUntil(() => map.markers.get('a1b2c3d4-0002')?.status === 'ON_TRIP', { what: 'ON_TRIP via driver:status:update' });
    const next = await driver.sendLocation({ driverId: 'a1b2c3d4-0002', lat: 13.81, lng: 100.61, timestamp: new Date().toISOString() });
    assert.equal(next.via, 'socket');
    await waitUntil(() => map.markers.get('a1b2c3d4-0002')?.lat === 13.81, { what: 'moved marker' });
    assert.equal(map.markers.get('a1b2c3d4-0002').status, 'ON_TRIP', 'status is kept on later fixes');
    assert.deepEqual(driver.errors, []);
  });

  test('no ok ack within 5 s → HTTP fallback POST /api/driver-locations with the same body succeeds and reaches the Map', async () => {
    const map = await officerMap();
    const driver = await driverApp('a1b2c3d4-0003', 44);
    driver.socket.disconnect(); // the socket is down (e.g. the tab lost its connection): no ack will come
    const data = { driverId: 'a1b2c3d4-0003', lat: 14.0208, lng: 100.5250, status: 'available', timestamp: new Date().toISOString() };
    const t0 = Date.now();
    const res = await withTimeout(driver.sendLocation(data), ACK_GIVE_UP_MS + 5000, 'legacy sendLocation');
    assert.equal(res.via, 'http');
    assert.ok(Date.now() - t0 >= ACK_GIVE_UP_MS - 50);
    assert.equal(res.httpStatus, 200, JSON.stringify(res.body));
    assert.equal(res.body?.status, 'ok');
    assert.equal(res.body.results?.[0]?.status, 'ok');
    const marker = await waitUntil(() => map.markers.get('a1b2c3d4-0003'), { what: 'marker from HTTP fallback' });
    assert.equal(marker.lat, 14.0208);
    assert.equal(marker.status, 'AVAILABLE');
  });

  test('the HTTP fallback alone (driver never connected) works with the backend token and the web body', async () => {
    const map = await officerMap();
    const token = backendToken(server, { id: 45, email: 'driver45@wecare.test', role: 'driver', driver_id: 'a1b2c3d4-0005' });
    const ts = new Date(Date.now() - 30_000).toISOString();
    const res = await fetch(`${server.url}/api/driver-locations`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}`, Origin: BROWSER_ORIGIN },
      body: JSON.stringify({ driverId: 'a1b2c3d4-0005', lat: 13.9, lng: 100.4, status: 'busy', timestamp: ts }),
    });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('access-control-allow-origin'), BROWSER_ORIGIN);
    const body = await res.json();
    assert.equal(body.status, 'ok');
    const marker = await waitUntil(() => map.markers.get('a1b2c3d4-0005'), { what: 'marker' });
    assert.equal(marker.status, 'BUSY');
    assert.equal(marker.lat, 13.9);
  });

  test('(v1.2) the Map Command page merges events into its rows ({ ...row, ...event }): markers follow the fixes', async () => {
    const token = backendToken(server, { id: 901, email: 'officer901@wecare.test', role: 'officer' });
    // What the backend's stale poll returned: the row is where the driver was an hour ago.
    const stale = { driverId: 'a1b2c3d4-0007', driverName: 'from the poll', latitude: 13.0, longitude: 100.0, status: 'AVAILABLE', lastUpdated: new Date(Date.now() - 3_600_000).toISOString() };
    const page = new MapCommandPage(server, token, [stale]);
    apps.push(page);
    await page.ready();
    const driverToken = backendToken(server, { id: 47, email: 'driver47@wecare.test', role: 'driver', driver_id: 'a1b2c3d4-0007', full_name: 'สมชาย ใจดี' });
    const driver = new LegacyDriverApp(server, driverToken, 'a1b2c3d4-0007');
    apps.push(driver);
    await driver.ready();
    for (const [lat, lng] of [[13.7563, 100.5018], [13.7571, 100.5025], [13.7580, 100.5031]]) {
      const timestamp = new Date().toISOString();
      const res = await driver.sendLocation({ driverId: 'a1b2c3d4-0007', lat, lng, timestamp });
      assert.equal(res.via, 'socket', JSON.stringify(res));
      const m = await waitUntil(() => (page.marker('a1b2c3d4-0007')?.lat === lat ? page.marker('a1b2c3d4-0007') : null), { what: `marker at ${lat}` });
      assert.equal(m.lng, lng);
      assert.equal(new Date(m.at).getTime(), new Date(timestamp).getTime(), 'lastUpdated is the fix time');
      assert.match(m.at, ISO_MS_Z);
      assert.equal(m.name, 'สมชาย ใจดี', 'driverName from the token name claim');
    }
  });

  test('(v1.2) the HTTP fallback checks only response.ok: a refused fix is not counted as delivered, a good one is', async () => {
    const token = backendToken(server, { id: 48, email: 'driver48@wecare.test', role: 'driver', driver_id: 'a1b2c3d4-0008' });
    const driver = new LegacyDriverApp(server, token, 'a1b2c3d4-0008');
    apps.push(driver);
    await driver.ready();
    driver.socket.disconnect();
    const sent = [
      { driverId: 'a1b2c3d4-0008', lat: 200, lng: 100.5, timestamp: new Date().toISOString() },
      { driverId: 'somebody-else', lat: 13.7, lng: 100.5, timestamp: new Date().toISOString() },
      { driverId: 'a1b2c3d4-0008', lat: 13.7, lng: 100.5, timestamp: new Date().toISOString() },
    ];
    const results = await withTimeout(Promise.all(sent.map((d) => driver.sendLocation(d))), ACK_GIVE_UP_MS + 5000, 'legacy sendLocation');
    assert.deepEqual(results.map((r) => r.via), ['http', 'http', 'http']);
    assert.deepEqual(results.map((r) => r.httpStatus), [400, 403, 200]);
    const delivered = sent.filter((_, k) => results[k].ok).map((d) => d.lat);
    assert.deepEqual(delivered, [13.7], 'only the valid fix counts as delivered');
  });

  test('a numeric driver_id claim and numeric driverId in the body work as the same identity', async () => {
    const map = await officerMap();
    const token = backendToken(server, { id: 46, email: 'driver46@wecare.test', role: 'driver', driver_id: 5150 });
    const app = new LegacyDriverApp(server, token, 5150);
    apps.push(app);
    await app.ready();
    const res = await app.sendLocation({ driverId: 5150, lat: 13.5, lng: 100.5, status: 'AVAILABLE', timestamp: new Date().toISOString() });
    assert.equal(res.via, 'socket', JSON.stringify(res));
    const marker = await waitUntil(() => map.markers.get('5150'), { what: 'marker keyed "5150"' });
    assert.equal(marker.status, 'AVAILABLE');
  });
});
