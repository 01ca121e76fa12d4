// Contract §7 — bad input: every malformed frame, payload or request gets an
// error and changes nothing; the server never crashes, keeps serving other
// sockets and never broadcasts what failed validation.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from '../lib/server.mjs';
import {
  connect, connectDriver, connectWatcher, closeAll, fix, rest, settle, assertOk,
} from '../lib/client.mjs';

const CODES = new Set(['INVALID_PAYLOAD', 'INVALID_COORDINATES']);
const HANDSHAKE_MESSAGES = new Set(['Authentication required', 'Invalid token', 'Token expired', 'Forbidden']);

function deep(n, leaf = 1) {
  let v = leaf;
  for (let i = 0; i < n; i += 1) v = i % 2 ? [v] : { a: v };
  return v;
}

/** A raw engine.io v4 long-polling session (no socket.io-client), for malformed frames. */
async function rawSession(server) {
  const base = '/socket.io/?EIO=4&transport=polling';
  const open = await rest(server, 'GET', base);
  assert.equal(open.status, 200, open.text);
  const { sid } = JSON.parse(open.text.slice(open.text.indexOf('{')));
  const path = `${base}&sid=${encodeURIComponent(sid)}`;
  return {
    sid,
    post: (raw) => rest(server, 'POST', path, { raw, headers: { 'content-type': 'text/plain;charset=UTF-8' } }),
    get: () => rest(server, 'GET', path, { timeoutMs: 10_000 }),
  };
}

