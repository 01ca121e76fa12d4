// Contract §2 — authentication: handshake errors, token sources, HS256 only,
// subject/identity claims, roles, WATCHER_ROLES, JWT_LEEWAY_SECONDS, REST codes.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from '../lib/server.mjs';
import {
  connect, connectError, connectDriver, connectWatcher, closeAll, fix, rest, settle,
} from '../lib/client.mjs';
import { signJwt, nowSeconds, randomSecret, mintToken } from '../lib/token.mjs';

const DEFAULT_WATCHER_ROLES = ['officer', 'admin', 'radio_center', 'executive', 'developer'];

describe('§2 authentication', () => {
  let server;
  let watcher; // sees every driver's events, to read the identity the server derived

  before(async () => {
    server = await startServer();
    watcher = await connectWatcher(server);
  });
  after(async () => {
    closeAll();
    await server?.dispose();
  });

  const expectRefused = async (opts, message) => {
    const err = await connectError(server, opts);
    assert.equal(err.message, message);
    return err;
  };

  /** Connect as a driver with a raw token, send one fix, return the driverId the watcher saw. */
  const identityOf = async (token) => {
    const d = await connect(server, { token });
    const f = fix();
    const ack = await d.emitAck('location:update', f);
    assert.equal(ack.status, 'ok', JSON.stringify(ack));
    const ev = await watcher.waitFor('location:updated', (e) => e.id === f.id);
    d.close();
    return ev.driverId;
  };

  test("no token → connect_error 'Authentication required'", async () => {
    await expectRefused({}, 'Authentication required');
    await expectRefused({ transports: ['polling'] }, 'Authentication required');
  });

  test("malformed tokens → 'Invalid token'", async () => {
    for (const token of ['abc', 'a.b.c', 'eyJhbGciOiJIUzI1NiJ9.e30', `${server.driverToken()}x`]) {
      await expectRefused({ token }, 'Invalid token');
    }
  });

  test("wrong secret → 'Invalid token'", async () => {
    const token = mintToken(randomSecret(), { id: 1, email: 'a@b.c', role: 'driver', driver_id: 'd1' });
    await expectRefused({ token }, 'Invalid token');
    await expectRefused({ token: mintToken(randomSecret(), { id: 1, role: 'officer' }) }, 'Invalid token');
  });

  test("alg none (any spelling), HS384 and HS512 are refused with 'Invalid token'", async () => {
    const claims = { id: 7, email: 'x@y.z', role: 'officer', iat: nowSeconds(), exp: nowSeconds() + 3600 };
    for (const alg of ['none', 'None', 'NONE']) {
      await expectRefused({ token: signJwt(claims, server.secret, { alg: 'none', header: { alg } }) }, 'Invalid token');
    }
    // alg none carrying a valid HS256 signature of the same input is still 'none'
    const hs = signJwt(claims, server.secret);
    const noneInput = signJwt(claims, server.secret, { alg: 'none' }).split('.').slice(0, 2).join('.');
    await expectRefused({ token: `${noneInput}.${hs.split('.')[2]}` }, 'Invalid token');
    await expectRefused({ token: signJwt(claims, server.secret, { alg: 'HS512' }) }, 'Invalid token');
    await expectRefused({ token: signJwt(claims, server.secret, { alg: 'HS384' }) }, 'Invalid token');
    // the same claims as HS256 are fine
    const ok = await connect(server, { token: hs });
    ok.close();
  });

  test("expired token → 'Token expired' (no leeway by default)", async () => {
    const now = nowSeconds();
    await expectRefused({ token: server.token({ id: 1, role: 'driver', driver_id: 'x', iat: now - 3600, exp: now - 5 }) }, 'Token expired');
    await expectRefused({ token: server.token({ id: 2, role: 'officer', iat: now - 3600, exp: now - 3 }) }, 'Token expired');
    await expectRefused({ query: { token: server.token({ id: 3, role: 'officer', exp: now - 60 }) } }, 'Token expired');
  });

  test("missing subject, role or exp → 'Invalid token'", async () => {
    const exp = nowSeconds() + 3600;
    await expectRefused({ token: signJwt({ email: 'a@b.c', role: 'driver', driver_id: 'd', exp }, server.secret) }, 'Invalid token');
    await expectRefused({ token: signJwt({ id: 5, email: 'a@b.c', exp }, server.secret) }, 'Invalid token');
    await expectRefused({ token: signJwt({ id: 5, email: 'a@b.c', role: 'officer' }, server.secret) }, 'Invalid token');
    await expectRefused({ token: signJwt({ id: 5, role: 'officer', exp: String(exp) }, server.secret) }, 'Invalid token');
  });

  test('nbf is honoured when present', async () => {
    const now = nowSeconds();
    await expectRefused({ token: server.token({ id: 9, role: 'officer', nbf: now + 600 }) }, 'Invalid token');
    const ok = await connect(server, { token: server.token({ id: 9, role: 'officer', nbf: now - 10 }) });
    ok.close();
  });

  test("valid token with a role that may not use /locations → 'Forbidden'", async () => {
    for (const role of ['passenger', 'patient', 'user', 'officers', 'driver_admin']) {
      await expectRefused({ token: server.token({ id: 11, email: 'p@x.y', role }) }, 'Forbidden');
    }
  });

  test('token via auth.token and via query `token`; auth.token wins over the query', async () => {
    const viaAuth = await connect(server, { token: server.watcherToken() });
    viaAuth.close();
    const driverId = `q-${Date.now()}`;
    const q = await connect(server, { query: { token: server.driverToken({ driverId }) }, transports: ['polling'] });
    const f = fix();
    assert.equal((await q.emitAck('location:update', f)).status, 'ok');
    assert.equal((await watcher.waitFor('location:updated', (e) => e.id === f.id)).driverId, driverId);
    q.close();
    const qw = await connect(server, { query: { token: server.watcherToken() } });
    qw.close();
    // both present: auth.token is used
    const good = await connect(server, { token: server.watcherToken(), query: { token: 'garbage' } });
    good.close();
    await expectRefused({ token: 'garbage', query: { token: server.watcherToken() } }, 'Invalid token');
  });

  test('subject is userId, else id, else user_id; identity is driver_id else subject (always a string)', async () => {
    const base = { email: 's@x.y', role: 'driver' };
    assert.equal(await identityOf(server.token({ ...base, userId: 'u-1', id: 'i-1', user_id: 'x-1' })), 'u-1');
    assert.equal(await identityOf(server.token({ ...base, id: 'i-2', user_id: 'x-2' })), 'i-2');
    assert.equal(await identityOf(server.token({ ...base, user_id: 'x-3' })), 'x-3');
    assert.equal(await identityOf(server.token({ ...base, id: 'i-4', driver_id: 'drv-4' })), 'drv-4');
  });

  test('numeric ids are accepted and compared/reported as strings', async () => {
    assert.equal(await identityOf(server.token({ email: 'n@x.y', role: 'driver', id: 4242 })), '4242');
    assert.equal(await identityOf(server.token({ email: 'n@x.y', role: 'driver', userId: 77 })), '77');
    assert.equal(await identityOf(server.token({ email: 'n@x.y', role: 'driver', id: 5, driver_id: 9001 })), '9001');
    // numeric driverId in the payload equal to a numeric identity is accepted
    const d = await connect(server, { token: server.token({ email: 'n@x.y', role: 'driver', id: 5, driver_id: 9002 }) });
    const ack = await d.emitAck('location:update', fix({ driverId: 9002 }));
    assert.equal(ack.status, 'ok', JSON.stringify(ack));
    d.close();
  });

  test('roles are case-insensitive (driver and watchers)', async () => {
    for (const role of ['DRIVER', 'Driver', 'dRiVeR']) {
      const driverId = `case-${role}-${Date.now()}`;
      assert.equal(await identityOf(server.token({ id: 1, role, driver_id: driverId })), driverId);
    }
    for (const role of ['OFFICER', 'Admin', 'RADIO_CENTER', 'Executive', 'DEVELOPER']) {
      const w = await connectWatcher(server, { role });
      assert.ok(Array.isArray(w.snapshot.drivers), `${role} gets a snapshot`);
      w.close();
    }
  });

  test('every default watcher role gets the watcher stream; a driver gets no snapshot', async () => {
    for (const role of DEFAULT_WATCHER_ROLES) {
      const w = await connectWatcher(server, { role });
      assert.equal(typeof w.snapshot.streamId, 'string');
      w.close();
    }
    const d = await connectDriver(server);
    await d.emitAck('location:update', fix()); // round-trip barrier
    await settle();
    assert.equal(d.all('drivers:snapshot').length, 0);
    d.close();
  });

  test('REST: 401 with {status:error, code, message} for AUTH_REQUIRED / INVALID_TOKEN / TOKEN_EXPIRED; 403 FORBIDDEN for a wrong role', async () => {
    const now = nowSeconds();
    const expired = server.token({ id: 1, role: 'officer', iat: now - 100, exp: now - 10 });
    const forged = mintToken(randomSecret(), { id: 1, role: 'officer' });
    const none = signJwt({ id: 1, role: 'officer', exp: now + 600 }, server.secret, { alg: 'none' });
    const cases = [
      ['GET', '/api/realtime/latest', undefined, 401, 'AUTH_REQUIRED'],
      ['GET', '/api/realtime/latest', 'not-a-jwt', 401, 'INVALID_TOKEN'],
      ['GET', '/api/realtime/latest', forged, 401, 'INVALID_TOKEN'],
      ['GET', '/api/realtime/latest', none, 401, 'INVALID_TOKEN'],
      ['GET', '/api/realtime/latest', expired, 401, 'TOKEN_EXPIRED'],
      ['GET', '/api/realtime/latest', server.token({ id: 1, role: 'passenger' }), 403, 'FORBIDDEN'],
      ['GET', '/api/realtime/events?since=0', server.driverToken(), 403, 'FORBIDDEN'],
      ['GET', '/api/realtime/latest', server.driverToken(), 403, 'FORBIDDEN'],
      ['POST', '/api/realtime/locations', undefined, 401, 'AUTH_REQUIRED'],
      ['POST', '/api/driver-locations', expired, 401, 'TOKEN_EXPIRED'],
      ['POST', '/api/realtime/locations', server.watcherToken(), 403, 'FORBIDDEN'],
      ['POST', '/api/driver-locations', server.token({ id: 1, role: 'passenger' }), 403, 'FORBIDDEN'],
      ['POST', '/api/realtime/status', server.watcherToken({ role: 'admin' }), 403, 'FORBIDDEN'],
    ];
    for (const [method, path, token, status, code] of cases) {
      const r = await rest(server, method, path, { token, body: method === 'POST' ? fix() : undefined });
      assert.equal(r.status, status, `${method} ${path} (${code}): ${r.status} ${r.text}`);
      assert.equal(r.body?.status, 'error', `${method} ${path}: ${r.text}`);
      assert.equal(r.body?.code, code, `${method} ${path}: ${r.text}`);
      assert.equal(typeof r.body?.message, 'string');
    }
  });
});

