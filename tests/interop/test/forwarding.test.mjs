// Contract §10 (v1.2) — position forwarding: the server keeps the WeCare
// backend's `driver_locations` table (written by its
// `PUT /api/driver-locations/:driverId`) current from the durable stream.
// Against a fake backend (lib/backend.mjs) that checks the token, its role
// and the coordinates like the real route, stores rows, records every
// request and can fail on demand (refused, 500, slow, a 400 for one
// driver). Its rate limiter is off here, and the server's backend budget
// out of the way: they are the subject of wecare-backend.test.mjs.
import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from '../lib/server.mjs';
import { startBackend } from '../lib/backend.mjs';
import { randomSecret, nowSeconds } from '../lib/token.mjs';
import {
  connectDriver, closeAll, fix, rest, waitUntil, settle, metricsSnapshot, ISO_MS_Z, uid,
} from '../lib/client.mjs';

const iso = (ms) => new Date(ms).toISOString();
/** Hold a failure mode for a while: the duration is the scenario, nothing can be awaited. */
const hold = (ms) => new Promise((r) => setTimeout(r, Math.max(0, ms)));

const started = [];
async function setup(env = {}) {
  const secret = randomSecret();
  const backend = await startBackend({ secret, limit: Infinity });
  started.push(backend);
  const server = await startServer({
    secret,
    env: { FORWARD_URL: backend.forwardUrl, FORWARD_MIN_INTERVAL_MS: 1000, BACKEND_MAX_CALLS_PER_MIN: 100_000, ...env },
  });
  started.push(server);
  return { backend, server };
}

/** GET /api/realtime/latest as a Map driverId → snapshot row. */
async function latest(server) {
  const r = await rest(server, 'GET', '/api/realtime/latest', { token: server.watcherToken() });
  assert.equal(r.status, 200, r.text.slice(0, 300));
  return new Map(r.body.drivers.map((d) => [d.driverId, d]));
}

/**
 * The backend shows exactly `d` (a /latest row) for driver `id`: its newest
 * location row, and the status the driver reported (none reported: the
 * backend's own, untouched).
 */
function rowShows(backend, id, d) {
  const row = backend.rows.get(id);
  return !!row && !!d && row.latitude === d.lat && row.longitude === d.lng && row.recordedAt === d.recordedAt
    && backend.statuses.get(id) === d.status;
}

function describeRow(backend, id) {
  return JSON.stringify({ ...(backend.rows.get(id) ?? {}), status: backend.statuses.get(id) });
}

/** Send one fix and return it with its ack's seq. */
async function send(driver, overrides = {}) {
  const f = fix(overrides);
  const ack = await driver.emitAck('location:update', f);
  assert.equal(ack?.status, 'ok', JSON.stringify(ack));
  return { ...f, seq: ack.seq };
}

async function sendBatch(driver, fixes) {
  const ack = await driver.emitAck('location:batch', { updates: fixes });
  assert.equal(ack?.status, 'ok', JSON.stringify(ack));
  for (const r of ack.results) assert.equal(r.status, 'ok', JSON.stringify(r));
  return fixes.map((f, i) => ({ ...f, seq: ack.results[i].seq }));
}

/** Per driver, in arrival order: neither the seq nor the recordedAt of what the backend received ever goes down. */
function assertNeverOlderAfterNewer(backend, ids) {
  for (const id of ids) {
    const puts = backend.puts(id);
    for (let i = 1; i < puts.length; i += 1) {
      const [a, b] = [puts[i - 1].body, puts[i].body];
      assert.ok(b.seq >= a.seq, `${id}: seq ${b.seq} received after ${a.seq} (requests ${i - 1}, ${i})`);
      assert.ok(Date.parse(b.recordedAt) >= Date.parse(a.recordedAt), `${id}: recordedAt ${b.recordedAt} received after ${a.recordedAt}`);
    }
  }
}

