// Contract §7 under load: one driver socket floods the server with thousands
// of malformed emits (wrong types for every field, ~900 KB strings, nesting
// far beyond 128 levels, unknown events with and without acks, binary
// attachments, no args / many args, garbage batches, events:sync and
// auth:refresh garbage), while two more sockets write raw garbage frames
// below socket.io-client (Socket.io-level through engine.send, Engine.IO-level
// straight into the websocket). Those two may be closed by the server for
// protocol garbage; the flooding socket may not (its frames are well formed).
// Afterwards the server still serves a well-behaved client, and nothing from
// the garbage was stored or broadcast.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { startServer } from '../lib/server.mjs';
import {
  connectDriver, connectWatcher, closeAll, fix, rest, settle, uid, assertOk,
  allEvents, metricsSnapshot,
} from '../lib/client.mjs';

const FLOOD_BUDGET_MS = 20_000;
const WINDOW = 100; // acks in flight at once
const ROUNDS = 24;

const PAYLOAD_CODES = new Set(['INVALID_PAYLOAD', 'INVALID_COORDINATES', 'FORBIDDEN']);
const SYNC_CODES = new Set(['FORBIDDEN', 'INVALID_PAYLOAD']);
const REFRESH_CODES = new Set(['INVALID_TOKEN', 'FORBIDDEN']);
const UNKNOWN_CODES = new Set(['INVALID_PAYLOAD']);
const DRIVER_EVENTS = new Set(['location:update', 'location:batch', 'driver:status', 'driver:status:update']);

const HUGE = 900_000;
function deepObj(n, leaf = 1) { let v = leaf; for (let i = 0; i < n; i += 1) v = { a: v }; return v; }
function deepArr(n, leaf = 1) { let v = leaf; for (let i = 0; i < n; i += 1) v = [v]; return v; }
function deepMix(n, leaf = 1) { let v = leaf; for (let i = 0; i < n; i += 1) v = i % 2 ? [v] : { a: v }; return v; }

/** Valid fix with one field replaced by a wrong value: every one of these must be refused. */
function wrongFieldFixes() {
  const wrong = {
    id: [5, 0, true, {}, [], ['a'], '', 'x'.repeat(65)],
    lat: ['13.7', '', true, false, {}, [], [1], { v: 1 }, 91, -90.0001, 1e6, null],
    lng: ['100.5', true, {}, [], 181, -181, null],
    recordedAt: [true, {}, [], 'yesterday', '12345', '', -1, '2026-13-45T99:99:99Z'],
    timestamp: [false, { t: 1 }, ['2026-01-01T00:00:00Z'], 'not a time'],
    status: [1, true, {}, [], 'FLYING', '', 'ON-TRIP'],
    accuracy: [-1, '5', true, {}, []],
    heading: [-1, 360.5, 1000, '90', true, {}],
    speed: [-0.1, '3', true, {}, []],
    driverId: [{}, [], true, 'someone-else', 987654321],
  };
  const out = [];
  for (const [field, values] of Object.entries(wrong)) {
    for (const v of values) {
      const f = fix();
      if (field === 'timestamp') delete f.recordedAt;
      f[field] = v;
      out.push(f);
    }
  }
  const noLat = fix(); delete noLat.lat; out.push(noLat);
  const noLng = fix(); delete noLng.lng; out.push(noLng);
  const none = { id: uid() }; out.push(none);
  return out;
}

const NOT_OBJECTS = () => [null, 0, -1, 1.5, '', 'str', true, false, [], [1, 2], [fix()], Buffer.from([0xde, 0xad])];

function statusGarbage() {
  return [
    {}, { status: 1 }, { status: true }, { status: {} }, { status: [] }, { status: 'FLYING' }, { status: '' }, { status: null },
    { status: 'ON-TRIP' }, { status: 's'.repeat(1000) }, { status: 'BUSY', id: 5 }, { status: 'BUSY', id: '' },
    { status: 'BUSY', id: 'i'.repeat(65) }, { status: 'BUSY', driverId: 'someone-else' }, { status: 'BUSY', driverId: {} },
    { status: Buffer.from('BUSY') }, { status: deepArr(50) },
  ];
}

