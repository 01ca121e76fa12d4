// Contract v1.3 §4 and §10 — beside the WeCare backend as deployed: its
// driver-locations route admits only some roles, a limiter allows 100
// requests a minute per client address on all of /api (429 with
// Retry-After and RateLimit-* headers), it writes any status it is sent over
// the one its dispatcher set, it keeps a row per PUT, its GET /api/auth/me
// ignores logout while its other routes honour it, and it forgets its logout
// list when it restarts. The fake of lib/backend.mjs does all of that; the
// server runs with its defaults unless a test says otherwise
// (BACKEND_MAX_CALLS_PER_MIN 90, FORWARD_MIN_INTERVAL_MS 10000,
// FORWARD_TOKEN_ROLE driver).
import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, pgAdminUrl } from '../lib/server.mjs';
import { startBackend } from '../lib/backend.mjs';
import { randomSecret } from '../lib/token.mjs';
import {
  connect, connectError, connectDriver, connectWatcher, closeAll, fix, rest, metricsSnapshot, waitUntil, ISO_MS_Z,
} from '../lib/client.mjs';

const started = [];
/**
 * A fake backend, then a server forwarding to it. `serverEnv`: extra
 * variables, or a function of the backend giving them (its URLs).
 */
async function setup(serverEnv = {}, backendOpts = {}) {
  const secret = randomSecret();
  const backend = await startBackend({ secret, ...backendOpts });
  started.push(backend);
  const extra = typeof serverEnv === 'function' ? serverEnv(backend) : serverEnv;
  const server = await startServer({ secret, env: { FORWARD_URL: backend.forwardUrl, ...extra } });
  started.push(server);
  return { backend, server, secret };
}

/** Resolve after `ms`: the length of a scenario, not a wait for an event. */
const hold = (ms) => new Promise((r) => setTimeout(r, Math.max(0, ms)));

/** Most backend requests that arrived within any `windowMs`. */
function busiestWindow(requests, windowMs = 60_000) {
  const at = requests.map((r) => r.at).sort((a, b) => a - b);
  let most = 0;
  for (let i = 0, j = 0; i < at.length; i += 1) {
    while (at[i] - at[j] >= windowMs) j += 1;
    most = Math.max(most, i - j + 1);
  }
  return most;
}

async function assertHandshakeRefused(server, token, what) {
  const err = await connectError(server, { token });
  assert.equal(err.message, 'Invalid token', `${what}: ${err.message}`);
}

/** auth:expired { reason: "revoked" }, then the server's disconnect. */
async function assertCut(peer, timeoutMs, what) {
  const expired = await peer.waitFor('auth:expired', () => true, timeoutMs);
  assert.equal(expired.reason, 'revoked', `${what}: ${JSON.stringify(expired)}`);
  assert.match(expired.expiredAt, ISO_MS_Z);
  const disc = await peer.waitDisconnect(timeoutMs);
  assert.equal(disc.reason, 'io server disconnect', what);
}