describe('§2 WATCHER_ROLES override', () => {
  let server;
  before(async () => { server = await startServer({ env: { WATCHER_ROLES: 'dispatcher, Supervisor' } }); });
  after(async () => { closeAll(); await server?.dispose(); });

  test('listed roles (case-insensitive, trimmed) are watchers; default watcher roles are then Forbidden', async () => {
    for (const role of ['dispatcher', 'DISPATCHER', 'supervisor', 'SuperVisor']) {
      const w = await connectWatcher(server, { role });
      assert.ok(Array.isArray(w.snapshot.drivers));
      w.close();
    }
    for (const role of ['officer', 'admin']) {
      const err = await connectError(server, { token: server.watcherToken({ role }) });
      assert.equal(err.message, 'Forbidden');
    }
    const r = await rest(server, 'GET', '/api/realtime/latest', { token: server.watcherToken({ role: 'officer' }) });
    assert.equal(r.status, 403);
    assert.equal(r.body?.code, 'FORBIDDEN');
    const ok = await rest(server, 'GET', '/api/realtime/latest', { token: server.watcherToken({ role: 'Dispatcher' }) });
    assert.equal(ok.status, 200, ok.text);
  });

  test('drivers still work and the new watchers receive their events', async () => {
    const w = await connectWatcher(server, { role: 'dispatcher' });
    const d = await connectDriver(server);
    const f = fix();
    assert.equal((await d.emitAck('location:update', f)).status, 'ok');
    await w.waitFor('location:updated', (e) => e.id === f.id);
    d.close();
    w.close();
  });
});

