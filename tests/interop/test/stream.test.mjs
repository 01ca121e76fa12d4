// Contract §4 (and the snapshot part of §5) — server → watcher stream:
// location:updated / driver:status:updated fields, outdated, isolation of
// drivers, timestamp format, seq ordering, drivers:snapshot.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from '../lib/server.mjs';
import {
  connectDriver, connectWatcher, connectResumingWatcher, closeAll, fix, isoAgo, rest, settle, waitUntil, ISO_MS_Z, STREAM_EVENTS, assertOk,
} from '../lib/client.mjs';

function assertStrictlyIncreasing(list, what) {
  for (let i = 1; i < list.length; i += 1) {
    assert.ok(list[i].seq > list[i - 1].seq, `${what}: seq ${list[i - 1].seq} then ${list[i].seq} at #${i}`);
  }
}

describe('§4 server → watchers', () => {
  let server;
  let watcher;

  before(async () => {
    server = await startServer();
    watcher = await connectWatcher(server);
  });
  after(async () => {
    closeAll();
    await server?.dispose();
  });

  test('location:updated carries {seq, id, driverId, driverEmail, lat, lng, recordedAt, timestamp, status, accuracy, heading, speed, outdated}', async () => {
    const d = await connectDriver(server, { email: 'somchai@wecare.test' });
    const f = fix({ recordedAt: isoAgo(1000), accuracy: 7.5, heading: 271.25, speed: 13.4 });
    const ack = await d.emitAck('location:update', f);
    assertOk(ack, f);
    const ev = await watcher.waitFor('location:updated', (e) => e.id === f.id);
    assert.equal(ev.seq, ack.seq);
    assert.equal(ev.id, f.id);
    assert.equal(ev.driverId, d.driverId);
    assert.equal(typeof ev.driverId, 'string');
    assert.equal(ev.driverEmail, 'somchai@wecare.test');
    assert.equal(ev.lat, f.lat);
    assert.equal(ev.lng, f.lng);
    assert.equal(ev.recordedAt, f.recordedAt);
    assert.match(ev.timestamp, ISO_MS_Z);
    assert.equal('status' in ev, false, 'no status until the driver reports one (v1.3: never AVAILABLE by default)');
    assert.equal(ev.accuracy, 7.5);
    assert.equal(ev.heading, 271.25);
    assert.equal(ev.speed, 13.4);
    assert.equal(ev.outdated, false);
    assert.ok(ev.adjusted === undefined || ev.adjusted === false);
    d.close();
  });

  test('driver:status:updated carries {seq, driverId, driverEmail, status, timestamp}', async () => {
    const d = await connectDriver(server, { email: 'nok@wecare.test' });
    const ack = await d.emitAck('driver:status', { status: 'off_duty' });
    assert.equal(ack.status, 'ok');
    const ev = await watcher.waitFor('driver:status:updated', (e) => e.driverId === d.driverId);
    assert.equal(ev.seq, ack.seq);
    assert.equal(ev.driverEmail, 'nok@wecare.test');
    assert.equal(ev.status, 'OFF_DUTY');
    assert.match(ev.timestamp, ISO_MS_Z);
    d.close();
  });

  test('outdated:true for a fix older than the newest one; the marker (latest) keeps the newest', async () => {
    const d = await connectDriver(server);
    const newer = fix({ recordedAt: isoAgo(10_000), lat: 14.1, lng: 100.1 });
    const older = fix({ recordedAt: isoAgo(60_000), lat: 14.9, lng: 100.9 });
    assertOk(await d.emitAck('location:update', newer), newer);
    assertOk(await d.emitAck('location:update', older), older);
    const e1 = await watcher.waitFor('location:updated', (e) => e.id === newer.id);
    const e2 = await watcher.waitFor('location:updated', (e) => e.id === older.id);
    assert.equal(e1.outdated, false);
    assert.equal(e2.outdated, true);
    assert.equal(e2.recordedAt, older.recordedAt);
    // a batch flushed after a tunnel: all older than the live fix
    const backlog = [isoAgo(50_000), isoAgo(40_000), isoAgo(30_000)].map((recordedAt) => fix({ recordedAt }));
    const b = await d.emitAck('location:batch', { updates: backlog });
    assert.equal(b.status, 'ok');
    for (const u of backlog) assert.equal((await watcher.waitFor('location:updated', (e) => e.id === u.id)).outdated, true);

    const latest = await rest(server, 'GET', '/api/realtime/latest', { token: watcher.token });
    const me = latest.body.drivers.find((x) => x.driverId === d.driverId);
    assert.equal(me.lat, newer.lat);
    assert.equal(me.lng, newer.lng);
    assert.equal(me.recordedAt, newer.recordedAt);
    const w2 = await connectWatcher(server);
    const snap = w2.snapshot.drivers.find((x) => x.driverId === d.driverId);
    assert.equal(snap.lat, newer.lat);
    assert.equal(snap.recordedAt, newer.recordedAt);
    w2.close();
    d.close();
  });

  test('a fix stamped in the (near) future cannot freeze the marker: newer is judged on min(recordedAt, receive time)', async () => {
    const d = await connectDriver(server);
    const future = fix({ recordedAt: new Date(Date.now() + 4 * 60_000).toISOString(), lat: 15.1 });
    const a1 = await d.emitAck('location:update', future);
    assertOk(a1, future);
    assert.ok(!a1.adjusted, 'within 5 min: kept as given');
    // make sure the next fix's recordedAt is strictly after the first one's receive time
    await waitUntil(() => Date.now() > Date.parse(a1.timestamp) + 5, { what: 'clock to pass first receive time' });
    const now = fix({ recordedAt: new Date().toISOString(), lat: 15.2 });
    assertOk(await d.emitAck('location:update', now), now);
    const e1 = await watcher.waitFor('location:updated', (e) => e.id === future.id);
    const e2 = await watcher.waitFor('location:updated', (e) => e.id === now.id);
    assert.equal(e1.outdated, false);
    assert.equal(e2.outdated, false, 'the real-time fix after a future-stamped one is not outdated');
    const latest = await rest(server, 'GET', '/api/realtime/latest', { token: watcher.token });
    assert.equal(latest.body.drivers.find((x) => x.driverId === d.driverId).lat, 15.2);
    d.close();
  });

  test("drivers never receive other drivers' events (nor snapshots)", async () => {
    const a = await connectDriver(server);
    const b = await connectDriver(server);
    const f = fix();
    assertOk(await b.emitAck('location:update', f), f);
    assert.equal((await b.emitAck('driver:status', { status: 'BUSY' })).status, 'ok');
    assert.equal((await b.emitAck('location:batch', { updates: [fix(), fix()] })).status, 'ok');
    await watcher.waitFor('location:updated', (e) => e.id === f.id);
    await watcher.waitFor('driver:status:updated', (e) => e.driverId === b.driverId);
    await a.emitAck('location:update', fix()); // round trip on a's socket
    await settle(300);
    const leaked = a.names().filter((n) => STREAM_EVENTS.has(n) || n === 'drivers:snapshot' || n === 'sync:complete');
    assert.deepEqual(leaked, [], 'driver a received stream data');
    assert.deepEqual(b.names().filter((n) => STREAM_EVENTS.has(n) || n === 'drivers:snapshot'), [], 'nor its own');
    a.close();
    b.close();
  });

  test('watchers receive stream events in strictly increasing seq, each once (concurrent drivers, websocket and polling watchers)', async () => {
    const wsW = await connectWatcher(server, { transports: ['websocket'] });
    const pollW = await connectWatcher(server, { transports: ['polling'] });
    const drivers = await Promise.all([1, 2, 3].map(() => connectDriver(server)));
    const sent = [];
    await Promise.all(drivers.map(async (d, k) => {
      const acks = [];
      for (let i = 0; i < 20; i += 1) {
        const f = fix();
        sent.push(f.id);
        acks.push(d.emitAck('location:update', f));
        if (i % 5 === 4) acks.push(d.emitAck('driver:status', { status: ['BUSY', 'AVAILABLE'][i % 2] }));
      }
      const updates = Array.from({ length: 25 }, () => fix());
      sent.push(...updates.map((u) => u.id));
      acks.push(d.emitAck('location:batch', { updates }));
      const res = await Promise.all(acks);
      assert.ok(res.every((r) => r.status === 'ok'), `driver ${k}: ${JSON.stringify(res.find((r) => r.status !== 'ok'))}`);
    }));
    const ids = new Set(sent);
    for (const [label, w] of [['websocket', wsW], ['polling', pollW], ['long-lived', watcher]]) {
      await w.waitForCount('location:updated', ids.size, (e) => ids.has(e.id), 15_000);
      const stream = w.stream();
      assertStrictlyIncreasing(stream, label);
      const mine = stream.filter((e) => e.type === 'location:updated' && ids.has(e.id));
      assert.equal(mine.length, ids.size, `${label}: each event once`);
      assert.equal(new Set(mine.map((e) => e.seq)).size, mine.length);
    }
    // every watcher saw the same seq sequence for this burst
    const seqs = (w) => w.stream().filter((e) => e.type === 'location:updated' && ids.has(e.id)).map((e) => e.seq);
    assert.deepEqual(seqs(wsW), seqs(pollW));
    assert.deepEqual(seqs(wsW), seqs(watcher));
    drivers.forEach((d) => d.close());
    wsW.close();
    pollW.close();
  });

  test('under a burst (3 drivers x 2 batches of 1000, 8 watchers) no watcher misses or repeats an event', async () => {
    // A watcher that falls behind may be disconnected so that it resumes
    // (contract §2); these watchers resume like a real app, so the check is
    // the union over their connections: every event once, in seq order.
    const watchers = await Promise.all(Array.from({ length: 8 }, (_, i) => connectResumingWatcher(server, { transports: i % 4 === 3 ? ['polling'] : ['websocket'] })));
    const drivers = await Promise.all([1, 2, 3].map(() => connectDriver(server)));
    const ids = new Set();
    await Promise.all(drivers.map(async (d) => {
      await d.emitAck('location:update', fix()); // first emit on its own
      for (let b = 0; b < 2; b += 1) {
        const updates = Array.from({ length: 1000 }, () => fix());
        for (const u of updates) ids.add(u.id);
        const ack = await d.emitAckWithin(30_000, 'location:batch', { updates });
        assert.equal(ack.status, 'ok');
        assert.ok(ack.results.every((r) => r.status === 'ok'));
      }
    }));
    for (const [k, w] of watchers.entries()) {
      await w.waitForCount('location:updated', ids.size, (e) => ids.has(e.id), 60_000)
        .catch((err) => { throw new Error(`watcher ${k} (${w.disconnects.length} reconnects): ${err.message}`); });
      const stream = w.stream();
      assertStrictlyIncreasing(stream, `watcher ${k}`);
      const mine = stream.filter((e) => e.type === 'location:updated' && ids.has(e.id));
      assert.equal(mine.length, ids.size, `watcher ${k}: each event once`);
    }
    watchers.forEach((w) => w.close());
    drivers.forEach((d) => d.close());
  });

  test('all server timestamps are ISO-8601 UTC with milliseconds', async () => {
    const d = await connectDriver(server);
    const f = fix({ recordedAt: Date.now() - 5000 });
    const ack = await d.emitAck('location:update', f);
    assert.match(ack.timestamp, ISO_MS_Z);
    const ev = await watcher.waitFor('location:updated', (e) => e.id === f.id);
    assert.match(ev.recordedAt, ISO_MS_Z);
    assert.match(ev.timestamp, ISO_MS_Z);
    const st = await d.emitAck('driver:status', { status: 'BUSY' });
    assert.match(st.timestamp, ISO_MS_Z);
    assert.match((await watcher.waitFor('driver:status:updated', (e) => e.seq === st.seq)).timestamp, ISO_MS_Z);
    const w = await connectWatcher(server);
    for (const x of w.snapshot.drivers) {
      if (x.recordedAt !== null && x.recordedAt !== undefined) assert.match(x.recordedAt, ISO_MS_Z, JSON.stringify(x));
      if (x.lastSeen !== null && x.lastSeen !== undefined) assert.match(x.lastSeen, ISO_MS_Z, JSON.stringify(x));
    }
    for (const e of watcher.stream()) assert.match(e.timestamp, ISO_MS_Z, JSON.stringify(e));
    w.close();
    d.close();
  });

  describe('drivers:snapshot', () => {
    test('a watcher without lastSeq gets drivers:snapshot first, with {streamId, seq, drivers[...]}', async () => {
      const d = await connectDriver(server);
      const f = fix({ recordedAt: isoAgo(2000) });
      const ack = await d.emitAck('location:update', f);
      assert.equal((await d.emitAck('driver:status', { status: 'on_trip' })).status, 'ok');
      const st = await d.emitAck('driver:status', { status: 'busy' });

      const w = await connectWatcher(server);
      assert.equal(w.events[0].name, 'drivers:snapshot', `first event was ${w.events[0].name}`);
      const s = w.snapshot;
      assert.equal(typeof s.streamId, 'string');
      assert.ok(s.streamId.length > 0);
      assert.ok(Number.isInteger(s.seq));
      assert.ok(s.seq >= st.seq, `snapshot seq ${s.seq} covers the last acked event ${st.seq}`);
      assert.ok(Array.isArray(s.drivers));
      const me = s.drivers.find((x) => x.driverId === d.driverId);
      assert.ok(me, 'connected driver with a fix is in the snapshot');
      for (const k of ['driverId', 'lat', 'lng', 'recordedAt', 'status', 'online', 'lastSeen']) assert.ok(k in me, `field ${k}`);
      assert.equal(me.lat, f.lat);
      assert.equal(me.lng, f.lng);
      assert.equal(me.recordedAt, f.recordedAt);
      assert.equal(me.status, 'BUSY');
      assert.equal(me.online, true);
      assert.match(me.lastSeen, ISO_MS_Z);
      assert.ok(ack.seq <= s.seq);
      for (const x of s.drivers) assert.equal(typeof x.driverId, 'string');

      // live events after the snapshot continue after its seq; no sync:complete after a snapshot
      const g = fix();
      const a2 = await d.emitAck('location:update', g);
      const ev = await w.waitFor('location:updated', (e) => e.id === g.id);
      assert.equal(ev.seq, a2.seq);
      for (const e of w.stream()) assert.ok(e.seq > s.seq, `event ${e.seq} after snapshot at ${s.seq}`);
      assert.equal(w.all('sync:complete').length, 0);
      assert.equal(w.all('drivers:snapshot').length, 1);
      w.close();
      d.close();
    });

    test('snapshot and GET /api/realtime/latest agree', async () => {
      const w = await connectWatcher(server);
      const r = await rest(server, 'GET', '/api/realtime/latest', { token: w.token });
      assert.equal(r.status, 200);
      assert.equal(r.body.streamId, w.snapshot.streamId);
      assert.ok(r.body.seq >= w.snapshot.seq);
      for (const x of w.snapshot.drivers) {
        const y = r.body.drivers.find((z) => z.driverId === x.driverId);
        assert.ok(y, `driver ${x.driverId} in latest`);
        if (r.body.seq === w.snapshot.seq) {
          assert.equal(y.lat, x.lat);
          assert.equal(y.status, x.status);
        }
      }
      w.close();
    });

    test('polling watchers get the snapshot first too', async () => {
      const w = await connectWatcher(server, { transports: ['polling'] });
      assert.equal(w.events[0].name, 'drivers:snapshot');
      w.close();
    });
  });
});
