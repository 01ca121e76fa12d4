// Contract §3 — driver → server events: location:update, location:batch,
// driver:status (+ alias), acks, dedup, validation codes, permissions.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from '../lib/server.mjs';
import {
  connect, connectDriver, connectWatcher, closeAll, fix, isoAgo, makePeer, rest, settle, uid, ISO_MS_Z, assertOk, assertError,
} from '../lib/client.mjs';

const STATUSES = ['AVAILABLE', 'BUSY', 'ON_TRIP', 'ON_DUTY', 'OFF_DUTY', 'UNAVAILABLE', 'OFFLINE'];

const near = (iso, ms = Date.now(), tol = 10_000) => Math.abs(Date.parse(iso) - ms) <= tol;

describe('§3 driver → server', () => {
  let server;
  let watcher;
  let barrierDriver;

  before(async () => {
    server = await startServer();
    watcher = await connectWatcher(server);
    barrierDriver = await connectDriver(server);
  });
  after(async () => {
    closeAll();
    await server?.dispose();
  });

  /**
   * Positive barrier: a fresh fix from another driver. Stream events are
   * delivered in seq order, so anything stored/broadcast before it has
   * reached the watcher once the barrier has.
   */
  const barrier = async () => {
    const f = fix();
    const ack = await barrierDriver.emitAck('location:update', f);
    assertOk(ack, f);
    await watcher.waitFor('location:updated', (e) => e.id === f.id);
    return ack.seq;
  };

  const head = async () => {
    const r = await rest(server, 'GET', '/api/realtime/latest', { token: watcher.token });
    assert.equal(r.status, 200, r.text);
    return r.body.seq;
  };

  /** Stream events about `driverId` stored after `since` (via events:sync). */
  const storedSince = async (since, driverId) => {
    const r = await watcher.emitAck('events:sync', { since, limit: 1000 });
    assert.equal(r.status, 'ok', JSON.stringify(r));
    return r.events.filter((e) => e.driverId === driverId && e.type !== 'driver:presence');
  };

  describe('location:update', () => {
    test('an event emitted the moment the socket connects is answered (the stock client flushes buffered emits on connect)', async () => {
      // socket.io-client buffers emits made before `connect` and sends them right
      // after the CONNECT packet; the web client also emits from its connect
      // handler. Every such emit must get its ack, also while the server is busy.
      const flooder = await connectDriver(server);
      let stop = false;
      const flood = (async () => {
        while (!stop) await flooder.emitAckWithin(20_000, 'location:batch', { updates: Array.from({ length: 200 }, () => fix()) });
      })();
      const lost = [];
      try {
        for (let i = 0; i < 80 && lost.length === 0; i += 1) {
          const transports = i % 3 === 2 ? ['polling'] : ['websocket'];
          const isWatcher = i % 4 === 3;
          const p = makePeer(server, { token: isWatcher ? server.watcherToken() : server.driverToken(), transports });
          const [event, payload] = isWatcher ? ['events:sync', { since: 0, limit: 1 }] : ['location:update', fix()];
          const pending = i % 2
            ? p.emitAckWithin(3000, event, payload) // buffered before connect
            : new Promise((resolve, reject) => {
              p.socket.once('connect', () => p.emitAckWithin(3000, event, payload).then(resolve, reject));
            });
          p.socket.connect();
          try {
            const ack = await pending;
            if (ack?.status !== 'ok') lost.push(`attempt ${i} ${event}: ${JSON.stringify(ack)}`);
          } catch (err) {
            lost.push(`attempt ${i}: ${event} over ${transports[0]} emitted ${i % 2 ? 'before' : 'on'} connect: ${err.message}`);
          } finally {
            p.close();
          }
        }
      } finally {
        stop = true;
        await flood;
        flooder.close();
      }
      assert.deepEqual(lost, [], 'a first emit was never answered');
    });

    test('success ack {status, id, seq, timestamp, duplicate:false}; stored before the ack', async () => {
      const d = await connectDriver(server);
      const f = fix({ accuracy: 4, heading: 180, speed: 3.5 });
      const before = Date.now();
      const ack = await d.emitAck('location:update', f);
      assertOk(ack, f);
      assert.equal(ack.duplicate, false);
      assert.ok(near(ack.timestamp, before), 'ack timestamp is the server receive time');
      // durably stored before the ack: readable at once through the stream and latest state
      const sync = await watcher.emitAck('events:sync', { since: ack.seq - 1, limit: 1 });
      assert.equal(sync.status, 'ok');
      assert.equal(sync.events[0]?.seq, ack.seq);
      assert.equal(sync.events[0]?.id, f.id);
      const latest = await rest(server, 'GET', '/api/realtime/latest', { token: watcher.token });
      const me = latest.body.drivers.find((x) => x.driverId === d.driverId);
      assert.ok(me, 'driver in latest state');
      assert.equal(me.lat, f.lat);
      assert.equal(me.lng, f.lng);
      d.close();
    });

    test('dedup: the same id twice → duplicate:true with the original seq; watcher receives it once', async () => {
      const d = await connectDriver(server);
      const f = fix();
      const a1 = await d.emitAck('location:update', f);
      assertOk(a1, f);
      const a2 = await d.emitAck('location:update', { ...f, lat: f.lat + 0.5 });
      assertOk(a2, f);
      assert.equal(a2.duplicate, true);
      assert.equal(a2.seq, a1.seq);
      const a3 = await d.emitAck('location:update', f);
      assert.equal(a3.duplicate, true);
      assert.equal(a3.seq, a1.seq);
      await barrier();
      assert.equal(watcher.all('location:updated', (e) => e.id === f.id).length, 1);
      assert.equal((await storedSince(a1.seq - 1, d.driverId)).filter((e) => e.id === f.id).length, 1);
      d.close();
    });

    test('dedup key is (driver, id): two drivers may use the same id', async () => {
      const d1 = await connectDriver(server);
      const d2 = await connectDriver(server);
      const id = uid();
      const a1 = await d1.emitAck('location:update', fix({ id }));
      const a2 = await d2.emitAck('location:update', fix({ id }));
      assertOk(a1);
      assertOk(a2);
      assert.equal(a1.duplicate, false);
      assert.equal(a2.duplicate, false);
      assert.notEqual(a1.seq, a2.seq);
      await watcher.waitFor('location:updated', (e) => e.id === id && e.driverId === d2.driverId);
      await watcher.waitFor('location:updated', (e) => e.id === id && e.driverId === d1.driverId);
      d1.close();
      d2.close();
    });

    test('driverId spoofing → FORBIDDEN and nothing stored; own driverId (string, numeric, null) accepted', async () => {
      const d = await connectDriver(server);
      const h = await head();
      const spoof = fix({ driverId: `${d.driverId}-other` });
      assertError(await d.emitAck('location:update', spoof), 'FORBIDDEN', 'spoof');
      assertError(await d.emitAck('location:update', fix({ driverId: barrierDriver.driverId })), 'FORBIDDEN', 'other driver');
      await barrier();
      assert.equal(watcher.all('location:updated', (e) => e.id === spoof.id).length, 0);
      assert.deepEqual(await storedSince(h, d.driverId), []);
      assert.deepEqual(await storedSince(h, `${d.driverId}-other`), []);
      assertOk(await d.emitAck('location:update', fix({ driverId: d.driverId })));
      assertOk(await d.emitAck('location:update', fix({ driverId: null })));

      const n = await connect(server, { token: server.token({ id: 31, email: 'n@x.y', role: 'driver', driver_id: '123' }) });
      const num = fix({ driverId: 123 });
      assertOk(await n.emitAck('location:update', num), num);
      const ev = await watcher.waitFor('location:updated', (e) => e.id === num.id);
      assert.equal(ev.driverId, '123');
      assertError(await n.emitAck('location:update', fix({ driverId: 124 })), 'FORBIDDEN', 'numeric spoof');
      d.close();
      n.close();
    });

    test('recordedAt more than 5 min in the future → replaced by receive time, adjusted:true in ack and event, kept', async () => {
      const d = await connectDriver(server);
      const f = fix({ recordedAt: new Date(Date.now() + 3600_000).toISOString() });
      const ack = await d.emitAck('location:update', f);
      assertOk(ack, f);
      assert.equal(ack.adjusted, true);
      const ev = await watcher.waitFor('location:updated', (e) => e.id === f.id);
      assert.equal(ev.adjusted, true);
      assert.ok(near(ev.recordedAt), `recordedAt ${ev.recordedAt} should be the receive time`);
      assert.match(ev.recordedAt, ISO_MS_Z);
      // epoch-ms form too
      const g = fix({ recordedAt: Date.now() + 10 * 60_000 });
      const ack2 = await d.emitAck('location:update', g);
      assert.equal(ack2.adjusted, true);
      assert.ok(near((await watcher.waitFor('location:updated', (e) => e.id === g.id)).recordedAt));
      d.close();
    });

    test('recordedAt up to 5 min ahead, in the past, as epoch ms, with an offset, or without ms is kept as given', async () => {
      const d = await connectDriver(server);
      const ahead = new Date(Date.now() + 2 * 60_000);
      const past = Date.now() - 3600_000;
      const at = new Date(Date.now() - 7200_000);
      // the same instant written with a +07:00 offset and without milliseconds
      const local = new Date(at.getTime() + 7 * 3600_000).toISOString().replace(/\.\d{3}Z$/, '+07:00');
      const noMs = new Date(Math.floor((Date.now() - 1800_000) / 1000) * 1000);
      const cases = [
        [ahead.toISOString(), ahead.getTime()],
        [past, past],
        [local, Math.floor(at.getTime() / 1000) * 1000],
        [noMs.toISOString().replace('.000Z', 'Z'), noMs.getTime()],
      ];
      for (const [recordedAt, expected] of cases) {
        const f = fix({ recordedAt });
        const ack = await d.emitAck('location:update', f);
        assertOk(ack, f);
        assert.ok(!ack.adjusted, `not adjusted: ${recordedAt}`);
        const ev = await watcher.waitFor('location:updated', (e) => e.id === f.id);
        assert.match(ev.recordedAt, ISO_MS_Z);
        assert.equal(Date.parse(ev.recordedAt), expected, `recordedAt ${recordedAt} → ${ev.recordedAt}`);
        assert.ok(!ev.adjusted);
      }
      d.close();
    });

    test('`timestamp` is read when recordedAt is absent; recordedAt wins when both; default is receive time', async () => {
      const d = await connectDriver(server);
      const t1 = isoAgo(600_000);
      const f1 = { id: uid(), lat: 10, lng: 20, timestamp: t1 };
      assertOk(await d.emitAck('location:update', f1), f1);
      assert.equal((await watcher.waitFor('location:updated', (e) => e.id === f1.id)).recordedAt, t1);

      const t2 = isoAgo(500_000);
      const f2 = { id: uid(), lat: 10, lng: 20, timestamp: isoAgo(400_000), recordedAt: t2 };
      assertOk(await d.emitAck('location:update', f2), f2);
      assert.equal((await watcher.waitFor('location:updated', (e) => e.id === f2.id)).recordedAt, t2);

      const t3 = Date.now() - 300_000;
      const f3 = { id: uid(), lat: 10, lng: 20, timestamp: t3 };
      assertOk(await d.emitAck('location:update', f3), f3);
      assert.equal(Date.parse((await watcher.waitFor('location:updated', (e) => e.id === f3.id)).recordedAt), t3);

      const f4 = { id: uid(), lat: 10, lng: 20 };
      assertOk(await d.emitAck('location:update', f4), f4);
      const ev4 = await watcher.waitFor('location:updated', (e) => e.id === f4.id);
      assert.ok(near(ev4.recordedAt), `default recordedAt ${ev4.recordedAt}`);
      d.close();
    });

    test('boundary and zero coordinates are valid', async () => {
      const d = await connectDriver(server);
      for (const [lat, lng] of [[90, 180], [-90, -180], [0, 0], [0.0001, -0.0001]]) {
        const f = fix({ lat, lng });
        assertOk(await d.emitAck('location:update', f), f);
        const ev = await watcher.waitFor('location:updated', (e) => e.id === f.id);
        assert.equal(ev.lat, lat);
        assert.equal(ev.lng, lng);
      }
      d.close();
    });

    test('validation: every INVALID_PAYLOAD / INVALID_COORDINATES case, nothing stored', async () => {
      const d = await connectDriver(server);
      const h = await head();
      const P = 'INVALID_PAYLOAD';
      const C = 'INVALID_COORDINATES';
      const base = () => fix();
      const without = (k) => { const f = base(); delete f[k]; return f; };
      const cases = [
        ['lat numeric string', { ...base(), lat: '13.75' }, P],
        ['lng numeric string', { ...base(), lng: '100.5' }, P],
        ['lat string', { ...base(), lat: 'north' }, P],
        ['lat boolean', { ...base(), lat: true }, P],
        ['lng boolean', { ...base(), lng: false }, P],
        ['lat object', { ...base(), lat: { v: 13 } }, P],
        ['lng object', { ...base(), lng: {} }, P],
        ['lat array', { ...base(), lat: [13] }, P],
        ['id empty', { ...base(), id: '' }, P],
        ['id 65 chars', { ...base(), id: 'a'.repeat(65) }, P],
        ['id number', { ...base(), id: 12345 }, P],
        ['id object', { ...base(), id: { x: 1 } }, P],
        ['recordedAt not a time', { ...base(), recordedAt: 'not a time' }, P],
        ['recordedAt boolean', { ...base(), recordedAt: true }, P],
        ['recordedAt object', { ...base(), recordedAt: {} }, P],
        ['timestamp not a time', { ...without('recordedAt'), timestamp: 'yesterday' }, P],
        ['status unknown', { ...base(), status: 'FLYING' }, P],
        ['status number', { ...base(), status: 3 }, P],
        ['accuracy negative', { ...base(), accuracy: -1 }, P],
        ['accuracy string', { ...base(), accuracy: '5' }, P],
        ['heading > 360', { ...base(), heading: 361 }, P],
        ['heading negative', { ...base(), heading: -1 }, P],
        ['speed negative', { ...base(), speed: -0.5 }, P],
        ['speed string', { ...base(), speed: 'fast' }, P],
        ['payload string', 'hello', P],
        ['payload number', 42, P],
        ['payload array', [base()], P],
        ['payload null', null, P],
        ['payload boolean', true, P],
        ['lat missing', without('lat'), C],
        ['lng missing', without('lng'), C],
        ['both missing', { id: uid() }, C],
        ['lat null', { ...base(), lat: null }, C],
        ['lng null', { ...base(), lng: null }, C],
        ['lat 90.0001', { ...base(), lat: 90.0001 }, C],
        ['lat -91', { ...base(), lat: -91 }, C],
        ['lng 180.5', { ...base(), lng: 180.5 }, C],
        ['lng -181', { ...base(), lng: -181 }, C],
        ['lat 1e308', { ...base(), lat: 1e308 }, C],
      ];
      const failures = [];
      for (const [what, payload, code] of cases) {
        const ack = await d.emitAck('location:update', payload);
        if (ack?.status !== 'error' || ack.code !== code || typeof ack.message !== 'string' || ack.retryable !== false) {
          failures.push(`${what}: expected ${code}, got ${JSON.stringify(ack)}`);
        }
      }
      assert.deepEqual(failures, []);
      await barrier();
      assert.deepEqual(await storedSince(h, d.driverId), [], 'nothing that failed validation is stored');
      assert.equal(watcher.all('location:updated', (e) => e.driverId === d.driverId).length, 0, 'nor broadcast');
      d.close();
    });

    test('coordinates are carried exactly, also full-precision doubles (as browser geolocation reports them)', async () => {
      const d = await connectDriver(server);
      const updates = Array.from({ length: 200 }, (_, i) => fix({
        lat: -89 + Math.random() * 178,
        lng: -179 + Math.random() * 358,
        recordedAt: isoAgo((200 - i) * 1000),
      }));
      updates.push(fix({ lat: 13.757603917711407, lng: 100.50285210929394 }));
      const ack = await d.emitAckWithin(10_000, 'location:batch', { updates });
      assert.equal(ack.status, 'ok');
      const got = await watcher.waitForCount('location:updated', updates.length, (e) => e.driverId === d.driverId);
      const byId = new Map(got.map((e) => [e.id, e]));
      const mismatches = updates
        .filter((u) => byId.get(u.id).lat !== u.lat || byId.get(u.id).lng !== u.lng)
        .map((u) => `${u.lat},${u.lng} → ${byId.get(u.id).lat},${byId.get(u.id).lng}`);
      assert.deepEqual(mismatches, [], `${mismatches.length}/${updates.length} coordinates altered`);
      const r = await rest(server, 'POST', '/api/realtime/locations', { token: d.token, body: fix({ lat: 13.757603917711407, lng: 100.50285210929394 }) });
      assert.equal(r.status, 200);
      const latest = await rest(server, 'GET', '/api/realtime/latest', { token: watcher.token });
      const me = latest.body.drivers.find((x) => x.driverId === d.driverId);
      assert.deepEqual([me.lat, me.lng], [13.757603917711407, 100.50285210929394], 'REST body parsed exactly');
      d.close();
    });

    test('optional accuracy/heading/speed are carried to watchers; unknown extra fields are ignored', async () => {
      const d = await connectDriver(server);
      const f = fix({ accuracy: 0, heading: 360, speed: 0, extra: 'ignored', nested: { a: [1, 2] } });
      assertOk(await d.emitAck('location:update', f), f);
      const ev = await watcher.waitFor('location:updated', (e) => e.id === f.id);
      assert.equal(ev.accuracy, 0);
      assert.equal(ev.heading, 360);
      assert.equal(ev.speed, 0);
      const g = fix({ accuracy: 12.5, heading: 45.5, speed: 22.2 });
      assertOk(await d.emitAck('location:update', g), g);
      const ev2 = await watcher.waitFor('location:updated', (e) => e.id === g.id);
      assert.equal(ev2.accuracy, 12.5);
      assert.equal(ev2.heading, 45.5);
      assert.equal(ev2.speed, 22.2);
      d.close();
    });

    test('without an id the server assigns one (old clients)', async () => {
      const d = await connectDriver(server);
      const ack = await d.emitAck('location:update', { lat: 1, lng: 2 });
      assertOk(ack);
      assert.ok(ack.id.length >= 1);
      const ev = await watcher.waitFor('location:updated', (e) => e.seq === ack.seq);
      assert.equal(ev.id, ack.id);
      d.close();
    });

    test('status in location:update (case-insensitive) sets the current status', async () => {
      const d = await connectDriver(server);
      const f = fix({ status: 'on_duty' });
      assertOk(await d.emitAck('location:update', f), f);
      assert.equal((await watcher.waitFor('location:updated', (e) => e.id === f.id)).status, 'ON_DUTY');
      const g = fix();
      assertOk(await d.emitAck('location:update', g), g);
      assert.equal((await watcher.waitFor('location:updated', (e) => e.id === g.id)).status, 'ON_DUTY');
      d.close();
    });
  });

  describe('location:batch', () => {
    test('per-item results in order; one bad item does not reject the others', async () => {
      const d = await connectDriver(server);
      const updates = [
        fix({ recordedAt: isoAgo(50_000) }),
        fix({ lat: 95 }),
        fix({ recordedAt: isoAgo(40_000) }),
        fix({ driverId: 'someone-else' }),
        fix({ lng: 'east' }),
        fix({ recordedAt: isoAgo(30_000) }),
      ];
      const ack = await d.emitAck('location:batch', { updates });
      assert.equal(ack.status, 'ok', JSON.stringify(ack));
      assert.equal(ack.results.length, updates.length);
      assertOk(ack.results[0], updates[0]);
      assertError(ack.results[1], 'INVALID_COORDINATES', 'item 1');
      assertOk(ack.results[2], updates[2]);
      assertError(ack.results[3], 'FORBIDDEN', 'item 3');
      assertError(ack.results[4], 'INVALID_PAYLOAD', 'item 4');
      assertOk(ack.results[5], updates[5]);
      assert.ok(ack.results[0].seq < ack.results[2].seq && ack.results[2].seq < ack.results[5].seq);
      await barrier();
      const got = watcher.all('location:updated', (e) => e.driverId === d.driverId).map((e) => e.id);
      assert.deepEqual(got, [updates[0].id, updates[2].id, updates[5].id]);
      d.close();
    });

    test('a batch item stamped > 5 min ahead is adjusted in its result and its event', async () => {
      const d = await connectDriver(server);
      const updates = [fix({ recordedAt: isoAgo(1000) }), fix({ recordedAt: new Date(Date.now() + 86_400_000).toISOString() })];
      const ack = await d.emitAck('location:batch', { updates });
      assert.equal(ack.status, 'ok');
      assert.ok(!ack.results[0].adjusted);
      assert.equal(ack.results[1].adjusted, true);
      const ev = await watcher.waitFor('location:updated', (e) => e.id === updates[1].id);
      assert.equal(ev.adjusted, true);
      assert.ok(near(ev.recordedAt));
      d.close();
    });

    test('dedup inside a batch and against earlier single updates', async () => {
      const d = await connectDriver(server);
      const single = fix();
      const s = await d.emitAck('location:update', single);
      const f = fix();
      const ack = await d.emitAck('location:batch', { updates: [f, { ...f }, single, fix()] });
      assert.equal(ack.status, 'ok');
      assert.equal(ack.results[0].duplicate, false);
      assert.equal(ack.results[1].duplicate, true);
      assert.equal(ack.results[1].seq, ack.results[0].seq);
      assert.equal(ack.results[2].duplicate, true);
      assert.equal(ack.results[2].seq, s.seq);
      assert.equal(ack.results[3].duplicate, false);
      await barrier();
      assert.equal(watcher.all('location:updated', (e) => e.id === f.id).length, 1);
      assert.equal(watcher.all('location:updated', (e) => e.id === single.id).length, 1);
      d.close();
    });

    test('0 items, 1001 items, missing or non-array updates → INVALID_PAYLOAD, nothing stored', async () => {
      const d = await connectDriver(server);
      const h = await head();
      const over = Array.from({ length: 1001 }, () => fix());
      for (const [what, payload] of [
        ['0 items', { updates: [] }],
        ['1001 items', { updates: over }],
        ['no updates', {}],
        ['updates string', { updates: 'x' }],
        ['updates object', { updates: { 0: fix() } }],
        ['null', null],
        ['array payload', [fix()]],
      ]) {
        assertError(await d.emitAck('location:batch', payload), 'INVALID_PAYLOAD', what);
      }
      await barrier();
      assert.deepEqual(await storedSince(h, d.driverId), []);
      // exactly 1000 is fine
      const ok = await d.emitAckWithin(20_000, 'location:batch', { updates: over.slice(0, 1000) });
      assert.equal(ok.status, 'ok');
      assert.equal(ok.results.length, 1000);
      assert.ok(ok.results.every((r) => r.status === 'ok'));
      d.close();
    });

    test('batch items that are not objects get per-item INVALID_PAYLOAD', async () => {
      const d = await connectDriver(server);
      const good = fix();
      const ack = await d.emitAck('location:batch', { updates: [null, 5, 'x', [], good] });
      assert.equal(ack.status, 'ok', JSON.stringify(ack));
      for (let i = 0; i < 4; i += 1) assertError(ack.results[i], 'INVALID_PAYLOAD', `item ${i}`);
      assertOk(ack.results[4], good);
      d.close();
    });
  });

  describe('driver:status (and alias driver:status:update)', () => {
    test('every status, any case, is stored and broadcast in upper case with {seq, driverId, driverEmail, status, timestamp}', async () => {
      const d = await connectDriver(server);
      for (const [i, status] of STATUSES.entries()) {
        const sent = i % 2 ? status.toLowerCase() : status[0] + status.slice(1).toLowerCase();
        const event = i % 3 === 0 ? 'driver:status:update' : 'driver:status';
        const ack = await d.emitAck(event, { status: sent });
        assert.equal(ack.status, 'ok', `${event} ${sent}: ${JSON.stringify(ack)}`);
        assert.ok(Number.isInteger(ack.seq));
        assert.match(ack.timestamp, ISO_MS_Z);
        const ev = await watcher.waitFor('driver:status:updated', (e) => e.seq === ack.seq);
        assert.equal(ev.driverId, d.driverId);
        assert.equal(ev.driverEmail, d.email);
        assert.equal(ev.status, status);
        assert.match(ev.timestamp, ISO_MS_Z);
      }
      d.close();
    });

    test('ack is like location:update: echoes id, dedups on (driver, id)', async () => {
      const d = await connectDriver(server);
      const id = uid();
      const a1 = await d.emitAck('driver:status', { status: 'busy', id });
      assertOk(a1, { id });
      assert.equal(a1.duplicate, false);
      const a2 = await d.emitAck('driver:status:update', { status: 'busy', id });
      assert.equal(a2.status, 'ok');
      assert.equal(a2.duplicate, true);
      assert.equal(a2.seq, a1.seq);
      await barrier();
      assert.equal(watcher.all('driver:status:updated', (e) => e.driverId === d.driverId).length, 1);
      d.close();
    });

    test('no status until one is reported; then the current status is carried by later location:updated events', async () => {
      const d = await connectDriver(server);
      const f0 = fix();
      assertOk(await d.emitAck('location:update', f0));
      const first = await watcher.waitFor('location:updated', (e) => e.id === f0.id);
      assert.equal('status' in first, false, `never invented (v1.3): ${JSON.stringify(first)}`);
      const snap = await rest(server, 'GET', '/api/realtime/latest', { token: server.watcherToken() });
      const row = snap.body.drivers.find((r) => r.driverId === d.driverId);
      assert.equal('status' in row, false, `the snapshot does not invent one either: ${JSON.stringify(row)}`);
      assert.equal((await d.emitAck('driver:status', { status: 'on_trip' })).status, 'ok');
      const f = fix();
      assertOk(await d.emitAck('location:update', f));
      assert.equal((await watcher.waitFor('location:updated', (e) => e.id === f.id)).status, 'ON_TRIP');
      d.close();
    });

    test('unknown/missing status → INVALID_PAYLOAD; driverId spoof → FORBIDDEN; nothing stored', async () => {
      const d = await connectDriver(server);
      const h = await head();
      for (const event of ['driver:status', 'driver:status:update']) {
        for (const payload of [{ status: 'FLYING' }, {}, { status: 3 }, { status: null }, null, 'BUSY']) {
          assertError(await d.emitAck(event, payload), 'INVALID_PAYLOAD', `${event} ${JSON.stringify(payload)}`);
        }
        assertError(await d.emitAck(event, { status: 'BUSY', driverId: 'not-me' }), 'FORBIDDEN', `${event} spoof`);
      }
      assert.equal((await d.emitAck('driver:status', { status: 'BUSY', driverId: d.driverId })).status, 'ok');
      await barrier();
      const stored = await storedSince(h, d.driverId);
      assert.equal(stored.length, 1, JSON.stringify(stored));
      assert.equal(stored[0].status, 'BUSY');
      d.close();
    });
  });

  describe('who may do what', () => {
    test('watchers sending driver events get FORBIDDEN and nothing is stored', async () => {
      const w = await connectWatcher(server, { role: 'admin' });
      const h = await head();
      const f = fix();
      assertError(await w.emitAck('location:update', f), 'FORBIDDEN', 'location:update');
      // the envelope of a forbidden batch is open: a FORBIDDEN ack, or ok with every item FORBIDDEN
      const b = await w.emitAck('location:batch', { updates: [fix(), fix()] });
      if (b?.status === 'ok') b.results.forEach((r, i) => assertError(r, 'FORBIDDEN', `location:batch item ${i}`));
      else assertError(b, 'FORBIDDEN', 'location:batch');
      assertError(await w.emitAck('driver:status', { status: 'BUSY' }), 'FORBIDDEN', 'driver:status');
      assertError(await w.emitAck('driver:status:update', { status: 'BUSY' }), 'FORBIDDEN', 'driver:status:update');
      // without an ack callback the failure comes as an `error` event
      w.emit('location:update', fix());
      const err = await w.waitFor('error');
      assert.equal(err.code, 'FORBIDDEN');
      assert.equal(typeof err.message, 'string');
      const lastSeq = await barrier();
      const r = await watcher.emitAck('events:sync', { since: h, limit: 1000 });
      const stored = r.events.filter((e) => e.type !== 'driver:presence' && e.seq !== lastSeq);
      assert.deepEqual(stored, [], 'nothing stored for a watcher');
      w.close();
    });

    test("drivers' events:sync is FORBIDDEN; a driver's auth.lastSeq is ignored", async () => {
      const d = await connectDriver(server, { auth: { lastSeq: 0 } });
      assertError(await d.emitAck('events:sync', { since: 0, limit: 10 }), 'FORBIDDEN', 'events:sync');
      await barrier();
      await settle();
      const got = d.names().filter((n) => n !== 'error');
      assert.deepEqual(got, [], 'a driver gets no replay, sync:complete or snapshot');
      d.close();
    });

    test('unknown event: error ack INVALID_PAYLOAD with an ack, ignored without one', async () => {
      const d = await connectDriver(server);
      assertError(await d.emitAck('location:teleport', { lat: 1, lng: 2 }), 'INVALID_PAYLOAD', 'driver unknown event');
      assertError(await watcher.emitAck('no:such:event', {}), 'INVALID_PAYLOAD', 'watcher unknown event');
      d.emit('no:such:event', { x: 1 });
      const f = fix();
      assertOk(await d.emitAck('location:update', f), f);
      await settle();
      assert.equal(d.all('error').length, 0, 'an unknown event without ack is ignored');
      assert.ok(d.connected);
      d.close();
    });

    test('failures without an ack callback are reported as an `error` event {code, message}', async () => {
      const d = await connectDriver(server);
      d.emit('location:update', fix({ lat: 'x' }));
      const e1 = await d.waitFor('error', (e) => e?.code === 'INVALID_PAYLOAD');
      assert.equal(typeof e1.message, 'string');
      d.emit('location:update', fix({ lat: 100 }));
      await d.waitFor('error', (e) => e?.code === 'INVALID_COORDINATES');
      d.emit('location:update', fix({ driverId: 'nope' }));
      await d.waitFor('error', (e) => e?.code === 'FORBIDDEN');
      d.emit('driver:status', { status: 'nope' });
      await d.waitForCount('error', 2, (e) => e?.code === 'INVALID_PAYLOAD');
      d.emit('location:batch', { updates: [] });
      await d.waitForCount('error', 3, (e) => e?.code === 'INVALID_PAYLOAD');
      // a success without a callback produces no error and is stored
      const f = fix();
      d.emit('location:update', f);
      await watcher.waitFor('location:updated', (e) => e.id === f.id);
      assert.equal(d.all('error').length, 5);
      d.close();
    });
  });
});