describe('§2 JWT_LEEWAY_SECONDS', () => {
  let server;
  before(async () => { server = await startServer({ env: { JWT_LEEWAY_SECONDS: 120 } }); });
  after(async () => { closeAll(); await server?.dispose(); });

  test('a token expired within the leeway is accepted; beyond it is Token expired', async () => {
    const now = nowSeconds();
    const within = await connect(server, { token: server.token({ id: 1, role: 'officer', iat: now - 3600, exp: now - 30 }) });
    within.close();
    const err = await connectError(server, { token: server.token({ id: 1, role: 'officer', iat: now - 3600, exp: now - 600 }) });
    assert.equal(err.message, 'Token expired');
    const r = await rest(server, 'GET', '/api/realtime/latest', { token: server.token({ id: 1, role: 'officer', exp: now - 30 }) });
    assert.equal(r.status, 200, r.text);
    const r2 = await rest(server, 'GET', '/api/realtime/latest', { token: server.token({ id: 1, role: 'officer', exp: now - 600 }) });
    assert.equal(r2.status, 401);
    assert.equal(r2.body?.code, 'TOKEN_EXPIRED');
  });
});

describe('§6 tokens in a query string are never written to logs', () => {
  let server;
  // the most verbose logging the server can be asked for
  before(async () => { server = await startServer({ env: { RUST_LOG: 'trace' } }); });
  after(async () => { closeAll(); await server?.dispose(); });

  test('query-string tokens (socket polling + websocket, REST) do not appear in the server output', async () => {
    const tokens = [server.watcherToken(), server.driverToken(), server.driverToken()];
    const w = await connect(server, { query: { token: tokens[0] }, transports: ['polling'] });
    const d = await connect(server, { query: { token: tokens[1] }, transports: ['websocket'] });
    const f = fix();
    assert.equal((await d.emitAck('location:update', f)).status, 'ok');
    await connectError(server, { query: { token: `${tokens[2]}tampered` } });
    await rest(server, 'GET', `/api/realtime/latest?token=${tokens[0]}`, { token: tokens[0] });
    await rest(server, 'GET', `/socket.io/?EIO=4&transport=polling&token=${tokens[2]}`);
    w.close();
    d.close();
    await rest(server, 'GET', '/healthz'); // the server writes its log lines as they happen
    const out = server.output;
    assert.ok(out.length > 0, 'the server logged something at trace level');
    for (const t of tokens) {
      const sig = t.split('.')[2];
      assert.equal(out.includes(t), false, 'a full token was logged');
      assert.equal(out.includes(sig), false, 'a token signature was logged');
    }
  });
});
