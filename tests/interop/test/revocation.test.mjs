// Contract §10 (v1.2) — revocation: a token logged out at the WeCare
// backend (AUTH_CHECK_URL, a route of it that honours its logout list, asked at the handshake,
// on REST and every AUTH_CHECK_INTERVAL_MS for a live socket) or revoked
// here (POST /api/realtime/revoke, kept in the store) stops working: the
// handshake fails "Invalid token", REST answers 401 INVALID_TOKEN, a live
// socket gets auth:expired { expiredAt, reason: "revoked" } and is
// disconnected. With the backend unreachable, AUTH_CHECK_FAIL decides.
// Against the fake backend of lib/backend.mjs.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from '../lib/server.mjs';
import { startBackend } from '../lib/backend.mjs';
import { randomSecret, nowSeconds, uniqueName } from '../lib/token.mjs';
import {
  connect, connectError, closeAll, fix, rest, waitUntil, settle, metricsSnapshot, ISO_MS_Z,
} from '../lib/client.mjs';

const NOTIFY_SECRET = 'notify-secret-for-revocation-tests';
const CHECK_MS = 1000;
/** A live socket is cut within one check interval (plus the call and the close). */
const CUT_WITHIN_MS = 2500;

const nowSecondsAt = (ms) => Math.floor(ms / 1000);

const started = [];
// The backend's rate limiter and the server's budget are the subject of
// wecare-backend.test.mjs; here they stay out of the way (a check a second
// per socket is far beyond 100 a minute).
async function backendAndServer(env = {}) {
  const secret = randomSecret();
  const backend = await startBackend({ secret, limit: Infinity });
  started.push(backend);
  const server = await startServer({
    secret,
    env: { AUTH_CHECK_URL: backend.authCheckUrl, NOTIFY_SECRET, BACKEND_MAX_CALLS_PER_MIN: 100_000, ...env },
  });
  started.push(server);
  return { backend, server };
}

async function checks(server) {
  const m = await metricsSnapshot(server);
  const get = (r) => m.get(`wecare_auth_checks_total{result="${r}"}`);
  return { ok: get('ok'), revoked: get('revoked'), open: get('unreachable_open'), closed: get('unreachable_closed') };
}

/** A watcher's REST call; resolves the response. */
const latestWith = (server, token) => rest(server, 'GET', '/api/realtime/latest', { token });

function assertInvalidToken(r, what) {
  assert.equal(r.status, 401, `${what}: ${r.status} ${r.text.slice(0, 200)}`);
  assert.equal(r.body?.code, 'INVALID_TOKEN', `${what}: ${r.text.slice(0, 200)}`);
}

async function assertHandshakeRefused(server, token, what) {
  const err = await connectError(server, { token });
  assert.equal(err.message, 'Invalid token', `${what}: ${err.message}`);
}

/**
 * `peer` gets auth:expired { expiredAt, reason } then an "io server
 * disconnect"; returns { expired, disc, expiredAt (ms) }.
 */
async function cutOf(peer, timeoutMs, reason = 'revoked') {
  const expired = await peer.waitFor('auth:expired', () => true, timeoutMs);
  const disc = await peer.waitDisconnect(timeoutMs);
  assert.equal(expired.reason, reason, JSON.stringify(expired));
  assert.match(expired.expiredAt, ISO_MS_Z);
  assert.equal(disc.reason, 'io server disconnect');
  const tExpired = peer.events.find((e) => e.name === 'auth:expired').at;
  assert.ok(tExpired <= disc.at, 'auth:expired before the disconnect');
  return { expired, disc, expiredAt: Date.parse(expired.expiredAt) };
}

async function revoke(server, body, secret = NOTIFY_SECRET) {
  return rest(server, 'POST', '/api/realtime/revoke', { body, headers: { authorization: `Bearer ${secret}` } });
}