describe('§3 RATE_LIMITED (basic)', () => {
  let server;
  before(async () => { server = await startServer({ env: { RATE_LIMIT_PER_SEC: 2 } }); });
  after(async () => { closeAll(); await server?.dispose(); });

  test('a driver far over RATE_LIMIT_PER_SEC gets RATE_LIMITED (retryable) on the socket and over REST', async () => {
    const d = await connectDriver(server);
    let limited = null;
    let sent = 0;
    while (!limited && sent < 3000) {
      const acks = await Promise.all(Array.from({ length: 100 }, () => d.emitAckWithin(15_000, 'location:update', fix())));
      sent += 100;
      limited = acks.find((a) => a.status === 'error' && a.code === 'RATE_LIMITED') ?? null;
      const other = acks.find((a) => a.status !== 'ok' && a.code !== 'RATE_LIMITED');
      assert.equal(other, undefined, `unexpected ack ${JSON.stringify(other)}`);
    }
    assert.ok(limited, `no RATE_LIMITED after ${sent} updates at RATE_LIMIT_PER_SEC=2`);
    assertError(limited, 'RATE_LIMITED', 'socket');

    let r;
    for (let i = 0; i < 200; i += 1) {
      r = await rest(server, 'POST', '/api/realtime/locations', { token: d.token, body: fix() });
      if (r.body?.results?.[0]?.status !== 'ok') break;
      assert.equal(r.status, 200, r.text);
    }
    // v1.2 §6: one refused update gets its code's HTTP status, with Retry-After.
    assert.equal(r.status, 429, r.text);
    assert.ok(Number(r.headers['retry-after']) >= 1, `Retry-After: ${r.headers['retry-after']}`);
    assert.equal(r.body.code, 'RATE_LIMITED');
    assertError(r.body.results[0], 'RATE_LIMITED', 'REST');
    d.close();
  });
});
