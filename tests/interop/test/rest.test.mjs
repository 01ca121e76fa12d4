// Contract §6 — REST fallback: ingest (legacy and own path), status, events
// (+ long-poll), latest, track, health/ready/metrics, body errors.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { startServer } from '../lib/server.mjs';
import {
  connectDriver, connectWatcher, closeAll, fix, isoAgo, rest, uid, ISO_MS_Z, assertOk, assertError,
} from '../lib/client.mjs';

const INGEST_PATHS = ['/api/driver-locations', '/api/realtime/locations'];

describe('§6 REST', () => {
  let server;
  let watcher;
  let wTok;

  before(async () => {
    server = await startServer();
    watcher = await connectWatcher(server);
    wTok = watcher.token;
  });
  after(async () => {
    closeAll();
    await server?.dispose();
  });

  const barrier = async (dTok) => {
    const f = fix();
    const r = await rest(server, 'POST', '/api/realtime/locations', { token: dTok, body: f });
    assert.equal(r.status, 200, r.text);
    await watcher.waitFor('location:updated', (e) => e.id === f.id);
  };

  for (const path of INGEST_PATHS) {
    test(`POST ${path}: one update → 200 {status:'ok', results:[ack]} and a broadcast`, async () => {
      const driverId = `rest-${uid().slice(0, 8)}`;
      const tok = server.driverToken({ driverId, email: `${driverId}@x.test` });
      const f = fix({ accuracy: 3 });
      const r = await rest(server, 'POST', path, { token: tok, body: f });
      assert.equal(r.status, 200, r.text);
      assert.match(String(r.headers['content-type']), /application\/json/);
      assert.equal(r.body.status, 'ok');
      assert.equal(r.body.results.length, 1);
      assertOk(r.body.results[0], f);
      assert.equal(r.body.results[0].duplicate, false);
      const ev = await watcher.waitFor('location:updated', (e) => e.id === f.id);
      assert.equal(ev.seq, r.body.results[0].seq);
      assert.equal(ev.driverId, driverId);
      assert.equal(ev.driverEmail, `${driverId}@x.test`);
      assert.equal(ev.accuracy, 3);
    });

    test(`POST ${path}: {updates:[...]} → per-item results in order, bad items do not reject others`, async () => {
      const tok = server.driverToken();
      const updates = [fix({ recordedAt: isoAgo(30_000) }), fix({ lat: -95 }), fix({ recordedAt: isoAgo(20_000) }), fix({ lat: '1' })];
      const r = await rest(server, 'POST', path, { token: tok, body: { updates } });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.body.status, 'ok');
      assert.equal(r.body.results.length, 4);
      assertOk(r.body.results[0], updates[0]);
      assertError(r.body.results[1], 'INVALID_COORDINATES', 'item 1');
      assertOk(r.body.results[2], updates[2]);
      assertError(r.body.results[3], 'INVALID_PAYLOAD', 'item 3');
      assert.ok(r.body.results[0].seq < r.body.results[2].seq);
      await watcher.waitFor('location:updated', (e) => e.id === updates[2].id);
    });
  }

  test('(v1.2) a refused single update gets the HTTP status of its code; the body keeps results:[error item]', async () => {
    const tok = server.driverToken();
    const cases = [
      [fix({ lat: 200 }), 'INVALID_COORDINATES', 400],
      [fix({ lng: 'x' }), 'INVALID_PAYLOAD', 400],
      [fix({ status: 'NAPPING' }), 'INVALID_PAYLOAD', 400],
      [fix({ id: '' }), 'INVALID_PAYLOAD', 400],
      [fix({ driverId: 'not-me' }), 'FORBIDDEN', 403],
    ];
    const before = (await rest(server, 'GET', '/api/realtime/events?since=0&limit=1000', { token: wTok })).body.lastSeq;
    for (const path of INGEST_PATHS) {
      for (const [body, code, status] of cases) {
        const r = await rest(server, 'POST', path, { token: tok, body });
        assert.equal(r.status, status, `${path} ${code}: ${r.text}`);
        // What the deployed web client checks: a refused fix is not "ok".
        assert.equal(r.status >= 200 && r.status < 300, false);
        assert.equal(r.body?.status, 'error', r.text);
        assert.equal(r.body?.code, code, r.text);
        assert.equal(typeof r.body?.message, 'string', r.text);
        assert.equal(r.headers['retry-after'], undefined, 'a final refusal has no Retry-After');
        assert.ok(Array.isArray(r.body?.results) && r.body.results.length === 1, r.text);
        assertError(r.body.results[0], code, `${path} item`);
      }
    }
    await barrier(tok);
    const page = (await rest(server, 'GET', `/api/realtime/events?since=${before}&limit=1000`, { token: wTok })).body;
    assert.equal(page.events.length, 1, `only the barrier fix was stored: ${JSON.stringify(page.events)}`);
  });

  test('(v1.2) a batch body with refused items keeps 200 and per-item results; a duplicate single update is 200', async () => {
    const tok = server.driverToken();
    const good = fix();
    const r = await rest(server, 'POST', '/api/driver-locations', { token: tok, body: { updates: [good, fix({ lat: 200 })] } });
    assert.equal(r.status, 200, r.text);
    assertOk(r.body.results[0], good);
    assertError(r.body.results[1], 'INVALID_COORDINATES', 'batch item');
    const again = await rest(server, 'POST', '/api/driver-locations', { token: tok, body: good });
    assert.equal(again.status, 200, again.text);
    assert.equal(again.body.results[0].duplicate, true);
  });

  test('same dedup as the socket: socket then HTTP (and HTTP then socket) with the same id → stored and broadcast once', async () => {
    const d = await connectDriver(server);
    const f = fix();
    const a = await d.emitAck('location:update', f);
    assertOk(a, f);
    for (const path of INGEST_PATHS) {
      const r = await rest(server, 'POST', path, { token: d.token, body: f });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.body.results[0].duplicate, true);
      assert.equal(r.body.results[0].seq, a.seq);
    }
    const g = fix();
    const r = await rest(server, 'POST', '/api/driver-locations', { token: d.token, body: { updates: [g] } });
    assert.equal(r.body.results[0].duplicate, false);
    const b = await d.emitAck('location:update', g);
    assert.equal(b.duplicate, true);
    assert.equal(b.seq, r.body.results[0].seq);
    const bb = await d.emitAck('location:batch', { updates: [g, f] });
    assert.deepEqual(bb.results.map((x) => [x.duplicate, x.seq]), [[true, b.seq], [true, a.seq]]);
    await barrier(d.token);
    assert.equal(watcher.all('location:updated', (e) => e.id === f.id).length, 1);
    assert.equal(watcher.all('location:updated', (e) => e.id === g.id).length, 1);
    d.close();
  });

  test('POST /api/realtime/status: body as driver:status; broadcast upper-case', async () => {
    const driverId = `st-${uid().slice(0, 8)}`;
    const tok = server.driverToken({ driverId });
    const r = await rest(server, 'POST', '/api/realtime/status', { token: tok, body: { status: 'on_trip' } });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body.status, 'ok');
    const ev = await watcher.waitFor('driver:status:updated', (e) => e.driverId === driverId);
    assert.equal(ev.status, 'ON_TRIP');
    const bad = await rest(server, 'POST', '/api/realtime/status', { token: tok, body: { status: 'sleeping' } });
    assert.equal(bad.status, 400, bad.text);
    assert.equal(bad.body?.code, 'INVALID_PAYLOAD');
    const spoof = await rest(server, 'POST', '/api/realtime/status', { token: tok, body: { status: 'BUSY', driverId: 'x' } });
    assert.equal(spoof.status, 403, spoof.text);
    assert.equal(spoof.body?.code, 'FORBIDDEN');
  });

  test('GET /api/realtime/events?since&limit → {streamId, events, lastSeq, gap} like events:sync', async () => {
    const tok = server.driverToken();
    const since = watcher.stream().at(-1)?.seq ?? watcher.snapshot.seq;
    const updates = [fix(), fix(), fix()];
    const p = await rest(server, 'POST', '/api/realtime/locations', { token: tok, body: { updates } });
    assert.equal(p.status, 200, p.text);
    const seqs = p.body.results.map((x) => x.seq);
    await watcher.waitFor('location:updated', (e) => e.seq === seqs[2]);
    const r = await rest(server, 'GET', `/api/realtime/events?since=${since}&limit=2`, { token: wTok });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body.streamId, watcher.snapshot.streamId);
    assert.equal(r.body.gap, false);
    assert.equal(r.body.events.length, 2);
    const live = watcher.stream().filter((e) => e.seq > since).slice(0, 2);
    assert.deepEqual(r.body.events, live);
    assert.ok(r.body.lastSeq >= r.body.events[1].seq);
    const viaSocket = await watcher.emitAck('events:sync', { since, limit: 2 });
    assert.deepEqual(viaSocket.events, r.body.events);
    // matching streamId param is fine; another stream's id means the client's since is meaningless → gap
    const same = await rest(server, 'GET', `/api/realtime/events?since=${since}&limit=2&streamId=${encodeURIComponent(watcher.snapshot.streamId)}`, { token: wTok });
    assert.equal(same.status, 200);
    assert.equal(same.body.gap, false);
    const other = await rest(server, 'GET', `/api/realtime/events?since=${since}&limit=2&streamId=not-this-stream`, { token: wTok });
    assert.equal(other.status, 200, other.text);
    assert.equal(other.body.gap, true);
  });

  test('GET /api/realtime/events with waitMs long-polls: returns early when an event arrives', async () => {
    const tok = server.driverToken();
    const head = (await rest(server, 'GET', '/api/realtime/latest', { token: wTok })).body.seq;
    const t0 = Date.now();
    const poll = rest(server, 'GET', `/api/realtime/events?since=${head}&waitMs=20000`, { token: wTok, timeoutMs: 25_000 });
    // the poll must still be pending; then an event arrives
    let settled = false;
    poll.then(() => { settled = true; }, () => { settled = true; });
    await new Promise((r) => setTimeout(r, 300)); // let the long-poll park (nothing to await on the server side)
    assert.equal(settled, false, 'long-poll returned before any event');
    const f = fix();
    const p = await rest(server, 'POST', '/api/realtime/locations', { token: tok, body: f });
    assert.equal(p.status, 200, p.text);
    const r = await poll;
    const elapsed = Date.now() - t0;
    assert.equal(r.status, 200, r.text);
    assert.ok(elapsed < 10_000, `returned after ${elapsed} ms`);
    assert.ok(r.body.events.some((e) => e.id === f.id), JSON.stringify(r.body));
  });

  test('GET /api/realtime/events with waitMs and no event: returns empty after the wait', async () => {
    const head = (await rest(server, 'GET', '/api/realtime/latest', { token: wTok })).body.seq;
    const t0 = Date.now();
    const r = await rest(server, 'GET', `/api/realtime/events?since=${head}&waitMs=800`, { token: wTok, timeoutMs: 10_000 });
    const elapsed = Date.now() - t0;
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.body.events, []);
    assert.equal(r.body.gap, false);
    assert.ok(elapsed >= 700, `waited only ${elapsed} ms`);
    assert.ok(elapsed < 5000, `waited ${elapsed} ms`);
  });

  test('GET /api/realtime/latest → {streamId, seq, drivers:[{driverId, lat, lng, recordedAt, status, online, lastSeen}]}', async () => {
    const driverId = `lt-${uid().slice(0, 8)}`;
    const tok = server.driverToken({ driverId });
    const f = fix({ recordedAt: isoAgo(5000) });
    const p = await rest(server, 'POST', '/api/driver-locations', { token: tok, body: { ...f, status: 'busy' } });
    assert.equal(p.status, 200, p.text);
    const r = await rest(server, 'GET', '/api/realtime/latest', { token: wTok });
    assert.equal(r.status, 200);
    assert.equal(r.body.streamId, watcher.snapshot.streamId);
    assert.ok(r.body.seq >= p.body.results[0].seq);
    const me = r.body.drivers.find((x) => x.driverId === driverId);
    assert.ok(me, 'driver present');
    assert.equal(me.lat, f.lat);
    assert.equal(me.lng, f.lng);
    assert.equal(me.recordedAt, f.recordedAt);
    assert.equal(me.status, 'BUSY');
    assert.equal(typeof me.online, 'boolean');
    assert.ok('lastSeen' in me);
  });

  test('GET /api/realtime/drivers/:driverId/track?from=&to= → {driverId, fixes} ordered by recordedAt', async () => {
    const driverId = `trk-${uid().slice(0, 8)}`;
    const tok = server.driverToken({ driverId });
    const base = Date.now() - 3600_000;
    const at = (m) => new Date(base + m * 60_000).toISOString();
    // sent out of recordedAt order; the first and last fall outside the window
    const updates = [at(2), at(0), at(3), at(1), at(-30), at(40)].map((recordedAt, i) => fix({ recordedAt, lat: 10 + i }));
    const p = await rest(server, 'POST', '/api/realtime/locations', { token: tok, body: { updates } });
    assert.equal(p.status, 200, p.text);
    const q = `from=${encodeURIComponent(at(-1))}&to=${encodeURIComponent(at(10))}`;
    const r = await rest(server, 'GET', `/api/realtime/drivers/${encodeURIComponent(driverId)}/track?${q}`, { token: wTok });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body.driverId, driverId);
    assert.deepEqual(r.body.fixes.map((x) => x.recordedAt), [at(0), at(1), at(2), at(3)]);
    for (const x of r.body.fixes) {
      assert.equal(x.driverId, driverId);
      assert.ok(updates.some((u) => u.id === x.id && u.lat === x.lat));
      assert.match(x.recordedAt, ISO_MS_Z);
    }
    const everything = await rest(server, 'GET', `/api/realtime/drivers/${encodeURIComponent(driverId)}/track`, { token: wTok });
    assert.equal(everything.status, 200);
    assert.deepEqual(everything.body.fixes.map((x) => x.recordedAt), [at(-30), at(0), at(1), at(2), at(3), at(40)]);
    const forbidden = await rest(server, 'GET', `/api/realtime/drivers/${encodeURIComponent(driverId)}/track`, { token: tok });
    assert.equal(forbidden.status, 403);
  });

  test('/healthz and /readyz answer 200 without a token; /metrics is Prometheus text', async () => {
    assert.equal((await rest(server, 'GET', '/healthz')).status, 200);
    assert.equal((await rest(server, 'GET', '/readyz')).status, 200);
    const m = await rest(server, 'GET', '/metrics');
    assert.equal(m.status, 200);
    assert.match(String(m.headers['content-type']), /^text\/plain/);
    assert.match(m.text, /^# (HELP|TYPE) \w+/m);
    // sample lines: name{labels} value
    assert.match(m.text, /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? ([-+0-9.eE]+|NaN|[+-]Inf)$/m);
    for (const line of m.text.split('\n')) {
      if (line === '' || line.startsWith('#')) continue;
      assert.match(line, /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{.*\})? ([-+0-9.eE]+|NaN|[+-]Inf)( -?\d+)?$/, `not a Prometheus sample line: ${line}`);
    }
  });

  test('/metrics covers connections, events in/out, acks, dedup hits and rejections by code', async () => {
    const d = await connectDriver(server);
    const f = fix();
    assertOk(await d.emitAck('location:update', f));
    await d.emitAck('location:update', f); // a dedup hit
    await d.emitAck('location:update', fix({ lat: 123 })); // an INVALID_COORDINATES rejection
    const m = await rest(server, 'GET', '/metrics');
    const names = [...m.text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((x) => x[1]);
    for (const [what, re] of [['connections', /conn/i], ['events in', /in/i], ['events out', /out|sent|fan/i], ['acks', /ack/i], ['dedup hits', /dedup|duplicate/i], ['rejections', /reject|refus|error/i]]) {
      assert.ok(names.some((n) => re.test(n)), `no metric for ${what} in ${names.join(', ')}`);
    }
    assert.match(m.text, /^\S*(reject|refus|error)\S*\{[^}]*"INVALID_COORDINATES"[^}]*\} [1-9]/im, 'rejections by code');
    d.close();
  });

  test('/metrics exposes ack and fan-out latency as Prometheus histograms', async () => {
    await barrier(server.driverToken());
    const m = await rest(server, 'GET', '/metrics');
    assert.match(m.text, /^# TYPE \S+ histogram$/m, 'at least one histogram');
    assert.match(m.text, /_bucket\{[^}]*le="/);
  });

  test('malformed JSON → 400 INVALID_PAYLOAD; body over 1 MiB → 413; no token → 401 AUTH_REQUIRED', async () => {
    const tok = server.driverToken();
    for (const path of [...INGEST_PATHS, '/api/realtime/status']) {
      for (const raw of ['{"lat": 1, "lng":', 'not json', '{"lat":1,"lng":2}}', '']) {
        const r = await rest(server, 'POST', path, { token: tok, raw });
        assert.equal(r.status, 400, `${path} ${JSON.stringify(raw)}: ${r.status} ${r.text}`);
        assert.equal(r.body?.status, 'error', r.text);
        assert.equal(r.body?.code, 'INVALID_PAYLOAD', r.text);
      }
      const big = JSON.stringify({ ...fix(), pad: 'x'.repeat(1024 * 1024 + 100) });
      const r = await rest(server, 'POST', path, { token: tok, raw: big, timeoutMs: 10_000 });
      assert.equal(r.status, 413, `${path} oversize: ${r.status}`);
      const none = await rest(server, 'POST', path, { body: fix() });
      assert.equal(none.status, 401);
      assert.equal(none.body?.code, 'AUTH_REQUIRED');
    }
    // a chunked body (no Content-Length) over 1 MiB is refused the same way
    // raw socket, so the answer can be read even if the server stops reading the upload
    const chunked = await new Promise((resolve, reject) => {
      const sock = net.connect(server.port, '127.0.0.1');
      let got = '';
      const timer = setTimeout(() => { sock.destroy(); reject(new Error(`chunked upload: no answer (${got.slice(0, 100)})`)); }, 10_000);
      sock.on('data', (c) => {
        got += c.toString('latin1');
        const m = /^HTTP\/1\.[01] (\d{3})/.exec(got);
        if (m) { clearTimeout(timer); sock.destroy(); resolve(Number(m[1])); }
      });
      sock.on('error', () => {}); // EPIPE/ECONNRESET after the server answered
      // Past the limit the server answers 413 and closes while the client is
      // still uploading; the kernel may then reset the connection and drop
      // the answer before it is read (a TCP race, not a server choice). A
      // sized body (Content-Length, above) always gets its 413; here a
      // reset without an answer counts as the same refusal.
      sock.on('close', () => { clearTimeout(timer); const m = /^HTTP\/1\.[01] (\d{3})/.exec(got); resolve(m ? Number(m[1]) : 'reset'); });
      sock.write(`POST /api/realtime/locations HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${tok}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n`);
      const chunk = (str) => `${Buffer.byteLength(str).toString(16)}\r\n${str}\r\n`;
      sock.write(chunk('{"lat":1,"lng":2,"pad":"'));
      const piece = chunk('z'.repeat(64 * 1024));
      let sent = 0;
      const pump = () => {
        while (sent < 20 && !sock.destroyed) {
          sent += 1;
          if (!sock.write(piece)) { sock.once('drain', pump); return; }
        }
        if (!sock.destroyed) sock.write(`${chunk('"}')}0\r\n\r\n`);
      };
      pump();
    });
    assert.ok(chunked === 413 || chunked === 'reset', `chunked body over 1 MiB: ${chunked}`);
    for (const path of ['/api/realtime/events?since=0', '/api/realtime/latest', '/api/realtime/drivers/x/track']) {
      const none = await rest(server, 'GET', path);
      assert.equal(none.status, 401, path);
      assert.equal(none.body?.status, 'error');
      assert.equal(none.body?.code, 'AUTH_REQUIRED');
    }
    // the server is fine afterwards
    await barrier(tok);
  });
});