describe('§10 position forwarding', () => {
  after(async () => {
    closeAll();
    for (const s of started.reverse()) {
      if (typeof s.dispose === 'function') await s.dispose();
      else await s.close();
    }
  });

  test('forwarded rows equal each driver\'s newest non-outdated fix (late fixes, batches, status changes, ids that need encoding)', { timeout: 60_000 }, async () => {
    const { backend, server } = await setup({ FORWARD_MIN_INTERVAL_MS: 200 });
    const tag = uid().slice(0, 6);
    // An id with a space, a slash, Thai and a '?': `{driverId}` is URL-encoded.
    const ids = [`fw-a-${tag}`, `fw b/ขับ?${tag}`, `fw-c-${tag}`];
    const statusOnly = `fw-d-${tag}`;
    const drivers = await Promise.all(ids.map((driverId) => connectDriver(server, { driverId })));
    const quiet = await connectDriver(server, { driverId: statusOnly });
    const outdated = new Map(ids.map((id) => [id, []]));

    await Promise.all(drivers.map(async (d, k) => {
      const base = Date.now();
      await send(d, { recordedAt: iso(base - 20_000) });
      await send(d, { recordedAt: iso(base - 10_000), status: 'AVAILABLE' });
      await send(d, { recordedAt: iso(base - 5_000) });
      // Buffered fixes delivered late: outdated, on the trail only. One of
      // them carries a status, which still becomes the current status.
      const late = await sendBatch(d, [
        fix({ recordedAt: iso(base - 60_000) }),
        fix({ recordedAt: iso(base - 30_000), ...(k === 1 ? { status: 'ON_TRIP' } : {}) }),
      ]);
      late.push(await send(d, { recordedAt: iso(base - 15_000) }));
      outdated.get(d.driverId).push(...late);
      if (k === 2) {
        const st = await d.emitAck('driver:status', { status: 'BUSY' });
        assert.equal(st?.status, 'ok', JSON.stringify(st));
      }
    }));
    // A driver with a status and no position yet has nothing to forward.
    assert.equal((await quiet.emitAck('driver:status', { status: 'ON_DUTY' }))?.status, 'ok');

    const want = await latest(server);
    for (const id of ids) {
      assert.equal(typeof want.get(id)?.lat, 'number', `latest has ${id}`);
      for (const f of outdated.get(id)) assert.notEqual(want.get(id).recordedAt, f.recordedAt, 'a late fix is not the newest');
    }
    assert.equal(want.get(ids[1]).status, 'ON_TRIP', 'the outdated fix\'s status is the current status');
    assert.equal(want.get(ids[2]).status, 'BUSY');
    await backend.until(() => ids.every((id) => rowShows(backend, id, want.get(id))), 10_000,
      () => `rows equal /latest: ${ids.map((id) => `${id}: have ${describeRow(backend, id)} want ${JSON.stringify(want.get(id))}`).join('; ')}`);
    // Nothing more may follow (an outdated fix sent late, a second send of a status-only driver).
    await settle(1000);

    for (const id of ids) {
      assert.ok(rowShows(backend, id, want.get(id)), `${id}: final row ${describeRow(backend, id)} vs ${JSON.stringify(want.get(id))}`);
      const puts = backend.puts(id);
      assert.ok(puts.length >= 1);
      for (const p of puts) {
        assert.equal(p.method, 'PUT');
        assert.equal(p.status, 200, `answered ${p.status}: ${JSON.stringify(p.body)}`);
        // `status` only with what the driver reported (v1.3): every driver
        // here reported AVAILABLE once, one ON_TRIP and one BUSY.
        const keys = Object.keys(p.body).filter((k) => k !== 'status').sort();
        assert.deepEqual(keys, ['latitude', 'longitude', 'recordedAt', 'seq']);
        if ('status' in p.body) assert.ok(['AVAILABLE', 'ON_TRIP', 'BUSY'].includes(p.body.status), JSON.stringify(p.body));
        assert.match(p.body.recordedAt, ISO_MS_Z);
        assert.ok(Number.isInteger(p.body.seq));
        // The service token: signed with JWT_SECRET, { id, role: FORWARD_TOKEN_ROLE (driver) }, a short exp.
        assert.equal(p.claims?.id, 'wecare-realtime', JSON.stringify(p.claims));
        assert.equal(p.claims.role, 'driver');
        assert.ok(p.claims.exp > nowSeconds() && p.claims.exp <= nowSeconds() + 3600, `exp ${p.claims.exp}`);
        for (const f of outdated.get(id)) {
          assert.ok(!(p.body.latitude === f.lat && p.body.longitude === f.lng), `${id}: an outdated fix was forwarded: ${JSON.stringify(p.body)}`);
        }
      }
    }
    assertNeverOlderAfterNewer(backend, ids);
    assert.equal(backend.puts(statusOnly).length, 0, 'a driver without a position is not forwarded');
    // What the Map Command page polls now shows the same as the live map.
    const poll = await rest(null, 'GET', '/api/driver-locations', { port: backend.port, token: server.watcherToken() });
    assert.equal(poll.status, 200);
    assert.deepEqual(poll.body.map((r) => r.driverId).sort(), [...ids].sort());
  });

  test('the backend down (refused, 500, slow) ~30 s and the server SIGKILLed meanwhile: every driver\'s newest position arrives, never an older one after a newer', { timeout: 150_000 }, async () => {
    const { backend, server } = await setup();
    const tag = uid().slice(0, 6);
    const ids = Array.from({ length: 4 }, (_, k) => `fwd-${k}-${tag}`);
    // Quiet drivers send only before the SIGKILL, while the backend is down:
    // their newest positions reach the backend only through the stored cursor.
    const quietIds = [`fwq-0-${tag}`, `fwq-1-${tag}`];
    const sent = new Map([...ids, ...quietIds].map((id) => [id, []])); // acked fixes, in seq order
    let drivers = await Promise.all(ids.map((driverId) => connectDriver(server, { driverId })));
    const quiet = await Promise.all(quietIds.map((driverId) => connectDriver(server, { driverId })));

    // Every driver sends a fix every 400 ms, on whatever server is up.
    let pumping = true;
    const inFlight = new Set();
    const pump = setInterval(() => {
      for (const d of drivers) {
        if (!d.connected) continue;
        const f = fix();
        const p = d.emitAckWithin(10_000, 'location:update', f)
          .then((ack) => { if (ack?.status === 'ok') sent.get(d.driverId).push({ ...f, seq: ack.seq }); })
          .catch(() => { /* the server was killed under it */ })
          .finally(() => inFlight.delete(p));
        inFlight.add(p);
      }
    }, 400);
    const stopPump = async () => {
      if (!pumping) return;
      pumping = false;
      clearInterval(pump);
      await Promise.all([...inFlight]);
    };
    try {
      for (const q of quiet) sent.get(q.driverId).push(await send(q));
      await backend.until(() => [...ids, ...quietIds].every((id) => backend.rows.has(id)), 10_000, 'a first forward of every driver');

      // 1. Refused.
      const t0 = Date.now();
      await backend.refuse();
      for (const q of quiet) {
        sent.get(q.driverId).push(await send(q));
        sent.get(q.driverId).push(await send(q));
      }
      // Buffered fixes delivered late meanwhile (outdated: never forwarded).
      await sendBatch(quiet[0], [fix({ recordedAt: iso(Date.now() - 120_000) })]);
      assert.equal((await quiet[1].emitAck('driver:status', { status: 'ON_TRIP' }))?.status, 'ok');
      await waitUntil(async () => ((await metricsSnapshot(server)).get('wecare_forward_errors_total{status="unreachable"}') ?? 0) > 0,
        { timeoutMs: 8_000, intervalMs: 200, what: 'refused connections counted' });
      await hold(t0 + 8_000 - Date.now());

      // 2. 500, and the server SIGKILLed in the middle of it.
      backend.setMode('error500');
      await backend.resume();
      await backend.until(() => backend.requests.some((r) => r.at > t0 && r.status === 500), 8_000, 'a 500 answered');
      await hold(t0 + 12_000 - Date.now());
      await server.kill();
      for (const q of quiet) q.close();
      await server.restart();
      for (const d of drivers) d.close();
      drivers = await Promise.all(ids.map((driverId) => connectDriver(server, { driverId })));
      const restartedAt = Date.now();
      await hold(t0 + 16_000 - Date.now());

      // 3. Slow: answers after 12 s, beyond the server's 10 s timeout.
      backend.setMode('slow');
      await hold(Math.max(t0 + 28_000, restartedAt + 8_000) - Date.now());

      // Back; the drivers stop a moment later.
      backend.setMode('ok');
      await hold(1_000);
      await stopPump();
      for (const d of drivers) d.close();

      const want = await latest(server);
      for (const id of [...ids, ...quietIds]) {
        const list = sent.get(id);
        const newest = list[list.length - 1];
        assert.equal(want.get(id)?.recordedAt, newest.recordedAt, `${id}: /latest shows the newest fix`);
      }
      assert.equal(want.get(quietIds[1]).status, 'ON_TRIP');
      // The backoff is capped at 30 s, a request at 10 s.
      await backend.until(() => [...ids, ...quietIds].every((id) => rowShows(backend, id, want.get(id))), 45_000,
        () => `every newest position arrives: ${[...ids, ...quietIds].map((id) => `${id}: have ${describeRow(backend, id)} want ${JSON.stringify(want.get(id))}`).join('; ')}`);

      assertNeverOlderAfterNewer(backend, [...ids, ...quietIds]);
      for (const id of quietIds) {
        const rows = backend.puts(id).filter((p) => p.at > t0 && p.status === 200);
        assert.ok(rows.length >= 1, `${id}: its position owed at the SIGKILL arrived after the restart`);
      }
      // The phases did what they say.
      assert.ok(backend.requests.some((r) => r.status === 'aborted'), 'a slow request was given up (timeout)');
      await waitUntil(async () => ((await metricsSnapshot(server)).get('wecare_forward_errors_total{status="timeout"}') ?? 0) > 0,
        { timeoutMs: 5_000, intervalMs: 200, what: 'timeouts counted by the restarted server' });
      const m = await metricsSnapshot(server);
      assert.ok((m.get('wecare_forward_errors_total{status="500"}') ?? 0) > 0, 'the restarted server counted 500s');
    } finally {
      await stopPump();
    }
  });

  test('a 400 for one driver does not stop the others; that driver\'s next position goes through once the backend takes it', { timeout: 60_000 }, async () => {
    const { backend, server } = await setup({ FORWARD_MIN_INTERVAL_MS: 200 });
    const tag = uid().slice(0, 6);
    const [bad, good1, good2] = await Promise.all(['bad', 'ok1', 'ok2'].map((k) => connectDriver(server, { driverId: `fw4-${k}-${tag}` })));
    backend.rejectDriver(bad.driverId);
    const goods = [good1, good2];

    for (let round = 0; round < 3; round += 1) {
      const [b, ...g] = await Promise.all([bad, ...goods].map((d) => send(d)));
      await backend.until(() => goods.every((d, i) => backend.rows.get(d.driverId)?.seq === g[i].seq)
        && backend.puts(bad.driverId).some((p) => p.body.seq === b.seq && p.status === 400), 10_000,
      `round ${round}: the others' rows and the refused driver's 400`);
    }
    const refused = backend.puts(bad.driverId);
    assert.equal(backend.rows.has(bad.driverId), false);
    backend.acceptDriver(bad.driverId);
    const next = await send(bad);
    await backend.until(() => backend.rows.get(bad.driverId)?.seq === next.seq, 10_000, 'the driver\'s next position after the 400s');
    // A 400 is not retried: every refused position was sent once.
    const seqs = refused.map((p) => p.body.seq);
    assert.equal(new Set(seqs).size, seqs.length, `refused positions resent: ${seqs}`);
    assert.ok(refused.every((p) => p.status === 400));
    assertNeverOlderAfterNewer(backend, [bad.driverId, ...goods.map((d) => d.driverId)]);
  });

  test('10 fixes/s from one driver with FORWARD_MIN_INTERVAL_MS=500: about one forward per interval, the newest last', { timeout: 60_000 }, async () => {
    const INTERVAL = 500;
    const TOLERANCE = 100;
    const { backend, server } = await setup({ FORWARD_MIN_INTERVAL_MS: INTERVAL });
    const d = await connectDriver(server);
    const acks = [];
    const startedAt = Date.now();
    await new Promise((resolve, reject) => {
      let n = 0;
      const t = setInterval(() => {
        n += 1;
        const f = fix();
        acks.push(d.emitAck('location:update', f).then((ack) => ({ ...f, seq: ack.seq })));
        if (n === 50) { clearInterval(t); Promise.all(acks).then(resolve, reject); }
      }, 100);
    });
    const fixes = await Promise.all(acks);
    const newest = fixes.reduce((a, b) => (b.seq > a.seq ? b : a));
    const sendingFor = Date.now() - startedAt;
    await backend.until(() => backend.rows.get(d.driverId)?.seq === newest.seq, 5_000, 'the newest fix forwarded');
    await settle(INTERVAL + 200);

    const puts = backend.puts(d.driverId);
    assert.ok(puts.every((p) => p.status === 200));
    const gaps = puts.slice(1).map((p, i) => p.at - puts[i].at);
    const expected = Math.round(sendingFor / INTERVAL) + 1;
    assert.ok(puts.length >= 8 && puts.length <= 13,
      `${puts.length} forwards of 50 fixes over ${sendingFor} ms (about ${expected} expected); gaps ${gaps}`);
    assert.ok(Math.min(...gaps) >= INTERVAL - TOLERANCE, `forwards closer than the interval: gaps ${gaps}`);
    assert.equal(puts[puts.length - 1].body.seq, newest.seq, 'the last forward is the newest fix');
    assertNeverOlderAfterNewer(backend, [d.driverId]);
  });

  test('metrics: forwarded, skipped, errors by status (400, 500, unreachable), lag', { timeout: 60_000 }, async () => {
    const { backend, server } = await setup({ FORWARD_MIN_INTERVAL_MS: 100 });
    const metric = async (name) => (await metricsSnapshot(server)).get(name) ?? 0;
    const answered = (status) => backend.requests.filter((r) => r.method === 'PUT' && r.status === status).length;
    const m0 = await metricsSnapshot(server);
    for (const name of ['wecare_forward_forwarded_total', 'wecare_forward_skipped_total', 'wecare_forward_lag_seconds']) {
      assert.equal(m0.get(name), 0, `${name} present and 0 at start`);
    }
    const a = await connectDriver(server);
    const b = await connectDriver(server);

    const f1 = await send(a);
    await backend.until(() => backend.rows.get(a.driverId)?.seq === f1.seq, 5_000, 'first forward');
    await waitUntil(async () => (await metric('wecare_forward_forwarded_total')) === 1, { what: 'forwarded_total 1', intervalMs: 100 });

    // 500: retried, each counted; the owed position's lag grows, then clears.
    backend.setMode('error500');
    const f2 = await send(a);
    await backend.until(() => answered(500) >= 2, 10_000, 'a retried 500');
    await waitUntil(async () => (await metric('wecare_forward_lag_seconds')) >= 1, { timeoutMs: 5_000, intervalMs: 100, what: 'lag ≥ 1 s while owed' });
    backend.setMode('ok');
    await backend.until(() => backend.rows.get(a.driverId)?.seq === f2.seq, 10_000, 'forwarded after the 500s');
    await waitUntil(async () => (await metric('wecare_forward_lag_seconds')) === 0, { timeoutMs: 5_000, intervalMs: 100, what: 'lag back to 0' });
    assert.equal(await metric('wecare_forward_errors_total{status="500"}'), answered(500));

    // 400: skipped, counted once.
    backend.rejectDriver(b.driverId);
    const f3 = await send(b);
    await backend.until(() => backend.puts(b.driverId).some((p) => p.body.seq === f3.seq && p.status === 400), 5_000, 'a 400');
    await waitUntil(async () => (await metric('wecare_forward_skipped_total')) === 1, { what: 'skipped_total 1', intervalMs: 100 });
    assert.equal(await metric('wecare_forward_errors_total{status="400"}'), 1);

    // Refused connections.
    await backend.refuse();
    const f4 = await send(a);
    await waitUntil(async () => (await metric('wecare_forward_errors_total{status="unreachable"}')) >= 1, { timeoutMs: 5_000, intervalMs: 100, what: 'unreachable counted' });
    await backend.resume();
    await backend.until(() => backend.rows.get(a.driverId)?.seq === f4.seq, 10_000, 'forwarded after the refusals');

    await waitUntil(async () => (await metric('wecare_forward_forwarded_total')) === answered(200), { what: 'forwarded_total = 2xx answers', intervalMs: 100 });
    const m = await metricsSnapshot(server);
    assert.equal(m.get('wecare_forward_forwarded_total'), 3);
    assert.equal(m.get('wecare_forward_skipped_total'), 1);
    assert.equal(m.get('wecare_forward_errors_total{status="500"}'), answered(500));
    assert.equal(m.get('wecare_forward_errors_total{status="400"}'), 1);
    assert.equal(m.get('wecare_forward_errors_total{status="200"}'), undefined, 'a success is no error');
  });
});