/**
 * One round of cases: { event, args, ack, codes, kind }. kind marks driver
 * events (counted against /metrics) and batches (results per item).
 */
function round(r) {
  const cases = [];
  const add = (event, args, codes, { ack = true, kind } = {}) => cases.push({ event, args, ack, codes, kind: kind ?? (DRIVER_EVENTS.has(event) ? 'driver' : 'other') });

  for (const f of wrongFieldFixes()) {
    add('location:update', [f], PAYLOAD_CODES);
    add('location:update', [f], PAYLOAD_CODES, { ack: false });
  }
  for (const p of NOT_OBJECTS()) {
    for (const e of ['location:update', 'driver:status', 'driver:status:update']) add(e, [p], PAYLOAD_CODES);
  }
  for (const p of statusGarbage()) {
    add('driver:status', [p], PAYLOAD_CODES);
    add('driver:status:update', [p], PAYLOAD_CODES);
  }
  // nesting far beyond 128 levels, as the payload and inside fields
  for (const n of [129, 200, 1000, 3000]) {
    add('location:update', [deepObj(n)], PAYLOAD_CODES);
    add('location:update', [deepArr(n)], PAYLOAD_CODES);
    add('location:update', [{ ...fix(), lat: deepMix(n) }], PAYLOAD_CODES);
    add('driver:status', [{ status: deepObj(n) }], PAYLOAD_CODES);
    add('location:batch', [{ updates: deepArr(n) }], PAYLOAD_CODES, { kind: 'batch' });
    add('location:batch', [{ updates: [deepMix(n), { ...fix(), lng: deepArr(n) }] }], PAYLOAD_CODES, { kind: 'batch' });
  }
  // ~900 KB strings (one frame stays under the 1 MiB limit)
  if (r < 3) {
    add('location:update', ['x'.repeat(HUGE)], PAYLOAD_CODES);
    add('location:update', [{ ...fix(), id: 'i'.repeat(HUGE) }], PAYLOAD_CODES);
    add('location:update', [{ ...fix(), lat: '1'.repeat(HUGE) }], PAYLOAD_CODES);
    add('location:update', [{ ...fix(), recordedAt: '2'.repeat(HUGE) }], PAYLOAD_CODES);
    add('driver:status', [{ status: 'é'.repeat(HUGE / 2) }], PAYLOAD_CODES);
    add('location:batch', [{ updates: [{ ...fix(), status: 's'.repeat(HUGE) }] }], PAYLOAD_CODES, { kind: 'batch' });
    add('e'.repeat(HUGE), [{ lat: 1, lng: 1 }], UNKNOWN_CODES);
    add('auth:refresh', [{ token: 't'.repeat(HUGE) }], REFRESH_CODES);
  }
  // binary attachments
  for (const b of [Buffer.alloc(0), Buffer.from([1, 2, 3]), randomBytes(64 * 1024)]) {
    add('location:update', [b], PAYLOAD_CODES);
    add('location:update', [{ ...fix(), lat: b, lng: b }], PAYLOAD_CODES);
    add('location:update', [{ ...fix(), id: b }], PAYLOAD_CODES);
    add('driver:status', [{ status: b }], PAYLOAD_CODES);
    add('location:batch', [{ updates: [b, { ...fix(), lat: b }] }], PAYLOAD_CODES, { kind: 'batch' });
    add('location:batch', [b], PAYLOAD_CODES, { kind: 'batch' });
    add('events:sync', [b], SYNC_CODES);
    add('auth:refresh', [{ token: b }], REFRESH_CODES);
    add('x:binary', [b, b], UNKNOWN_CODES);
  }
  // no args, many args
  for (const e of ['location:update', 'location:batch', 'driver:status', 'driver:status:update']) add(e, [], PAYLOAD_CODES, { kind: e === 'location:batch' ? 'batch' : 'driver' });
  add('events:sync', [], SYNC_CODES);
  add('auth:refresh', [], REFRESH_CODES);
  add('location:update', Array.from({ length: 60 }, (_, i) => i), PAYLOAD_CODES);
  add('location:update', [null, 'a', {}, [], 3.5, false], PAYLOAD_CODES);
  add('driver:status', ['BUSY', 'ON_TRIP', 1, 2, 3], PAYLOAD_CODES);
  add('location:batch', [[], [], [], []], PAYLOAD_CODES, { kind: 'batch' });
  // garbage batches: envelopes, and 1000 garbage items
  for (const p of [null, 7, 'x', [], {}, { updates: null }, { updates: 5 }, { updates: 'abc' }, { updates: {} }, { updates: [] },
    { updates: Array.from({ length: 1001 }, () => 1) }, { update: [fix()] }]) {
    add('location:batch', [p], PAYLOAD_CODES, { kind: 'batch' });
  }
  const items = [...wrongFieldFixes(), ...NOT_OBJECTS().filter((x) => !Buffer.isBuffer(x)), deepMix(20)];
  add('location:batch', [{ updates: Array.from({ length: 1000 }, (_, i) => items[i % items.length]) }], PAYLOAD_CODES, { kind: 'batch' });
  add('location:batch', [{ updates: wrongFieldFixes() }], PAYLOAD_CODES, { kind: 'batch' });
  // events:sync garbage (from a driver: FORBIDDEN or INVALID_PAYLOAD)
  for (const p of [{ since: 'abc' }, { since: -1 }, { since: {} }, { limit: 'x' }, 'since=0', [0], null, { since: deepObj(300) }, { since: 0, limit: 10 }]) add('events:sync', [p], SYNC_CODES);
  // auth:refresh garbage
  for (const p of [{ token: 5 }, { token: {} }, { token: [] }, { token: '' }, { token: 'a.b.c' }, { token: 'eyJhbGciOiJub25lIn0.e30.' }, 'token', null, 42, [{ token: 'x' }], { token: deepArr(300) }]) {
    add('auth:refresh', [p], REFRESH_CODES);
  }
  // unknown events (also the names of server → client events: never relayed), with and without acks
  const fakeEvent = () => ({ seq: 1, id: uid(), driverId: 'fake', lat: 1, lng: 1, online: true, status: 'BUSY', timestamp: new Date().toISOString() });
  for (const e of ['location:updated', 'driver:status:updated', 'driver:presence', 'drivers:snapshot', 'sync:complete', 'notification:new',
    'auth:expired', 'auth:expiring', 'error', 'message', '', ' ', 'LOCATION:UPDATE', 'location:update ', 'location', '__proto__', 'constructor',
    'hasOwnProperty', 'x'.repeat(2000), `u-${r}`]) {
    add(e, [fakeEvent()], UNKNOWN_CODES);
    add(e, [fakeEvent()], UNKNOWN_CODES, { ack: false });
    add(e, [], UNKNOWN_CODES);
  }
  return cases;
}

