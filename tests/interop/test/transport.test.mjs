// Contract §1 — transport: both socket.io-client transports, CORS, websocket
// Origin check, production start-up checks, frame size limits.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { startServer, startExpectingExit } from '../lib/server.mjs';
import {
  connectDriver, connectWatcher, connectError, closeAll, fix, isoAgo, rest, waitUntil, ISO_MS_Z,
} from '../lib/client.mjs';
import { randomSecret } from '../lib/token.mjs';

const ALLOWED = ['http://app.wecare.test', 'http://ops.wecare.test'];
const DEV_DEFAULT_ORIGINS = ['http://localhost:5173', 'http://localhost:5174', 'http://localhost:3000'];

/** Raw websocket upgrade request; resolves with the HTTP status (101 = accepted). */
function rawUpgrade(server, origin) {
  return new Promise((resolve, reject) => {
    const headers = {
      connection: 'Upgrade',
      upgrade: 'websocket',
      'sec-websocket-version': '13',
      'sec-websocket-key': Buffer.from('0123456789abcdef').toString('base64'),
    };
    if (origin) headers.origin = origin;
    const req = http.request({ host: '127.0.0.1', port: server.port, path: '/socket.io/?EIO=4&transport=websocket', headers, agent: false });
    req.setTimeout(5000, () => req.destroy(new Error('upgrade request timed out')));
    req.on('upgrade', (res, sock) => { sock.destroy(); resolve(res.statusCode); });
    req.on('response', (res) => { res.resume(); resolve(res.statusCode); });
    req.on('error', reject);
    req.end();
  });
}

function bigBatch(n) {
  return Array.from({ length: n }, (_, i) => fix({
    recordedAt: isoAgo((n - i) * 1000),
    accuracy: 5.5,
    heading: 90,
    speed: 12.25,
    status: 'ON_TRIP',
  }));
}