describe('§10 revocation', () => {
  after(async () => {
    closeAll();
    for (const s of started.reverse()) {
      if (typeof s.dispose === 'function') await s.dispose();
      else await s.close();
    }
  });

  describe('checked with the backend (AUTH_CHECK_URL, AUTH_CHECK_INTERVAL_MS=1000)', () => {
    let backend;
    let server;
    before(async () => {
      ({ backend, server } = await backendAndServer({ AUTH_CHECK_INTERVAL_MS: CHECK_MS }));
    });

    test('(a) a token logged out at the backend: the handshake is refused "Invalid token"', async () => {
      const m0 = await checks(server);
      const ok = server.watcherToken();
      const w = await connect(server, { token: ok });
      assert.ok(backend.authChecks().some((r) => r.bearer === ok && r.status === 200), 'the backend was asked');
      const watcher = server.watcherToken();
      const driver = server.driverToken();
      backend.logout(watcher);
      backend.logout(driver);
      await assertHandshakeRefused(server, watcher, 'logged-out watcher token');
      await assertHandshakeRefused(server, driver, 'logged-out driver token');
      // The same kind of token, not logged out, still connects.
      const d = await connect(server, { token: server.driverToken() });
      assert.ok(w.connected && d.connected);
      const m = await checks(server);
      assert.ok(m.revoked >= m0.revoked + 2, `revoked checks counted: ${JSON.stringify(m0)} → ${JSON.stringify(m)}`);
      assert.ok(m.ok >= m0.ok + 2, `ok checks counted: ${JSON.stringify(m0)} → ${JSON.stringify(m)}`);
      w.close();
      d.close();
    });

    test('(b) a live socket is cut within one check interval of the logout: auth:expired { reason: "revoked" }, then the disconnect; other tokens stay', async () => {
      const dTok = server.driverToken();
      const wTok = server.watcherToken();
      const stayTok = server.watcherToken();
      const d = await connect(server, { token: dTok });
      const w = await connect(server, { token: wTok });
      const stay = await connect(server, { token: stayTok });
      // Let at least one periodic check pass first: the cut is not a handshake artefact.
      const checksOf = (tok) => backend.authChecks().filter((r) => r.bearer === tok).length;
      await backend.until(() => checksOf(dTok) >= 2 && checksOf(wTok) >= 2, 5_000, 'a periodic check of each live socket');

      const t0 = Date.now();
      backend.logout(dTok);
      backend.logout(wTok);
      for (const [who, p] of [['driver', d], ['watcher', w]]) {
        const { disc, expiredAt } = await cutOf(p, CUT_WITHIN_MS + 1000);
        assert.ok(disc.at - t0 <= CUT_WITHIN_MS, `${who}: cut ${disc.at - t0} ms after the logout`);
        // expiredAt: the time the revocation was seen, after the logout.
        assert.ok(expiredAt >= t0 - 5 && expiredAt <= disc.at + 5, `${who}: expiredAt ${expiredAt - t0} ms after the logout`);
      }
      // The other socket lives on through further checks.
      const before = checksOf(stayTok);
      await backend.until(() => checksOf(stayTok) >= before + 1, 3_000, 'a later check of the remaining socket');
      await settle();
      assert.ok(stay.connected, 'a socket with another token stays connected');
      assert.deepEqual(stay.all('auth:expired'), []);
      stay.close();
    });

    test('(c) REST with a logged-out token → 401 INVALID_TOKEN (at once for a new one, within the interval for a cached one)', async () => {
      const fresh = server.watcherToken();
      const freshDriver = server.driverToken();
      backend.logout(fresh);
      backend.logout(freshDriver);
      assertInvalidToken(await latestWith(server, fresh), 'GET /api/realtime/latest');
      assertInvalidToken(await rest(server, 'GET', '/api/realtime/events?since=0', { token: fresh }), 'GET /api/realtime/events');
      assertInvalidToken(await rest(server, 'POST', '/api/realtime/locations', { token: freshDriver, body: fix() }), 'POST /api/realtime/locations');
      assertInvalidToken(await rest(server, 'POST', '/api/driver-locations', { token: freshDriver, body: fix() }), 'POST /api/driver-locations');

      // A token in use: 200 until the logout, 401 within one interval after it.
      const used = server.watcherToken();
      assert.equal((await latestWith(server, used)).status, 200);
      const usedDriver = server.driverToken();
      assert.equal((await rest(server, 'POST', '/api/realtime/locations', { token: usedDriver, body: fix() })).status, 200);
      const t0 = Date.now();
      backend.logout(used);
      backend.logout(usedDriver);
      await waitUntil(async () => (await latestWith(server, used)).status === 401, { timeoutMs: CUT_WITHIN_MS, intervalMs: 100, what: 'a 401 for the logged-out watcher token' });
      await waitUntil(async () => (await rest(server, 'POST', '/api/realtime/locations', { token: usedDriver, body: fix() })).status === 401,
        { timeoutMs: CUT_WITHIN_MS, intervalMs: 100, what: 'a 401 for the logged-out driver token' });
      assert.ok(Date.now() - t0 <= CUT_WITHIN_MS + 500);
      assertInvalidToken(await latestWith(server, used), 'the logged-out token, afterwards');
      // Another token works.
      assert.equal((await latestWith(server, server.watcherToken())).status, 200);
    });
  });

  describe('POST /api/realtime/revoke (NOTIFY_SECRET; the backend would still say valid, AUTH_CHECK_INTERVAL_MS default 60 s)', () => {
    let server;
    before(async () => {
      ({ server } = await backendAndServer());
    });

    test('(d) by userId: that user\'s sockets are cut at once, its old tokens refused; a token issued in a later second works', async () => {
      const user = uniqueName('usr');
      const other = uniqueName('usr');
      // Two tabs of the user (distinct tokens), a driver app of the same account, and another user.
      const t1 = server.token({ id: user, role: 'officer', tab: 1, iat: nowSeconds() - 120 });
      const t2 = server.token({ id: user, role: 'officer', tab: 2 });
      const td = server.token({ id: user, role: 'driver', driver_id: uniqueName('drv') });
      const to = server.token({ id: other, role: 'officer' });
      const s1 = await connect(server, { token: t1 });
      const s2 = await connect(server, { token: t2 });
      const sd = await connect(server, { token: td });
      const so = await connect(server, { token: to });

      // Guarded by NOTIFY_SECRET; a body that names nothing is refused.
      assert.equal((await revoke(server, { userId: user }, 'wrong')).status, 401);
      assert.equal((await rest(server, 'POST', '/api/realtime/revoke', { body: { userId: user } })).status, 401);
      assert.equal((await revoke(server, {})).status, 400);
      assert.equal((await revoke(server, { userId: user, token: t1 })).status, 400);
      assert.ok(s1.connected && s2.connected && sd.connected, 'nothing revoked by the refused calls');

      const before = nowSeconds();
      const r = await revoke(server, { userId: user });
      const answeredAt = Date.now();
      assert.equal(r.status, 200, r.text);
      assert.deepEqual(r.body, { status: 'ok', disconnected: 3 });
      for (const p of [s1, s2, sd]) {
        const { disc, expiredAt } = await cutOf(p, 2000);
        assert.ok(disc.at - answeredAt <= 1000, `cut ${disc.at - answeredAt} ms after the answer`);
        // expiredAt: the revocation's second.
        assert.ok(expiredAt >= before * 1000 && expiredAt <= answeredAt, `expiredAt ${new Date(expiredAt).toISOString()}`);
      }
      await settle();
      assert.ok(so.connected, 'another user\'s socket stays');

      for (const [tok, what] of [[t1, 'old tab token'], [t2, 'tab token'], [td, 'driver token of the account'],
        [server.token({ id: user, role: 'officer', iat: before - 1 }), 'a token issued before']]) {
        await assertHandshakeRefused(server, tok, what);
      }
      assertInvalidToken(await latestWith(server, t2), 'REST with a revoked user\'s token');
      assertInvalidToken(await rest(server, 'POST', '/api/realtime/locations', { token: td, body: fix() }), 'REST ingest with a revoked user\'s token');
      assert.equal((await latestWith(server, to)).status, 200, 'another user\'s REST');

      // A new login: a token issued in a later second than the revocation.
      await waitUntil(() => nowSeconds() > nowSecondsAt(answeredAt), { timeoutMs: 2000, intervalMs: 20, what: 'the next second' });
      const later = server.token({ id: user, role: 'officer' });
      const s3 = await connect(server, { token: later });
      assert.equal((await latestWith(server, later)).status, 200);
      await settle();
      assert.ok(s3.connected);
      s3.close();
      so.close();

      // A numeric userId names the same account as a numeric `id` claim.
      const n = 700_000 + Math.floor(Math.random() * 100_000);
      const tn = server.token({ id: n, role: 'officer' });
      const sn = await connect(server, { token: tn });
      const rn = await revoke(server, { userId: n });
      assert.deepEqual(rn.body, { status: 'ok', disconnected: 1 });
      await cutOf(sn, 2000);
      await assertHandshakeRefused(server, tn, 'numeric user');
    });

    test('(d) by token: only that token\'s sockets are cut and only that token is refused', async () => {
      const user = uniqueName('usr');
      const tA = server.token({ id: user, role: 'officer', tab: 'a' });
      const tB = server.token({ id: user, role: 'officer', tab: 'b' });
      const a1 = await connect(server, { token: tA });
      const a2 = await connect(server, { token: tA });
      const b = await connect(server, { token: tB });
      const r = await revoke(server, { token: tA });
      const answeredAt = Date.now();
      assert.equal(r.status, 200, r.text);
      assert.deepEqual(r.body, { status: 'ok', disconnected: 2 });
      for (const p of [a1, a2]) {
        const { disc } = await cutOf(p, 2000);
        assert.ok(disc.at - answeredAt <= 1000, `cut ${disc.at - answeredAt} ms after the answer`);
      }
      await settle();
      assert.ok(b.connected, 'the same user\'s other token keeps its socket');
      assert.deepEqual(b.all('auth:expired'), []);
      await assertHandshakeRefused(server, tA, 'the revoked token');
      assertInvalidToken(await latestWith(server, tA), 'REST with the revoked token');
      assert.equal((await latestWith(server, tB)).status, 200, 'REST with the other token');
      const b2 = await connect(server, { token: tB });
      assert.ok(b2.connected);
      b.close();
      b2.close();
    });
  });

  test('(e) revocations survive a restart (SIGTERM, and SIGKILL right after the answer), on the same store', { timeout: 60_000 }, async () => {
    const { server } = await backendAndServer();
    const user = uniqueName('usr');
    const uOld = server.token({ id: user, role: 'officer', iat: nowSeconds() - 60 });
    const tA = server.watcherToken();
    const tB = server.watcherToken();
    assert.equal((await revoke(server, { token: tA })).status, 200);
    const r = await revoke(server, { userId: user });
    assert.equal(r.status, 200);
    const revokedSec = nowSeconds();

    await server.restart();
    await assertHandshakeRefused(server, tA, 'revoked token after SIGTERM');
    assertInvalidToken(await latestWith(server, tA), 'revoked token, REST, after SIGTERM');
    await assertHandshakeRefused(server, uOld, 'revoked user after SIGTERM');
    assertInvalidToken(await latestWith(server, uOld), 'revoked user, REST, after SIGTERM');
    assert.equal((await latestWith(server, tB)).status, 200, 'another token after SIGTERM');

    // Revoke, SIGKILL as soon as it is answered, restart: still refused.
    assert.equal((await revoke(server, { token: tB })).status, 200);
    await server.kill();
    await server.restart();
    await assertHandshakeRefused(server, tB, 'token revoked just before a SIGKILL');
    await assertHandshakeRefused(server, tA, 'first revoked token, second restart');
    await waitUntil(() => nowSeconds() > revokedSec, { timeoutMs: 2000, intervalMs: 20, what: 'the next second' });
    const later = server.token({ id: user, role: 'officer' });
    const p = await connect(server, { token: later });
    assert.ok(p.connected, 'the user\'s later login works after the restarts');
    assert.equal((await latestWith(server, later)).status, 200);
    p.close();
  });

  test('(f) the backend unreachable (refused, then 500): AUTH_CHECK_FAIL=open admits, closed refuses (and cuts live sockets, reason "unverifiable"); the metrics count both', { timeout: 60_000 }, async () => {
    const secret = randomSecret();
    const backend = await startBackend({ secret });
    started.push(backend);
    const env = { AUTH_CHECK_URL: backend.authCheckUrl, AUTH_CHECK_INTERVAL_MS: CHECK_MS };
    const open = await startServer({ secret, env: { ...env, AUTH_CHECK_FAIL: 'open' } });
    started.push(open);
    const closed = await startServer({ secret, env: { ...env, AUTH_CHECK_FAIL: 'closed' } });
    started.push(closed);
    // Same secret on both: one token works on either.
    const liveOpen = await connect(open, { token: open.watcherToken() });
    const liveClosed = await connect(closed, { token: closed.watcherToken() });
    const o0 = await checks(open);
    const c0 = await checks(closed);
    assert.equal(o0.closed, 0);
    assert.equal(c0.open, 0);

    for (const mode of ['refused', 'error500']) {
      if (mode === 'refused') await backend.refuse();
      else { backend.setMode('error500'); await backend.resume(); }
      const oBefore = await checks(open);
      const cBefore = await checks(closed);
      // New tokens (nothing cached): open judges by signature and exp alone, closed refuses.
      const p = await connect(open, { token: open.watcherToken() });
      assert.equal((await latestWith(open, open.watcherToken())).status, 200, `${mode}: open admits REST`);
      await assertHandshakeRefused(closed, closed.watcherToken(), `${mode}: closed refuses the handshake`);
      assertInvalidToken(await latestWith(closed, closed.watcherToken()), `${mode}: closed refuses REST`);
      if (mode === 'refused') {
        // The live socket on the closed node is cut at its next check; the open one stays.
        const t0 = Date.now();
        const { disc } = await cutOf(liveClosed, CUT_WITHIN_MS + 1000, 'unverifiable');
        assert.ok(disc.at - t0 <= CUT_WITHIN_MS, `closed: cut ${disc.at - t0} ms after the backend went away`);
        // The open node's live socket was checked again meanwhile (counted unreachable) and lives.
        await waitUntil(async () => (await checks(open)).open >= oBefore.open + 3, { timeoutMs: 3_000, intervalMs: 100, what: 'a periodic check on the open node' });
        await settle();
        assert.ok(liveOpen.connected, 'open: the live socket stays');
        assert.deepEqual(liveOpen.all('auth:expired'), []);
      }
      const o = await checks(open);
      const c = await checks(closed);
      assert.ok(o.open >= oBefore.open + 2, `${mode}: open counts unreachable_open: ${JSON.stringify(oBefore)} → ${JSON.stringify(o)}`);
      assert.ok(c.closed >= cBefore.closed + 2, `${mode}: closed counts unreachable_closed: ${JSON.stringify(cBefore)} → ${JSON.stringify(c)}`);
      assert.equal(o.closed, 0, 'the open node never counts unreachable_closed');
      assert.equal(c.open, 0, 'the closed node never counts unreachable_open');
      p.close();
    }

    // The backend back: the closed node admits again.
    backend.setMode('ok');
    const cBack = await checks(closed);
    const back = await connect(closed, { token: closed.watcherToken() });
    assert.ok(back.connected);
    assert.ok((await checks(closed)).ok >= cBack.ok + 1, 'the check counted ok');
    back.close();
    liveOpen.close();
  });
});