/** Socket.io-level garbage, sent below the client through engine.send (each gets the engine.io `4` prefix). */
function socketIoGarbage() {
  return [
    '2/locations,["location:update",',
    '2/locations,',
    '2/locations,["location:update",{"lat":"1","lng":1,"id":"raw-1"}]',
    '2/locations,5["location:update",{"lat":1e400,"lng":1}]',
    '2/locations,6["location:update",{"lat":1,"lng":1,"id":5}]',
    '2/locations,["location:batch",{"updates":[{"lat":true,"lng":1}]}]',
    '2/locations,7["driver:status",{"status":"FLYING"}]',
    '2/locations,{"not":"an array"}',
    '2/locations,[]',
    '2/locations,[42,{"lat":1,"lng":1}]',
    '2/locations,[null,{"lat":1,"lng":1}]',
    '2/locations,99999999999999999999999["location:update",{}]',
    '2/locations,-5["location:update",{}]',
    '3/locations,12[{"status":"ok"}]',
    '5/locations,1-["location:update",{"_placeholder":true,"num":0}]',
    '5/locations,x-["location:update"]',
    '6/locations,3-[{"_placeholder":true,"num":0}]',
    '4/locations,{"message":"x"}',
    '2/unknown-ns,["location:update",{"lat":1,"lng":1}]',
    '0/nope,{"token":"garbage"}',
    '42/locations,["location:update",{"lat":1,"lng"',
    '9', '', '2', '2/', 'zzzz', '{}', '\u0000\u0001\u0002', '\ud800\udfff\ud800', '2/locations,["\u0000"]',
    `2/locations,["${'x'.repeat(HUGE)}"]`,
    `2/locations,9["location:update",${'['.repeat(50_000)}${']'.repeat(50_000)}]`,
    `2/locations,["location:update",{"lat":${'1'.repeat(5000)},"lng":1}]`,
  ];
}