describe('§7 bad input', () => {
  let server;
  let watcher;

  before(async () => {
    server = await startServer();
    watcher = await connectWatcher(server);
  });
  after(async () => {
    closeAll();
    server?.assertAlive();
    await server?.dispose();
  });

  /** A well-behaved driver is still served and its fix reaches the watcher. */
  const stillServing = async () => {
    server.assertAlive();
    assert.equal((await rest(server, 'GET', '/healthz')).status, 200);
    const d = await connectDriver(server);
    const f = fix();
    assertOk(await d.emitAck('location:update', f), f);
    await watcher.waitFor('location:updated', (e) => e.id === f.id);
    d.close();
  };

  test('garbage location:update / driver:status payloads get error acks; nothing is broadcast', async () => {
    const d = await connectDriver(server);
    const garbage = [
      ['no payload', []],
      ['null', [null]],
      ['zero', [0]],
      ['negative', [-1]],
      ['empty string', ['']],
      ['huge string', ['x'.repeat(300_000)]],
      ['empty array', [[]]],
      ['nested arrays', [[[[]]]]],
      ['empty object', [{}]],
      ['deep nesting 1000', [deep(1000)]],
      ['deep nesting in lat', [{ id: 'deep-lat', lat: deep(800), lng: 1 }]],
      ['huge id', [{ id: 'i'.repeat(100_000), lat: 1, lng: 1 }]],
      ['huge status', [{ lat: 1, lng: 1, status: 's'.repeat(300_000) }]],
      ['huge recordedAt', [{ lat: 1, lng: 1, recordedAt: '2'.repeat(200_000) }]],
      ['huge driverId', [{ lat: 1, lng: 1, driverId: 'd'.repeat(200_000) }], new Set(['FORBIDDEN', 'INVALID_PAYLOAD'])],
      ['binary payload', [Buffer.from([0xde, 0xad, 0xbe, 0xef])]],
      ['binary lat', [{ lat: Buffer.from([1]), lng: 1 }]],
      ['lat as huge numeric string', [{ lat: '9'.repeat(5000), lng: 1 }]],
      ['lat as array of numbers', [{ lat: [1, 2], lng: [3, 4] }]],
      ['prototype keys', [JSON.parse('{"__proto__": {"lat": 1}, "constructor": {"lng": 2}}')]],
    ];
    const bad = [];
    for (const event of ['location:update', 'driver:status', 'driver:status:update']) {
      for (const [what, args, codes = CODES] of garbage) {
        let ack;
        try {
          ack = await d.emitAckWithin(10_000, event, ...args);
        } catch (err) {
          bad.push(`${event} ${what}: ${err.message}`);
          continue;
        }
        if (ack?.status !== 'error' || !codes.has(ack.code) || typeof ack.message !== 'string') {
          bad.push(`${event} ${what}: ${JSON.stringify(ack).slice(0, 200)}`);
        }
      }
    }
    assert.deepEqual(bad, []);
    assert.ok(d.connected, 'garbage payloads do not cost the connection');
    await stillServing();
    assert.equal(watcher.all('location:updated', (e) => e.driverId === d.driverId).length, 0);
    assert.equal(watcher.all('driver:status:updated', (e) => e.driverId === d.driverId).length, 0);
    d.close();
  });

  test('garbage location:batch payloads: whole-batch or per-item errors; nothing is broadcast', async () => {
    const d = await connectDriver(server);
    const whole = [null, 7, 'x'.repeat(100_000), [], {}, { updates: null }, { updates: 5 }, { updates: 'abc' }, { updates: deep(600) }, { updates: [] }];
    for (const p of whole) {
      const ack = await d.emitAckWithin(10_000, 'location:batch', p);
      assert.equal(ack?.status, 'error', JSON.stringify(ack).slice(0, 200));
      assert.equal(ack.code, 'INVALID_PAYLOAD');
    }
    const items = [null, 1, 'a', [], {}, deep(20), { lat: deep(20), lng: 1 }, { lat: 'x', lng: 1 }, { lat: 1, lng: 1, id: 'z'.repeat(1000) }, { lat: 1, lng: 1, status: {} }];
    const ack = await d.emitAckWithin(10_000, 'location:batch', { updates: items });
    assert.equal(ack?.status, 'ok', JSON.stringify(ack).slice(0, 300));
    assert.equal(ack.results.length, items.length);
    ack.results.forEach((r, i) => {
      assert.equal(r.status, 'error', `item ${i}: ${JSON.stringify(r)}`);
      assert.ok(CODES.has(r.code), `item ${i}: ${r.code}`);
    });
    // a very deeply nested item: the envelope is open (whole batch refused, or that item refused)
    const good = fix();
    const withDeep = await d.emitAckWithin(10_000, 'location:batch', { updates: [deep(2000), good] });
    if (withDeep?.status === 'ok') {
      assert.equal(withDeep.results[0].status, 'error');
      assertOk(withDeep.results[1], good);
    } else {
      assert.equal(withDeep?.status, 'error', JSON.stringify(withDeep).slice(0, 200));
      assert.equal(withDeep.code, 'INVALID_PAYLOAD');
    }
    await stillServing();
    assert.equal(watcher.all('location:updated', (e) => e.driverId === d.driverId && e.id !== good.id).length, 0);
    d.close();
  });

  test('garbage events:sync requests from a watcher get INVALID_PAYLOAD', async () => {
    const w = await connectWatcher(server);
    // null is not `{ since, limit }` either (issue 10: it was read as since 0).
    for (const p of [null, { since: 'abc' }, { since: {} }, { since: [1] }, { limit: 'ten' }, { since: 0, limit: {} }, 'since=0', [0, 10], { since: deep(300) }]) {
      const ack = await w.emitAck('events:sync', p);
      assert.equal(ack?.status, 'error', `${JSON.stringify(p).slice(0, 80)}: ${JSON.stringify(ack).slice(0, 200)}`);
      assert.equal(ack.code, 'INVALID_PAYLOAD');
    }
    const ok = await w.emitAck('events:sync', { since: 0, limit: 1 });
    assert.equal(ok.status, 'ok');
    assert.ok(w.connected);
    w.close();
  });

  test('garbage handshakes are refused with one of the stable messages (or accepted), never crash the server', async () => {
    const auths = [
      { token: 123 },
      { token: {} },
      { token: ['a'] },
      { token: 'x'.repeat(100_000) },
      { token: `${'a'.repeat(5000)}.${'b'.repeat(5000)}.${'c'.repeat(5000)}` },
      { token: 'eyJhbGciOiJIUzI1NiJ9.!!!.###' },
      { token: server.watcherToken(), lastSeq: 'abc' },
      { token: server.watcherToken(), lastSeq: -1 },
      { token: server.watcherToken(), lastSeq: 1e300 },
      { token: server.watcherToken(), lastSeq: { a: 1 }, streamId: { b: 2 } },
      { token: server.watcherToken(), lastSeq: 1, streamId: 'x'.repeat(50_000) },
    ];
    for (const auth of auths) {
      try {
        const p = await connect(server, { auth });
        p.close();
      } catch (err) {
        const msg = err.connectError?.message;
        assert.ok(HANDSHAKE_MESSAGES.has(msg), `unexpected connect_error ${msg} for ${JSON.stringify(auth).slice(0, 80)}`);
      }
    }
    await stillServing();
  });

  test('malformed socket.io frames over raw polling: the server survives and keeps serving others', async () => {
    const token = server.driverToken();
    const frames = [
      '42/locations,["location:update",{',
      '42/locations,',
      '4',
      '9zzz',
      '42/unknown-ns,["x"]',
      '42/locations,"not an array"',
      '42/locations,[]',
      '42/locations,[42,{"lat":1}]',
      '42/locations,99999999999999999999999["location:update",{"lat":1,"lng":1}]',
      '451-/locations,["location:update",{"_placeholder":true,"num":0}]',
      '42/locations,["location:update",' + '['.repeat(20_000) + ']'.repeat(20_000) + ']',
      '\u0000\u0001\u0002\uFFFD',
      `42/locations,1["location:update",{"lat":1,"lng":1}]\u001e${'x'.repeat(1000)}\u001e4`,
    ];
    for (const frame of frames) {
      const s = await rawSession(server);
      const c = await s.post(`40/locations,${JSON.stringify({ token })}`);
      assert.ok(c.status < 500, `namespace connect: ${c.status}`);
      await s.get(); // the CONNECT reply
      const r = await s.post(frame);
      assert.ok(r.status < 500, `frame ${JSON.stringify(frame.slice(0, 40))}: HTTP ${r.status}`);
      server.assertAlive();
    }
    // a valid frame with an ack id over raw polling gets its (error) ack
    const s = await rawSession(server);
    await s.post(`40/locations,${JSON.stringify({ token })}`);
    await s.get();
    const r = await s.post('42/locations,7["location:update",{"lat":"x","lng":1}]');
    assert.equal(r.status, 200, r.text);
    const reply = await s.get();
    assert.match(reply.text, /43\/locations,7\[\{.*"status":"error".*\}\]/, reply.text);
    assert.match(reply.text, /"code":"INVALID_PAYLOAD"/);
    await stillServing();
  });

  test('garbage REST bodies and queries: 400 INVALID_PAYLOAD, never 5xx', async () => {
    const tok = server.driverToken();
    const wtok = server.watcherToken();
    const bodies = [
      'null', '[]', '42', '"str"', 'true', '{"updates":5}', '{"updates":[]}', '{"updates":{}}',
      '['.repeat(100_000) + ']'.repeat(100_000),
      `{"a":${'{"a":'.repeat(10_000)}1${'}'.repeat(10_000)}}`,
      Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x3a, 0x31, 0x7d]), // {"\xff\xfe":1} invalid UTF-8
      '{"lat":1,"lng":2,"id":' + '"'.padEnd(100_000, 'q') + '"}',
      '{"lat":' + '1'.repeat(100_000) + ',"lng":2}',
    ];
    for (const path of ['/api/driver-locations', '/api/realtime/locations', '/api/realtime/status']) {
      for (const raw of bodies) {
        const r = await rest(server, 'POST', path, { token: tok, raw });
        const what = `${path} ${String(raw).slice(0, 30)}`;
        assert.ok(r.status < 500, `${what}: HTTP ${r.status}`);
        if (r.status === 200 && path !== '/api/realtime/status') {
          // An object is "one update" (contract §6): refused as an item, exactly as the socket acks it.
          assert.equal(r.body?.results?.length, 1, `${what}: ${r.text.slice(0, 200)}`);
          assert.equal(r.body.results[0].status, 'error', `${what}: ${r.text.slice(0, 200)}`);
          assert.ok(CODES.has(r.body.results[0].code), `${what}: ${r.text.slice(0, 200)}`);
          continue;
        }
        assert.equal(r.status, 400, `${what}: ${r.status} ${r.text.slice(0, 200)}`);
        assert.equal(r.body?.status, 'error', `${what}: ${r.text.slice(0, 200)}`);
        assert.ok(CODES.has(r.body?.code), `${what}: ${r.text.slice(0, 200)}`);
      }
    }
    for (const q of ['since=abc', 'since=0&limit=abc', 'since={}', 'since=0&waitMs=soon', 'since=1e999']) {
      const r = await rest(server, 'GET', `/api/realtime/events?${q}`, { token: wtok });
      assert.equal(r.status, 400, `events?${q}: ${r.status} ${r.text.slice(0, 200)}`);
      assert.equal(r.body?.code, 'INVALID_PAYLOAD', `events?${q}`);
    }
    for (const q of ['from=garbage', 'to=%00%01', 'from=2026-13-45T99:99:99Z']) {
      const r = await rest(server, 'GET', `/api/realtime/drivers/someone/track?${q}`, { token: wtok });
      assert.equal(r.status, 400, `track?${q}: ${r.status} ${r.text.slice(0, 200)}`);
      assert.equal(r.body?.code, 'INVALID_PAYLOAD', `track?${q}`);
    }
    for (const p of ['/api/realtime/drivers/%ff%fe/track', `/api/realtime/drivers/${'x'.repeat(5000)}/track`]) {
      const r = await rest(server, 'GET', p, { token: wtok });
      assert.ok(r.status < 500, `${p.slice(0, 40)}: HTTP ${r.status}`);
    }
    const r = await rest(server, 'GET', '/api/realtime/latest', { headers: { authorization: `Bearer ${'x'.repeat(20_000)}` } });
    assert.equal(r.status, 401);
    await stillServing();
  });

  test('after all of it: no crash, other sockets untouched, nothing broadcast that failed validation', async () => {
    await settle();
    server.assertAlive();
    assert.ok(watcher.connected, 'the long-lived watcher was never disturbed');
    for (const e of watcher.all('location:updated')) {
      assert.equal(typeof e.lat, 'number');
      assert.ok(e.lat >= -90 && e.lat <= 90 && e.lng >= -180 && e.lng <= 180, JSON.stringify(e));
    }
    await stillServing();
  });
});