describe('§1 transport', () => {
  let server; // explicit ALLOWED_ORIGINS (with spaces to check trimming)
  let devServer; // no ALLOWED_ORIGINS, not production: default dev origins

  before(async () => {
    [server, devServer] = await Promise.all([
      startServer({ env: { ALLOWED_ORIGINS: ` ${ALLOWED[0]} , ${ALLOWED[1]} ` } }),
      startServer({ env: { ALLOWED_ORIGINS: null } }),
    ]);
  });
  after(async () => {
    closeAll();
    await Promise.all([server?.dispose(), devServer?.dispose()]);
  });

  for (const transports of [['websocket'], ['polling'], ['polling', 'websocket']]) {
    const label = transports.join('+');
    test(`core driver→watcher flow over ${label} (update, 1000-item batch, status)`, async () => {
      const watcher = await connectWatcher(server, { transports });
      const driver = await connectDriver(server, { transports });
      if (transports.length === 1) {
        assert.equal(driver.transport, transports[0]);
        assert.equal(watcher.transport, transports[0]);
      }

      const f = fix();
      const ack = await driver.emitAck('location:update', f);
      assert.equal(ack.status, 'ok', JSON.stringify(ack));
      assert.equal(ack.id, f.id);
      const ev = await watcher.waitFor('location:updated', (e) => e.id === f.id);
      assert.equal(ev.seq, ack.seq);
      assert.equal(ev.driverId, driver.driverId);
      assert.equal(ev.lat, f.lat);
      assert.equal(ev.lng, f.lng);

      // A 1000-fix batch (~150 KB) fits in one frame on this transport.
      const updates = bigBatch(1000);
      const size = Buffer.byteLength(JSON.stringify({ updates }));
      assert.ok(size > 100_000 && size < 400_000, `batch size ${size}`);
      const back = await driver.emitAckWithin(20_000, 'location:batch', { updates });
      assert.equal(back.status, 'ok', JSON.stringify(back).slice(0, 500));
      assert.equal(back.results.length, 1000);
      let prev = ack.seq;
      back.results.forEach((r, i) => {
        assert.equal(r.status, 'ok', `item ${i}: ${JSON.stringify(r)}`);
        assert.equal(r.id, updates[i].id);
        assert.ok(r.seq > prev, 'batch seqs increase in item order');
        prev = r.seq;
      });
      const got = await watcher.waitForCount('location:updated', 1001, (e) => e.driverId === driver.driverId, 20_000);
      assert.deepEqual(new Set(got.map((e) => e.id)), new Set([f.id, ...updates.map((u) => u.id)]));

      const st = await driver.emitAck('driver:status', { status: 'busy' });
      assert.equal(st.status, 'ok', JSON.stringify(st));
      const sev = await watcher.waitFor('driver:status:updated', (e) => e.driverId === driver.driverId);
      assert.equal(sev.status, 'BUSY');
      assert.ok(driver.connected && watcher.connected);
      if (transports.length === 1) assert.equal(watcher.transport, transports[0]);
      driver.close();
      watcher.close();
    });
  }

  test('CORS: allowed origins (trimmed list) get Access-Control-Allow-Origin + credentials on polling and REST', async () => {
    const watcherToken = server.watcherToken();
    for (const origin of ALLOWED) {
      const poll = await rest(server, 'GET', '/socket.io/?EIO=4&transport=polling', { headers: { origin } });
      assert.equal(poll.status, 200, poll.text);
      assert.equal(poll.headers['access-control-allow-origin'], origin);
      assert.equal(poll.headers['access-control-allow-credentials'], 'true');

      const latest = await rest(server, 'GET', '/api/realtime/latest', { token: watcherToken, headers: { origin } });
      assert.equal(latest.status, 200, latest.text);
      assert.equal(latest.headers['access-control-allow-origin'], origin);
      assert.equal(latest.headers['access-control-allow-credentials'], 'true');

      const pre = await rest(server, 'OPTIONS', '/api/driver-locations', {
        headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization,content-type' },
      });
      assert.ok(pre.status >= 200 && pre.status < 300, `preflight status ${pre.status}`);
      assert.equal(pre.headers['access-control-allow-origin'], origin);
      assert.equal(pre.headers['access-control-allow-credentials'], 'true');
    }
  });

  test('CORS: a disallowed origin is not granted access', async () => {
    const origin = 'http://evil.example';
    const poll = await rest(server, 'GET', '/socket.io/?EIO=4&transport=polling', { headers: { origin } });
    assert.notEqual(poll.headers['access-control-allow-origin'], origin);
    assert.notEqual(poll.headers['access-control-allow-origin'], '*');
    const latest = await rest(server, 'GET', '/api/realtime/latest', { token: server.watcherToken(), headers: { origin } });
    assert.notEqual(latest.headers['access-control-allow-origin'], origin);
    assert.notEqual(latest.headers['access-control-allow-origin'], '*');
  });

  test('CORS: outside production the default origins are localhost:5173, :5174, :3000', async () => {
    for (const origin of DEV_DEFAULT_ORIGINS) {
      const poll = await rest(devServer, 'GET', '/socket.io/?EIO=4&transport=polling', { headers: { origin } });
      assert.equal(poll.status, 200);
      assert.equal(poll.headers['access-control-allow-origin'], origin);
      assert.equal(poll.headers['access-control-allow-credentials'], 'true');
    }
    const evil = await rest(devServer, 'GET', '/socket.io/?EIO=4&transport=polling', { headers: { origin: 'http://localhost:9999' } });
    assert.notEqual(evil.headers['access-control-allow-origin'], 'http://localhost:9999');
    // and the websocket upgrade follows the same list
    const d = await connectDriver(devServer, { transports: ['websocket'], extraHeaders: { Origin: DEV_DEFAULT_ORIGINS[0] } });
    d.close();
    await connectError(devServer, { transports: ['websocket'], token: devServer.driverToken(), extraHeaders: { Origin: 'http://localhost:9999' } });
  });

  test('websocket upgrade: disallowed Origin refused, allowed Origin and no Origin accepted (raw HTTP)', async () => {
    assert.notEqual(await rawUpgrade(server, 'http://evil.example'), 101);
    assert.equal(await rawUpgrade(server, ALLOWED[1]), 101);
    assert.equal(await rawUpgrade(server, undefined), 101);
  });

  test('websocket upgrade: socket.io-client with a disallowed Origin header gets connect_error; allowed/absent connects', async () => {
    const err = await connectError(server, { transports: ['websocket'], token: server.driverToken(), extraHeaders: { Origin: 'http://evil.example' } });
    assert.ok(err instanceof Error);
    const ok1 = await connectDriver(server, { transports: ['websocket'], extraHeaders: { Origin: ALLOWED[0] } });
    const ok2 = await connectDriver(server, { transports: ['websocket'] });
    const a = await ok1.emitAck('location:update', fix());
    const b = await ok2.emitAck('location:update', fix());
    assert.equal(a.status, 'ok');
    assert.equal(b.status, 'ok');
    ok1.close();
    ok2.close();
  });

  for (const transports of [['websocket'], ['polling']]) {
    const label = transports[0];
    test(`a frame over 1 MiB closes that connection, others keep working (${label})`, async () => {
      const watcher = await connectWatcher(server, { transports: ['websocket'] });
      const driver = await connectDriver(server, { transports });
      const big = fix({ note: 'x'.repeat(1024 * 1024 + 64 * 1024) });
      driver.emit('location:update', big, () => {});
      const d = await driver.waitDisconnect(10_000);
      assert.ok(d.reason, 'disconnected');
      // the server keeps serving: another driver on the same transport works
      const other = await connectDriver(server, { transports });
      const f = fix();
      const ack = await other.emitAck('location:update', f);
      assert.equal(ack.status, 'ok');
      await watcher.waitFor('location:updated', (e) => e.id === f.id);
      assert.equal(watcher.all('location:updated', (e) => e.id === big.id).length, 0, 'oversize frame must not be broadcast');
      other.close();
      watcher.close();
    });

    test(`a frame just under 1 MiB does not close the connection (${label})`, async () => {
      const driver = await connectDriver(server, { transports });
      const f = fix({ note: 'y'.repeat(1_000_000) });
      const ack = await driver.emitAckWithin(10_000, 'location:update', f);
      assert.ok(ack && (ack.status === 'ok' || ack.status === 'error'), JSON.stringify(ack).slice(0, 300));
      assert.ok(driver.connected);
      const next = await driver.emitAck('location:update', fix());
      assert.equal(next.status, 'ok');
      driver.close();
    });
  }

  test('SIGTERM stops the server promptly (< 5 s), also while polling clients are connecting and closing', async () => {
    const slow = [];
    for (let i = 0; i < 20 && slow.length === 0; i += 1) {
      const s = await startServer();
      try {
        const w = await connectWatcher(s, { transports: ['polling'] });
        const d = await connectDriver(s, { transports: ['websocket'] });
        await d.emitAck('location:update', fix());
        await connectError(s, { token: `${s.driverToken()}x` });
        await rest(s, 'GET', '/api/realtime/latest', { token: w.token });
        await rest(s, 'GET', '/socket.io/?EIO=4&transport=polling'); // an engine.io session that never polls again
        w.close();
        d.close();
        const t0 = Date.now();
        s.proc.child.kill('SIGTERM');
        s.stopping = true;
        try {
          await s.waitExit(5000);
        } catch {
          slow.push(`attempt ${i}: still running ${Date.now() - t0} ms after SIGTERM`);
        }
      } finally {
        if (s.alive) await s.kill().catch(() => {});
        await s.dispose().catch(() => {});
      }
    }
    assert.deepEqual(slow, []);
  });

  test('production mode is APP_ENV=production or NODE_ENV=production: missing JWT_SECRET or ALLOWED_ORIGINS stops start-up', async () => {
    const cases = [
      { label: 'APP_ENV, no JWT_SECRET', env: { APP_ENV: 'production', ALLOWED_ORIGINS: ALLOWED[0] }, secret: null, mention: /JWT_SECRET/ },
      { label: 'NODE_ENV, no JWT_SECRET', env: { NODE_ENV: 'production', ALLOWED_ORIGINS: ALLOWED[0] }, secret: null, mention: /JWT_SECRET/ },
      { label: 'APP_ENV, no ALLOWED_ORIGINS', env: { APP_ENV: 'production' }, secret: randomSecret(), mention: /ALLOWED_ORIGINS/ },
      { label: 'NODE_ENV, no ALLOWED_ORIGINS', env: { NODE_ENV: 'production' }, secret: randomSecret(), mention: /ALLOWED_ORIGINS/ },
    ];
    const results = await Promise.all(cases.map((c) => startExpectingExit({ env: c.env, secret: c.secret })));
    results.forEach((r, i) => {
      const c = cases[i];
      assert.equal(r.ready, false, `${c.label}: server must not start serving`);
      assert.ok(r.code !== 0 && r.code !== null, `${c.label}: expected a non-zero exit code, got ${JSON.stringify({ code: r.code, signal: r.signal })}`);
      assert.match(r.output, c.mention, `${c.label}: the error should name the missing setting; output:\n${r.output.slice(-1000)}`);
    });
  });

  test('production with JWT_SECRET and ALLOWED_ORIGINS starts and serves', async () => {
    for (const key of ['APP_ENV', 'NODE_ENV']) {
      const s = await startServer({ env: { [key]: 'production', ALLOWED_ORIGINS: ALLOWED[0] } });
      try {
        const w = await connectWatcher(s);
        assert.equal(typeof w.snapshot.streamId, 'string');
        w.close();
      } finally {
        await s.dispose();
      }
    }
  });

  test('server timestamps in acks are ISO-8601 UTC with milliseconds', async () => {
    const d = await connectDriver(server);
    const ack = await d.emitAck('location:update', fix());
    assert.match(ack.timestamp, ISO_MS_Z);
    d.close();
  });

  test('heartbeat: PING_INTERVAL_MS / PING_TIMEOUT_MS are used; a dead peer is dropped within their sum', async () => {
    const interval = 600;
    const timeout = 500;
    const s = await startServer({ env: { PING_INTERVAL_MS: interval, PING_TIMEOUT_MS: timeout } });
    try {
      const r = await rest(s, 'GET', '/socket.io/?EIO=4&transport=polling');
      assert.equal(r.status, 200);
      const open = JSON.parse(r.text.slice(r.text.indexOf('{')));
      assert.equal(open.pingInterval, interval);
      assert.equal(open.pingTimeout, timeout);

      // A live client answers pings and stays connected across several of them.
      const live = await connectDriver(s);
      let pings = 0;
      live.socket.io.on('ping', () => { pings += 1; });
      await waitUntil(() => pings >= 3, { timeoutMs: 5000, what: '3 pings' });
      assert.ok(live.connected);

      // A peer that stops answering pings (pong suppressed) is dropped by the server.
      const dead = await connectDriver(s);
      const engine = dead.socket.io.engine;
      const orig = engine._sendPacket.bind(engine);
      engine._sendPacket = (type, ...rest2) => (type === 'pong' ? undefined : orig(type, ...rest2));
      const t0 = Date.now();
      const d = await dead.waitDisconnect(5000);
      const elapsed = Date.now() - t0;
      assert.ok(elapsed <= interval + timeout + 700, `dead peer detected after ${elapsed} ms (limit ${interval + timeout} ms)`);
      assert.notEqual(d.reason, 'ping timeout', 'the server, not the client, should have closed the dead peer');
      assert.ok(live.connected, 'the live client is unaffected');
      live.close();
    } finally {
      await s.dispose();
    }
  });
});