/** Engine.IO-level garbage written straight into the websocket. */
function engineIoGarbage() {
  return ['zzz', '7', '8garbage', '', '{}', '4', '44/locations,garbage', '3probe', '2probe', '6', '\u0000',
    Buffer.from([0xff, 0xfe, 0xfd]), randomBytes(4096), Buffer.alloc(0), `4${'y'.repeat(HUGE)}`, `x${'z'.repeat(HUGE)}`];
}

describe('§7 flood of malformed frames: the server keeps serving, nothing from the garbage is stored or broadcast', () => {
  let server;
  let watcher; // websocket
  let pollWatcher; // polling
  let flood; // the flooding driver socket
  let rawA; let rawB; // raw garbage writers
  let m0;
  const refusals = { total: 0, byCode: {} }; // driver-event refusals seen in acks (for /metrics)
  const validIds = new Set();
  let floodStats = null;

  before(async () => {
    server = await startServer();
    watcher = await connectWatcher(server);
    pollWatcher = await connectWatcher(server, { transports: ['polling'] });
    m0 = await metricsSnapshot(server);
  });
  after(async () => {
    closeAll();
    server?.assertAlive();
    await server?.dispose();
  });

  test(`several thousand malformed emits over one driver socket + raw garbage frames, bounded to ${FLOOD_BUDGET_MS / 1000} s`, async (t) => {
    flood = await connectDriver(server);
    rawA = await connectDriver(server);
    rawB = await connectDriver(server);
    const t0 = Date.now();
    const deadline = t0 + FLOOD_BUDGET_MS;
    const problems = [];
    const countRefusal = (res) => {
      refusals.total += 1;
      refusals.byCode[res.code] = (refusals.byCode[res.code] ?? 0) + 1;
    };
    const check = (c, ack) => {
      const what = `${c.event.slice(0, 30)}(${JSON.stringify(c.args).slice(0, 80)})`;
      if (c.kind === 'batch' && ack?.status === 'ok') {
        if (!Array.isArray(ack.results)) { problems.push(`${what}: ${JSON.stringify(ack).slice(0, 200)}`); return; }
        for (const res of ack.results) {
          if (res?.status !== 'error' || !c.codes.has(res.code)) problems.push(`${what} item: ${JSON.stringify(res).slice(0, 200)}`);
          else countRefusal(res);
        }
        return;
      }
      if (ack?.status !== 'error' || !c.codes.has(ack.code) || typeof ack.message !== 'string') {
        problems.push(`${what}: ${JSON.stringify(ack).slice(0, 200)}`);
        return;
      }
      if (c.kind !== 'other') countRefusal(ack);
    };

    // the `error` events the server emits for refused driver events sent without an ack (§3)
    flood.socket.on('error', (e) => countRefusal(e));

    // raw writers run alongside the flood; a socket the server closes is
    // replaced (same driver) and the garbage list continues where it was
    const rawStats = { a: 0, b: 0, aReopened: 0, bReopened: 0 };
    const MAX_REOPEN = 40;
    const writer = async (key, list, sendOne) => {
      const first = key === 'a' ? rawA : rawB;
      let peer = first;
      for (let i = 0; i < 20 * list.length && Date.now() < deadline; i += 1) {
        if (!sendOne(peer, list[i % list.length])) {
          if (rawStats[`${key}Reopened`] >= MAX_REOPEN) break;
          rawStats[`${key}Reopened`] += 1;
          peer = await connectDriver(server, { driverId: first.driverId, email: first.email });
          i -= 1;
          continue;
        }
        rawStats[key] += 1;
        if (i % 8 === 7) await settle(2); // let the flood's acks interleave
      }
    };
    const rawWriter = Promise.all([
      writer('a', socketIoGarbage(), (peer, frame) => {
        const engine = peer.socket.io.engine;
        if (!peer.connected || engine?.readyState !== 'open') return false;
        engine.send(frame);
        return true;
      }),
      writer('b', engineIoGarbage(), (peer, frame) => {
        const ws = peer.socket.io.engine?.transport?.ws;
        if (!peer.connected || !ws || ws.readyState !== 1) return false;
        ws.send(frame);
        return true;
      }),
    ]);

    let sent = 0;
    let acked = 0;
    for (let r = 0; r < ROUNDS && Date.now() < deadline; r += 1) {
      const cases = round(r);
      for (let i = 0; i < cases.length && Date.now() < deadline; i += WINDOW) {
        const chunk = cases.slice(i, i + WINDOW);
        await Promise.all(chunk.map(async (c) => {
          sent += 1;
          if (!c.ack) { flood.emit(c.event, ...c.args); return; }
          try {
            const ack = await flood.emitAckWithin(Math.max(1000, deadline - Date.now() + 2000), c.event, ...c.args);
            acked += 1;
            check(c, ack);
          } catch (err) {
            problems.push(`${c.event.slice(0, 30)}(${JSON.stringify(c.args).slice(0, 80)}): ${err.message}`);
          }
        }));
      }
    }
    await rawWriter;
    const elapsed = Date.now() - t0;
    floodStats = { sent, acked, elapsed, ...rawStats };
    t.diagnostic(`flood: ${sent} emits (${acked} acked) in ${elapsed} ms; raw: ${rawStats.a} socket.io-level frames over ${rawStats.aReopened + 1} sockets, `
      + `${rawStats.b} engine.io-level frames over ${rawStats.bReopened + 1} sockets; driver-event refusals by code ${JSON.stringify(refusals.byCode)}`);
    assert.deepEqual(problems.slice(0, 30), [], `${problems.length} problems`);
    assert.ok(sent >= 3000, `only ${sent} emits within the budget`);
    assert.ok(elapsed < FLOOD_BUDGET_MS + 2000, `flood took ${elapsed} ms`);
    server.assertAlive();
    assert.ok(flood.connected, 'well-formed frames with garbage payloads do not cost the connection');
    assert.deepEqual(flood.disconnects, []);
  });

  test('afterwards: alive; the flooding socket and a fresh driver are served; watchers got only the valid events; the store holds only them', async () => {
    assert.ok(floodStats, 'the flood ran');
    server.assertAlive();
    assert.equal((await rest(server, 'GET', '/healthz')).status, 200);
    assert.equal((await rest(server, 'GET', '/readyz')).status, 200);
    for (const [k, w] of [['websocket watcher', watcher], ['polling watcher', pollWatcher]]) {
      assert.ok(w.connected, `${k} still connected`);
      assert.deepEqual(w.disconnects, [], `${k} disconnects`);
    }

    const f1 = fix();
    assertOk(await flood.emitAck('location:update', f1), f1);
    validIds.add(f1.id);
    const fresh = await connectDriver(server);
    const f2 = fix();
    const ack2 = await fresh.emitAck('location:update', f2);
    assertOk(ack2, f2);
    validIds.add(f2.id);
    for (const w of [watcher, pollWatcher]) {
      await w.waitFor('location:updated', (e) => e.id === f2.id, 10_000);
      await w.waitFor('location:updated', (e) => e.id === f1.id, 10_000);
    }
    await settle();

    const drivers = new Set([flood.driverId, rawA.driverId, rawB.driverId, fresh.driverId]);
    const isValid = (e) => (e.type === 'driver:presence' && drivers.has(e.driverId) && e.online === true)
      || (e.type === 'location:updated' && validIds.has(e.id));
    for (const [k, w] of [['websocket watcher', watcher], ['polling watcher', pollWatcher]]) {
      const names = new Set(w.names());
      for (const n of names) assert.ok(['drivers:snapshot', 'driver:presence', 'location:updated'].includes(n), `${k} received a ${n} event`);
      const stream = w.stream();
      const bad = stream.filter((e) => !isValid(e));
      assert.deepEqual(bad, [], `${k}: stream events not caused by a valid message`);
      assert.equal(stream.filter((e) => e.type === 'location:updated').length, validIds.size, `${k}: location:updated count`);
      const seqs = stream.map((e) => e.seq);
      assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b), `${k}: seq order`);
      assert.equal(new Set(seqs).size, seqs.length, `${k}: no duplicates`);
    }

    const { events } = await allEvents(server, { since: 0 });
    assert.deepEqual(events.filter((e) => !isValid(e)), [], 'stored events not caused by a valid message');
    assert.deepEqual(events.filter((e) => e.type === 'location:updated').map((e) => e.id).sort(), [...validIds].sort());
    assert.equal(events.filter((e) => e.type === 'driver:status:updated').length, 0, 'no status stored');

    const latest = await rest(server, 'GET', '/api/realtime/latest', { token: server.watcherToken() });
    const rows = new Map(latest.body.drivers.map((d) => [d.driverId, d]));
    assert.equal(rows.get(flood.driverId)?.lat, f1.lat, 'the flooding driver\'s marker is its one valid fix');
    assert.equal(rows.get(flood.driverId)?.status, undefined, 'no garbage status was applied (none was ever reported)');
    for (const r of [rawA, rawB]) assert.equal(rows.get(r.driverId)?.lat ?? null, null, 'raw garbage moved no marker');
    for (const id of rows.keys()) assert.ok(drivers.has(id), `unknown driver ${id} in /latest`);
  });

  test('/metrics shows the rejections', async () => {
    const m1 = await metricsSnapshot(server);
    const delta = (code) => (m1.get(`wecare_rejections_total{code="${code}"}`) ?? 0) - (m0.get(`wecare_rejections_total{code="${code}"}`) ?? 0);
    for (const code of ['INVALID_PAYLOAD', 'INVALID_COORDINATES', 'FORBIDDEN']) {
      assert.ok(delta(code) > 0, `wecare_rejections_total{code="${code}"} did not grow`);
    }
    const total = ['INVALID_PAYLOAD', 'INVALID_COORDINATES', 'FORBIDDEN'].reduce((s, c) => s + delta(c), 0);
    assert.ok(total >= 1000, `only ${total} rejections counted`);
  });

  test('/metrics counts every refused driver event by code (acked refusals + `error` events for ack-less ones)', async () => {
    const m1 = await metricsSnapshot(server);
    const delta = (code) => (m1.get(`wecare_rejections_total{code="${code}"}`) ?? 0) - (m0.get(`wecare_rejections_total{code="${code}"}`) ?? 0);
    const short = Object.entries(refusals.byCode).filter(([code, n]) => delta(code) < n).map(([code, n]) => `${code}: counted ${delta(code)}, refused ${n}`);
    assert.deepEqual(short, [], 'rejections counted fewer than the refusals acked');
  });
});