describe('v1.3 beside the WeCare backend as deployed', () => {
  after(async () => {
    closeAll();
    for (const s of started.reverse()) {
      if (typeof s.dispose === 'function') await s.dispose();
      else await s.close();
    }
  });

  // Storage plays no part in the budget; the three-minute run is made once, on the embedded pass.
  test('50 moving drivers at 1 Hz + 20 officers for 3 min, the backend limiting 100/min: no call refused 429, every newest position arrives within the documented bound, none dropped',
    { timeout: 420_000, skip: pgAdminUrl ? 'run on the embedded pass (the budget does not depend on the store)' : false },
    async (t) => {
      const DRIVERS = 50;
      const OFFICERS = 20;
      const RUN_MS = 180_000;
      const BUDGET = 90; // the default BACKEND_MAX_CALLS_PER_MIN
      // README: each moving driver's newest position arrives within about
      // N × 60 / (budget − token checks a minute) s. The checks here: one
      // per token at the handshake; the next ones fall after the run.
      const CHECK_INTERVAL_MS = 600_000;
      const checksPerMin = (DRIVERS + OFFICERS) * 60_000 / CHECK_INTERVAL_MS;
      const boundMs = DRIVERS * 60_000 / (BUDGET - checksPerMin);
      const MARGIN_MS = 12_000; // a fix a second, the round, the last call's time
      const { backend, server } = await setup((b) => ({ AUTH_CHECK_URL: b.authCheckUrl, AUTH_CHECK_INTERVAL_MS: CHECK_INTERVAL_MS }));

      const officers = await Promise.all(Array.from({ length: OFFICERS }, () => connectWatcher(server)));
      const drivers = await Promise.all(Array.from({ length: DRIVERS }, (_, k) => connectDriver(server, { driverId: `fleet-${k}` })));
      const newest = new Map(); // driverId → the newest acked fix
      let sending = true;
      const sends = [];
      const t0 = Date.now();
      const pump = setInterval(() => {
        if (!sending) return;
        for (const d of drivers) {
          const f = fix();
          sends.push(d.emitAckWithin(10_000, 'location:update', f).then((ack) => {
            assert.equal(ack?.status, 'ok', JSON.stringify(ack));
            newest.set(d.driverId, f);
          }));
        }
      }, 1000);
      // From when every driver can have had its first turn, each one's row
      // at the backend is never older than the bound.
      const stale = [];
      let oldest = 0;
      const warmUp = t0 + 90_000;
      const sampler = setInterval(() => {
        const now = Date.now();
        if (now < warmUp || !sending) return;
        for (const d of drivers) {
          const row = backend.rows.get(d.driverId);
          const age = row ? now - Date.parse(row.recordedAt) : Infinity;
          oldest = Math.max(oldest, age);
          if (age > boundMs + MARGIN_MS) stale.push(`${d.driverId} ${Math.round(age / 1000)} s at +${Math.round((now - t0) / 1000)} s`);
        }
      }, 5_000);
      try {
        await hold(RUN_MS);
      } finally {
        sending = false;
        clearInterval(pump);
        clearInterval(sampler);
      }
      await Promise.all(sends);
      const stoppedAt = Date.now();
      assert.deepEqual(stale.slice(0, 10), [], `rows older than the bound (${Math.round(boundMs / 1000)} s + margin): ${stale.length}`);

      // Every driver's newest fix reaches the backend within the bound after the fleet stops.
      const arrived = (d) => backend.rows.get(d.driverId)?.recordedAt === newest.get(d.driverId)?.recordedAt
        && backend.rows.get(d.driverId)?.latitude === newest.get(d.driverId)?.lat;
      await backend.until(() => drivers.every(arrived), boundMs + MARGIN_MS,
        () => `newest positions: ${drivers.filter((d) => !arrived(d)).length} of ${DRIVERS} missing`);
      const lastIn = Date.now() - stoppedAt;
      assert.ok(lastIn <= boundMs + MARGIN_MS, `the last newest position arrived ${lastIn} ms after the stop`);

      // After the first 429 (if any), none; and no minute ever exceeded the budget.
      const throttled = backend.throttled();
      assert.ok(throttled.length <= 1, `calls answered 429: ${throttled.length}`);
      assert.ok(busiestWindow(backend.requests) <= BUDGET, `${busiestWindow(backend.requests)} calls in one minute`);
      // Forwards and token checks shared it: every token was checked.
      assert.ok(backend.authChecks().length >= DRIVERS + OFFICERS, `token checks: ${backend.authChecks().length}`);
      t.diagnostic(`bound ${Math.round(boundMs / 1000)} s; oldest row seen after the warm-up ${Math.round(oldest / 1000)} s; `
        + `last newest position ${Math.round(lastIn / 1000)} s after the stop; busiest minute ${busiestWindow(backend.requests)} calls; `
        + `429s ${throttled.length}; forwards ${backend.puts().length}; token checks ${backend.authChecks().length}`);
      const m = await metricsSnapshot(server);
      assert.equal(m.get('wecare_forward_skipped_total'), 0, 'nothing dropped');
      assert.equal(m.get('wecare_backend_budget_calls_per_minute'), BUDGET);
      assert.equal(m.get('wecare_backend_budget_short'), 0, 'no shortage once the fleet stopped');
      assert.match(server.output, /BACKEND_MAX_CALLS_PER_MIN is too small/, 'the shortage during the run was said in the log');
      assert.equal(server.output.match(/BACKEND_MAX_CALLS_PER_MIN is too small/g).length, 1, 'said once');
      // The officers stayed connected all along, and the forwarded token is a driver's.
      for (const o of officers) assert.ok(o.connected && o.all('auth:expired').length === 0);
      assert.ok(backend.puts().every((p) => p.claims?.role === 'driver' && (p.status === 200 || p.status === 429)), 'every forward admitted');
    });

  test('a 429 pauses every backend call until its Retry-After; the owed position is sent after it, not dropped', { timeout: 60_000 }, async () => {
    // A small window so the pause is short; other clients at the same address used it up.
    const { backend, server } = await setup({ FORWARD_MIN_INTERVAL_MS: 500 }, { limit: 3, windowMs: 6_000 });
    const d = await connectDriver(server);
    const fixes = [];
    for (let i = 0; i < 8; i += 1) {
      const f = fix();
      assert.equal((await d.emitAck('location:update', f))?.status, 'ok');
      fixes.push(f);
      await hold(250);
    }
    const last = fixes[fixes.length - 1];
    await backend.until(() => backend.rows.get(d.driverId)?.recordedAt === last.recordedAt, 20_000, 'the newest fix after the pause');
    const throttled = backend.throttled();
    assert.equal(throttled.length, 1, `one 429, then the server waited: ${throttled.length}`);
    const retryAfterMs = Number(throttled[0].headers['retry-after']) * 1000;
    assert.ok(retryAfterMs >= 1000, JSON.stringify(throttled[0].headers));
    const after429 = backend.requests.filter((r) => r.at > throttled[0].at);
    assert.ok(after429.length >= 1);
    assert.ok(after429[0].at - throttled[0].at >= retryAfterMs - 200, `next call ${after429[0].at - throttled[0].at} ms after the 429 (Retry-After ${retryAfterMs} ms)`);
    const m = await metricsSnapshot(server);
    assert.equal(m.get('wecare_forward_skipped_total'), 0);
    assert.equal(m.get('wecare_forward_errors_total{status="429"}'), 1);
  });

  test('a status the backend set survives 60 s of forwarded fixes that carry none; a driver:status the driver sends does reach it', { timeout: 150_000 }, async () => {
    const { backend, server } = await setup({ FORWARD_MIN_INTERVAL_MS: 1000 });
    const officer = await connectWatcher(server);
    const d = await connectDriver(server);
    const first = fix();
    assert.equal((await d.emitAck('location:update', first))?.status, 'ok');
    await backend.until(() => backend.rows.get(d.driverId)?.recordedAt === first.recordedAt, 10_000, 'the first forward');
    // The dispatcher assigns a ride: the backend sets the ambulance ON_DUTY.
    backend.setDriverStatus(d.driverId, 'ON_DUTY');
    const from = backend.puts(d.driverId).length;
    const t0 = Date.now();
    let last = first;
    while (Date.now() - t0 < 60_000) {
      last = fix();
      assert.equal((await d.emitAck('location:update', last))?.status, 'ok');
      await hold(1000);
    }
    await backend.until(() => backend.rows.get(d.driverId)?.recordedAt === last.recordedAt, 10_000, 'the newest fix forwarded');
    const during = backend.puts(d.driverId).slice(from);
    assert.ok(during.length >= 40, `about one forward a second: ${during.length}`);
    assert.deepEqual(during.filter((p) => 'status' in p.body).map((p) => p.body), [], 'no forward carries a status');
    assert.equal(backend.statuses.get(d.driverId), 'ON_DUTY', 'the backend\'s status survived');
    // One backend row per forward, as deployed.
    assert.equal(backend.history.filter((h) => h.driverId === d.driverId).length, backend.puts(d.driverId).filter((p) => p.status === 200).length);
    // The officers' events carry no status either (the deployed Map merges one over the backend's).
    const events = officer.all('location:updated', (e) => e.driverId === d.driverId);
    assert.ok(events.length >= 60);
    assert.deepEqual(events.filter((e) => 'status' in e), []);
    const latest = await rest(server, 'GET', '/api/realtime/latest', { token: server.watcherToken() });
    assert.equal('status' in latest.body.drivers.find((r) => r.driverId === d.driverId), false);

    // The driver reports a status: it goes to the backend, and to the officers.
    assert.equal((await d.emitAck('driver:status', { status: 'available' }))?.status, 'ok');
    await backend.until(() => backend.statuses.get(d.driverId) === 'AVAILABLE', 15_000, 'the reported status at the backend');
    const carrying = backend.puts(d.driverId).filter((p) => p.body.status === 'AVAILABLE');
    assert.equal(carrying.length, 1, 'sent once');
    assert.equal(carrying[0].body.latitude, last.lat, 'with the newest position');
    const next = fix();
    assert.equal((await d.emitAck('location:update', next))?.status, 'ok');
    assert.equal((await officer.waitFor('location:updated', (e) => e.id === next.id)).status, 'AVAILABLE', 'now known, it is carried');
  });

  test('logout at the backend: the live socket gets auth:expired within the check interval; after the backend restarts (forgetting its list) the token stays refused — after our restart too, and on another node', { timeout: 90_000 }, async () => {
    const CHECK_MS = 2_000;
    const { backend, server } = await setup((b) => ({ AUTH_CHECK_URL: b.authCheckUrl, AUTH_CHECK_INTERVAL_MS: CHECK_MS, FORWARD_URL: null }));
    const token = server.watcherToken();
    const other = server.watcherToken();
    const w = await connect(server, { token });
    const stay = await connect(server, { token: other });
    // The deployed app's logout, as its backend takes it.
    const t0 = Date.now();
    assert.equal((await rest(null, 'POST', '/api/auth/logout', { port: backend.port, token })).status, 200);
    await assertCut(w, CHECK_MS + 4_000, 'the logged-out socket');
    assert.ok(Date.now() - t0 <= CHECK_MS + 3_000, `cut ${Date.now() - t0} ms after the logout`);

    // The backend restarts and forgets its logout list: it takes the token again.
    await backend.restart();
    assert.equal((await rest(null, 'GET', '/api/facilities', { port: backend.port, token })).status, 200, 'the backend forgot');
    await hold(CHECK_MS + 500); // any answer cached here has expired
    await assertHandshakeRefused(server, token, 'after the backend restart');
    assert.equal((await rest(server, 'GET', '/api/realtime/latest', { token })).status, 401);
    // The user's other token (another device) was never logged out.
    assert.ok(stay.connected && stay.all('auth:expired').length === 0, 'the other token\'s socket stays');
    // SIGKILL and start again on the same store.
    await server.kill();
    await server.restart();
    await assertHandshakeRefused(server, token, 'after our restart');
    if (server.database) {
      const second = await startServer({ secret: server.secret, databaseUrl: server.database.url, env: { AUTH_CHECK_URL: backend.authCheckUrl, AUTH_CHECK_INTERVAL_MS: CHECK_MS } });
      started.push(second);
      await assertHandshakeRefused(second, token, 'on another node');
      assert.ok((await connect(second, { token: other })).connected, 'another token works on that node');
    }
    assert.ok((await connect(server, { token: other })).connected, 'the other token connects after the restart');
  });

  test('token checks are made per token, not per socket: four sockets of one token cost one call per interval', { timeout: 60_000 }, async () => {
    const CHECK_MS = 1_000;
    const { backend, server } = await setup((b) => ({ AUTH_CHECK_URL: b.authCheckUrl, AUTH_CHECK_INTERVAL_MS: CHECK_MS, FORWARD_URL: null }));
    const token = server.watcherToken();
    const peers = await Promise.all(Array.from({ length: 4 }, () => connect(server, { token })));
    const calls = () => backend.authChecks().filter((r) => r.bearer === token);
    const t0 = Date.now();
    await backend.until(() => calls().length >= 6, 15_000, 'periodic checks of the token');
    const spanMs = Date.now() - t0;
    // At most one call per interval (plus the handshake's), however many sockets.
    assert.ok(calls().length <= Math.ceil(spanMs / CHECK_MS) + 2, `${calls().length} calls in ${spanMs} ms for one token on 4 sockets: ${JSON.stringify(calls().map((r) => [r.at - t0, r.status]))}`);
    for (const p of peers) assert.ok(p.connected);
  });

  test('POST /api/realtime/logout with the user\'s own token: its socket ends, the token is refused, another token of the same user keeps working', { timeout: 60_000 }, async () => {
    const { server } = await setup({ FORWARD_URL: null });
    const user = { id: 'u-7788', email: 'officer7788@wecare.test', role: 'officer' };
    const mine = server.token(user, { ttlSeconds: 3600 });
    const otherDevice = server.token(user, { ttlSeconds: 7200 });
    const driverToken = server.driverToken();
    assert.notEqual(mine, otherDevice);
    const a = await connect(server, { token: mine });
    const a2 = await connect(server, { token: mine });
    const b = await connect(server, { token: otherDevice });
    const d = await connect(server, { token: driverToken });

    // Nothing to log out without a token, or with a forged one.
    const none = await rest(server, 'POST', '/api/realtime/logout', {});
    assert.equal(none.status, 401);
    assert.equal(none.body?.code, 'AUTH_REQUIRED');
    const forged = await rest(server, 'POST', '/api/realtime/logout', { token: `${mine}x` });
    assert.equal(forged.status, 401);
    assert.equal(forged.body?.code, 'INVALID_TOKEN');

    // From the browser app (an allowed origin), as the logout button would call it.
    const r = await rest(server, 'POST', '/api/realtime/logout', { token: mine, headers: { origin: 'http://localhost:5173' } });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.body, { status: 'ok' });
    assert.equal(r.headers['access-control-allow-origin'], 'http://localhost:5173');
    await assertCut(a, 5_000, 'the first socket of the token');
    await assertCut(a2, 5_000, 'the second socket of the token');
    await assertHandshakeRefused(server, mine, 'the logged-out token');
    const rest401 = await rest(server, 'GET', '/api/realtime/latest', { token: mine });
    assert.equal(rest401.status, 401);
    assert.equal(rest401.body?.code, 'INVALID_TOKEN');
    // Logging out again is fine.
    assert.equal((await rest(server, 'POST', '/api/realtime/logout', { token: mine })).status, 200);

    // The same user's other token, and everyone else, carry on.
    assert.ok(b.connected && b.all('auth:expired').length === 0);
    assert.equal((await rest(server, 'GET', '/api/realtime/latest', { token: otherDevice })).status, 200);
    // A driver logs out too.
    assert.equal((await rest(server, 'POST', '/api/realtime/logout', { token: driverToken })).status, 200);
    await assertCut(d, 5_000, 'the driver');
    assert.equal((await rest(server, 'POST', '/api/realtime/locations', { token: driverToken, body: fix() })).status, 401);
    // The revocation survives a restart.
    await server.kill();
    await server.restart();
    await assertHandshakeRefused(server, mine, 'after a restart');
    assert.ok((await connect(server, { token: otherDevice })).connected);
  });

  test('the service token\'s role: the default (driver) is admitted; one the backend refuses is said in plain words and counted by status', { timeout: 60_000 }, async () => {
    const { backend, server } = await setup({ FORWARD_MIN_INTERVAL_MS: 500, FORWARD_TOKEN_ROLE: 'system' });
    const d = await connectDriver(server);
    assert.equal((await d.emitAck('location:update', fix()))?.status, 'ok');
    await backend.until(() => backend.puts(d.driverId).filter((p) => p.status === 403).length >= 2, 15_000, 'the refused role retried');
    assert.equal(backend.rows.has(d.driverId), false);
    assert.match(server.output, /FORWARD_TOKEN_ROLE/, 'the log says which setting to change');
    // The backend records a PUT as it answers; the server counts the answer a
    // moment later, when it has read it — so the count is awaited, not sampled.
    await waitUntil(async () => ((await metricsSnapshot(server)).get('wecare_forward_errors_total{status="403"}') ?? 0) >= 2,
      { timeoutMs: 5_000, intervalMs: 50, what: 'both refusals counted by status' });
    const m = await metricsSnapshot(server);
    assert.equal(m.get('wecare_forward_skipped_total'), 0, 'a 403 is a configuration fault: retried, not skipped');
  });
});
