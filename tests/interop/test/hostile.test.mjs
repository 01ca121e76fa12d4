// Hostile or broken clients cannot hurt anyone else (issue 19): connections
// that never finish a request, sockets that stop reading, one account's
// sockets beyond its limit. Each with honest clients beside it.
import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { readFileSync } from 'node:fs';
import { startServer, startExpectingExit, pgAdminUrl } from '../lib/server.mjs';
import { startBackend } from '../lib/backend.mjs';
import { randomSecret } from '../lib/token.mjs';
import {
  connect, connectDriver, connectWatcher, closeAll, fix, metricsSnapshot, waitUntil, rest, rawPollingSession,
} from '../lib/client.mjs';

const started = [];
async function server(env = {}) {
  const s = await startServer({ env });
  started.push(s);
  return s;
}

/** Resolve after `ms`: a scenario's length, not a wait for an event. */
const hold = (ms) => new Promise((r) => setTimeout(r, Math.max(0, ms)));

/** GET /healthz; resolves its time in ms (rejects on anything but 200 within 5 s). */
async function healthz(s) {
  const t0 = performance.now();
  const r = await fetch(`${s.url}/healthz`, { signal: AbortSignal.timeout(5_000) });
  await r.arrayBuffer();
  assert.equal(r.status, 200);
  return performance.now() - t0;
}

/** The socket.io client's TCP socket; pausing it stops reading (the TCP window closes). */
const tcpOf = (peer) => peer.socket.io.engine.transport.ws._socket;

/** A driver that sends a batch of `size` fixes every `everyMs`: a stream heavy enough to fill a stalled watcher's buffers. */
function heavyTraffic(driver, { size = 500, everyMs = 100 } = {}) {
  let on = true;
  const run = (async () => {
    while (on) {
      const updates = Array.from({ length: size }, () => fix());
      await driver.emitAckWithin(10_000, 'location:batch', { updates }).catch(() => {});
      await hold(everyMs);
    }
  })();
  return async () => { on = false; await run; };
}

// Storage plays no part here: these run once, on the embedded pass.
const once = { skip: pgAdminUrl ? 'run on the embedded pass (no storage in play)' : false };

/** The server's resident memory, MB. */
function rssMb(s) {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${s.pid}/status`, 'utf8'));
  return Number(m[1]) / 1024;
}

/** The server's CPU time so far, seconds. */
function cpuSecs(s) {
  const fields = readFileSync(`/proc/${s.pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime + stime, in USER_HZ ticks
}

/**
 * The honest load the attacks run beside: `drivers` drivers each sending a
 * fix a second with acks, `watchers` officers receiving the stream.
 * Records ack times and each watcher's delivery delays (arrival − the
 * event's server time).
 */
async function honestLoad(s, { drivers = 50, watchers = 3 } = {}) {
  const ws = await Promise.all(Array.from({ length: watchers }, () => connectWatcher(s)));
  const delays = ws.map(() => []);
  ws.forEach((w, k) => w.socket.on('location:updated', (e) => delays[k].push({ seq: e.seq, ms: Date.now() - Date.parse(e.timestamp) })));
  const ds = await Promise.all(Array.from({ length: drivers }, () => connectDriver(s)));
  const acks = [];
  const acked = new Set();
  let on = true;
  const pending = [];
  const timer = setInterval(() => {
    if (!on) return;
    for (const d of ds) {
      const t0 = performance.now();
      pending.push(d.emitAckWithin(10_000, 'location:update', fix()).then((a) => {
        assert.equal(a?.status, 'ok', JSON.stringify(a));
        acks.push({ ms: performance.now() - t0, at: t0 });
        acked.add(a.seq);
      }));
    }
  }, 1000);
  return {
    acks, delays, acked, watchers: ws,
    async stop() { on = false; clearInterval(timer); await Promise.all(pending); },
  };
}

const pct = (xs, p) => { const v = [...xs].sort((a, b) => a - b); return v[Math.min(v.length - 1, Math.floor(v.length * p))]; };

describe('hostile clients (issue 19)', () => {
  after(async () => {
    closeAll();
    for (const s of started.reverse()) {
      if (typeof s.dispose === 'function') await s.dispose();
      else await s.close();
    }
  });

  test('2000 connections that never finish their request head are closed within 30 s, /healthz answering in under 1 s throughout', { ...once, timeout: 90_000 }, async () => {
    const s = await server({ HEADER_READ_TIMEOUT_MS: 5_000 });
    const honest = await connectWatcher(s);
    const sockets = [];
    const closedAt = new Map();
    const t0 = Date.now();
    await Promise.all(Array.from({ length: 2000 }, (_, i) => new Promise((resolve) => {
      const c = net.connect(s.port, '127.0.0.1', () => {
        // Half a request head, then nothing: the slowloris shape.
        c.write(i % 2 ? 'GET /api/realtime/latest HTTP/1.1\r\nHost: x\r\n' : 'GE');
        resolve();
      });
      c.on('error', () => {});
      c.on('close', () => closedAt.set(i, Date.now()));
      sockets.push(c);
    })));
    const slowest = [];
    while (closedAt.size < 2000 && Date.now() - t0 < 30_000) {
      slowest.push(await healthz(s));
      await hold(250);
    }
    assert.equal(closedAt.size, 2000, `${2000 - closedAt.size} half-open connections still open after 30 s`);
    assert.ok(Math.max(...slowest) < 1_000, `/healthz took up to ${Math.round(Math.max(...slowest))} ms`);
    assert.ok(honest.connected, 'an honest websocket is not an idle HTTP connection');
    const m = await metricsSnapshot(s);
    assert.ok(m.get('wecare_connections_closed_total{reason="header_timeout"}') >= 2000, JSON.stringify(m.get('wecare_connections_closed_total{reason="header_timeout"}')));
  });

  test('over MAX_CONNECTIONS a connection gets a clear 503 and is closed; the ones inside keep working', { ...once, timeout: 60_000 }, async () => {
    const s = await server({ MAX_CONNECTIONS: 40 });
    const honest = await connectWatcher(s);
    const idle = [];
    for (let i = 0; i < 45; i += 1) {
      idle.push(await new Promise((resolve) => {
        const c = net.connect(s.port, '127.0.0.1', () => resolve(c));
        c.on('error', () => {});
        c.text = '';
        c.on('data', (d) => { c.text += d; });
        c.gone = new Promise((r) => c.on("close", r));
      }));
    }
    const refused = [];
    await waitUntil(() => {
      refused.splice(0, refused.length, ...idle.filter((c) => c.text.startsWith('HTTP/1.1 503')));
      return refused.length >= 6;
    }, { timeoutMs: 5_000, what: 'connections over the cap answered 503' });
    for (const c of refused) {
      assert.match(c.text, /retry-after: 5/i);
      assert.match(c.text, /"code":"UNAVAILABLE"/);
      await c.gone;
    }
    // Freed places serve again (while the idle ones hold them, /metrics too is refused).
    for (const c of idle) c.destroy();
    await waitUntil(async () => (await metricsSnapshot(s).catch(() => new Map())).get('wecare_http_connections') <= 5, { timeoutMs: 5_000, intervalMs: 100, what: 'places freed' });
    const m = await metricsSnapshot(s);
    assert.ok(m.get('wecare_connections_closed_total{reason="over_capacity"}') >= 6);
    assert.ok(honest.connected);
    await healthz(s);
  });

  test('a watcher that stops reading is closed within ping interval + timeout, its TCP stream dropped, while the stream keeps flowing to the others', { ...once, timeout: 90_000 }, async () => {
    const PING = 2_000;
    const s = await server({ PING_INTERVAL_MS: PING, PING_TIMEOUT_MS: PING, RATE_LIMIT_PER_SEC: 100_000 });
    const honest = await connectWatcher(s);
    const stuck = await connectWatcher(s);
    const driver = await connectDriver(s);
    const stop = heavyTraffic(driver);
    let stuckTcp = null;
    try {
      await honest.waitFor('location:updated', () => true, 10_000);
      const m0 = await metricsSnapshot(s);
      assert.equal(m0.get('wecare_connections{kind="watcher"}'), 2);
      const t0 = Date.now();
      stuckTcp = tcpOf(stuck);
      stuckTcp.pause();
      await waitUntil(async () => (await metricsSnapshot(s)).get('wecare_connections{kind="watcher"}') === 1,
        { timeoutMs: 4 * PING + 5_000, intervalMs: 100, what: 'the stuck watcher closed' });
      const took = Date.now() - t0;
      assert.ok(took <= 2 * PING + 3_000, `closed ${took} ms after it stopped reading (ping ${PING} + ${PING})`);
      // Its TCP connection is gone too: two were open (the honest watcher's and the driver's) besides the metrics poll's.
      await waitUntil(async () => (await metricsSnapshot(s)).get('wecare_http_connections') <= 3, { timeoutMs: 5_000, intervalMs: 100, what: 'its connection dropped' });
      const seen = honest.all('location:updated').length;
      await honest.until(() => honest.all('location:updated').length > seen + 500, 10_000, 'the honest watcher still receives');
    } finally {
      await stop();
      // Paused, it would wait for ever for the close handshake.
      stuckTcp?.destroy();
    }
  });

  test('one account\'s 11 sockets that never read leave at most MAX_CONNECTIONS_PER_USER open, their TCP streams dropped', { ...once, timeout: 90_000 }, async () => {
    const s = await server({ MAX_CONNECTIONS_PER_USER: 2, RATE_LIMIT_PER_SEC: 100_000 });
    const honest = await connectWatcher(s);
    const driver = await connectDriver(s);
    const stop = heavyTraffic(driver, { size: 200, everyMs: 50 });
    const stuck = [];
    try {
      const token = s.watcherToken({ id: 'one-account' });
      for (let i = 0; i < 11; i += 1) {
        const p = await connect(s, { token });
        const tcp = tcpOf(p);
        tcp.pause();
        stuck.push(tcp);
        await hold(100);
      }
      // The honest watcher, the driver, and at most two of the account's sockets.
      await waitUntil(async () => (await metricsSnapshot(s)).get('wecare_connections{kind="watcher"}') <= 3,
        { timeoutMs: 10_000, intervalMs: 200, what: 'the account held to its limit' });
      await waitUntil(async () => (await metricsSnapshot(s)).get('wecare_http_connections') <= 5,
        { timeoutMs: 10_000, intervalMs: 200, what: 'the evicted sockets\' connections dropped' });
      assert.ok(honest.connected);
    } finally {
      await stop();
      for (const tcp of stuck) tcp.destroy();
    }
  });

  test('a slow reader floods (10 000 events:sync, then 100 000 unknown events): memory bounded, honest acks and deliveries unharmed, CPU back to idle, the flooders closed', { ...once, timeout: 180_000 }, async (t) => {
    const s = await server();
    // A stream long enough that every page is a full 1000 events.
    const seeder = await connectDriver(s);
    for (let i = 0; i < 3; i += 1) {
      assert.equal((await seeder.emitAck('location:batch', { updates: Array.from({ length: 1000 }, () => fix()) }))?.status, 'ok');
    }
    const honest = await honestLoad(s);
    await hold(3_000);
    const attackFrom = performance.now();
    const rss0 = rssMb(s);
    let rssMax = rss0;
    const sampler = setInterval(() => { rssMax = Math.max(rssMax, rssMb(s)); }, 200);
    const cpu0 = cpuSecs(s);
    const calm0 = performance.now();
    try {
      // An officer that asks for pages and never reads them.
      const reader = await connectWatcher(s);
      const readerTcp = tcpOf(reader);
      readerTcp.pause();
      for (let i = 0; i < 10_000; i += 1) {
        reader.socket.emit('events:sync', { since: 0, limit: 1000 }, () => {});
        if (i % 500 === 0) await hold(1);
      }
      // A driver that sends tiny unknown events and never reads.
      const junk = await connectDriver(s);
      const junkTcp = tcpOf(junk);
      junkTcp.pause();
      for (let i = 0; i < 100_000; i += 1) {
        junk.socket.emit('x', i);
        if (i % 2000 === 0) await hold(1);
      }
      // Both are closed as abusive, and their connections dropped.
      await waitUntil(async () => (await metricsSnapshot(s)).get('wecare_abusive_sockets_total') >= 2,
        { timeoutMs: 30_000, intervalMs: 250, what: 'both flooders closed' });
      await waitUntil(async () => (await metricsSnapshot(s)).get('wecare_connections{kind="watcher"}') === 3,
        { timeoutMs: 10_000, intervalMs: 250, what: 'the flooding officer gone' });
      readerTcp.destroy();
      junkTcp.destroy();
      const attackEnded = performance.now();
      // CPU back to idle: the next 3 s cost what honest load costs.
      const calmCpu = (cpuSecs(s) - cpu0) / ((attackEnded - calm0) / 1000);
      const c1 = cpuSecs(s);
      await hold(3_000);
      const idleCpu = (cpuSecs(s) - c1) / 3;
      await hold(5_000);
      clearInterval(sampler);
      await honest.stop();
      const allAcks = honest.acks.map((a) => a.ms);
      const calm = honest.acks.filter((a) => a.at < attackFrom).map((a) => a.ms);
      const attacked = honest.acks.filter((a) => a.at >= attackFrom && a.at <= attackEnded).map((a) => a.ms);
      t.diagnostic(`RSS ${rss0.toFixed(0)} → max ${rssMax.toFixed(0)} MB; honest ack p50/p99 without the attacker ${pct(calm, 0.5).toFixed(1)}/${pct(calm, 0.99).toFixed(1)} ms (${calm.length}), `
        + `during the attack ${pct(attacked, 0.5).toFixed(1)}/${pct(attacked, 0.99).toFixed(1)} ms (${attacked.length}); `
        + `server CPU during the attack ${(calmCpu * 100).toFixed(0)}% of a core, 3 s after ${(idleCpu * 100).toFixed(0)}%`);
      assert.ok(rssMax - rss0 < 150, `RSS grew from ${rss0.toFixed(0)} to ${rssMax.toFixed(0)} MB`);
      assert.ok(pct(allAcks, 0.99) <= 100, `honest p99 ack ${pct(allAcks, 0.99).toFixed(1)} ms`);
      assert.ok(idleCpu < 0.3, `server CPU 3 s after the attack: ${(idleCpu * 100).toFixed(0)}% of a core`);
      // Every honest event reached every watcher, within 2 s.
      for (const [k, d] of honest.delays.entries()) {
        const got = new Set(d.map((x) => x.seq));
        const missing = [...honest.acked].filter((seq) => !got.has(seq));
        assert.deepEqual(missing.slice(0, 5), [], `watcher ${k} missed ${missing.length} events`);
        const late = d.filter((x) => honest.acked.has(x.seq) && x.ms > 2_000);
        assert.deepEqual(late.slice(0, 5), [], `watcher ${k}: ${late.length} events later than 2 s`);
      }
    } finally {
      clearInterval(sampler);
      await honest.stop();
    }
  });

  describe('smaller holes', () => {
    /** A server forwarding every 200 ms to a fake backend without a rate limit. */
    async function forwardingToFakeBackend() {
      const secret = randomSecret();
      const backend = await startBackend({ secret, limit: Infinity });
      started.push(backend);
      const s = await startServer({ secret, env: { FORWARD_URL: backend.forwardUrl, FORWARD_MIN_INTERVAL_MS: 200 } });
      started.push(s);
      return { backend, s };
    }

    test('a driver id of ".." is never a path segment of FORWARD_URL (skipped), a "." inside one is encoded', { timeout: 60_000 }, async () => {
      const { backend, s } = await forwardingToFakeBackend();
      const dots = await connectDriver(s, { driverId: '..' });
      const dotted = await connectDriver(s, { driverId: 'amb.7' });
      assert.equal((await dots.emitAck('location:update', fix()))?.status, 'ok');
      assert.equal((await dotted.emitAck('location:update', fix()))?.status, 'ok');
      await backend.until(() => backend.rows.has('amb.7'), 10_000, 'the dotted id forwarded');
      await waitUntil(async () => (await metricsSnapshot(s)).get('wecare_forward_skipped_total') === 1, { what: 'the ".." driver skipped' });
      assert.ok(backend.requests.every((r) => r.path.startsWith('/api/driver-locations/')), JSON.stringify(backend.requests.map((r) => r.path)));
      assert.ok(!backend.rows.has('..'));
    });

    test('over MAX_PENDING_SESSIONS sessions that have not joined, a handshake is a 503 with Retry-After; a join frees a place for a stock client', { ...once, timeout: 30_000 }, async () => {
      const s = await server({ MAX_PENDING_SESSIONS: 2, HANDSHAKE_TIMEOUT_MS: 20_000 });
      const first = await rawPollingSession(s);
      await rawPollingSession(s);
      const over = await rest(s, 'GET', '/socket.io/?EIO=4&transport=polling');
      assert.equal(over.status, 503, over.text);
      assert.equal(over.headers['retry-after'], '1');
      const m = await metricsSnapshot(s);
      assert.equal(m.get('wecare_sessions_pending'), 2);
      assert.equal(m.get('wecare_handshakes_busy_total'), 1);
      await assert.rejects(connectDriver(s, { reconnection: false }), /connect_error/, 'a stock client is refused while full');
      // The first session joins: its place is free, and a driver gets in and is heard.
      assert.equal((await first.post(`40/locations,${JSON.stringify({ token: s.driverToken() })}`)).status, 200);
      await waitUntil(async () => (await metricsSnapshot(s)).get('wecare_sessions_pending') === 1, { what: 'the joined session no longer pending' });
      const d = await connectDriver(s);
      assert.equal((await d.emitAck('location:update', fix()))?.status, 'ok');
    });

    test('a newline in a driver id cannot forge a log line', { timeout: 60_000 }, async () => {
      const { backend, s } = await forwardingToFakeBackend();
      const evil = 'x\n2026-01-01T00:00:00.000000Z ERROR forged: the database is gone';
      backend.rejectDriver(evil);
      const d = await connectDriver(s, { driverId: evil });
      assert.equal((await d.emitAck('location:update', fix()))?.status, 'ok');
      await backend.until(() => backend.puts(evil).some((p) => p.status === 400), 10_000, 'the refused forward');
      await waitUntil(() => /refused a forwarded position/.test(s.output), { what: 'the skip logged' });
      assert.ok(!s.output.split('\n').some((l) => l.startsWith('2026-01-01T00:00:00.000000Z ERROR forged')), 'a forged line');
      assert.match(s.output, /x\\n2026-01-01/, 'the id logged escaped');
    });

    test('notify and revoke check the service secret before reading the body: 404 when none is set, 401 with a wrong one — answered while a 2 MiB body is still on its way', { ...once, timeout: 60_000 }, async () => {
      /** Sends the head of a 2 MiB POST and 64 KiB of its body, never the rest; resolves the status the server answers. */
      const statusBeforeBody = (srv, path, auth) => new Promise((resolve, reject) => {
        const c = net.connect(srv.port, '127.0.0.1', () => {
          c.write(`POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${2 * 1024 * 1024}\r\n`
            + `${auth ? `Authorization: ${auth}\r\n` : ''}\r\n`);
          c.write('x'.repeat(64 * 1024));
        });
        let text = '';
        c.on('data', (d) => {
          text += d;
          if (text.includes('\r\n')) { c.destroy(); resolve(Number(text.split(' ')[1])); }
        });
        c.on('error', () => {}); // the server may close before our writes end
        c.on('close', () => { if (!text.includes('\r\n')) reject(new Error(`closed without an answer: ${JSON.stringify(text)}`)); });
        setTimeout(() => { c.destroy(); reject(new Error('no answer while the body was incomplete')); }, 5_000);
      });
      const without = await server({ NOTIFY_SECRET: null });
      const withSecret = await server({ NOTIFY_SECRET: 'the-service-secret-of-the-test' });
      for (const path of ['/api/realtime/notify', '/api/realtime/revoke']) {
        assert.equal(await statusBeforeBody(without, path, 'Bearer whatever'), 404, `${path} without a secret set`);
        assert.equal(await statusBeforeBody(withSecret, path, 'Bearer wrong'), 401, `${path} with a wrong secret`);
        assert.equal(await statusBeforeBody(withSecret, path, null), 401, `${path} without Authorization`);
      }
    });

    test('the Origin guard applies to any upgrade request, however its Upgrade header is spelled', { ...once, timeout: 30_000 }, async () => {
      const s = await server();
      for (const upgrade of ['websocket', 'WebSocket', 'websocket, h2c', ' websocket ', 'h2c']) {
        const status = await new Promise((resolve, reject) => {
          const c = net.connect(s.port, '127.0.0.1', () => {
            c.write(`GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: ${upgrade}\r\n`
              + 'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: https://evil.example\r\n\r\n');
          });
          let text = '';
          c.on('data', (d) => { text += d; if (text.includes('\r\n')) { c.destroy(); resolve(Number(text.split(' ')[1])); } });
          c.on('error', reject);
        });
        assert.equal(status, 403, `Upgrade: ${JSON.stringify(upgrade)}`);
      }
    });

    test('production refuses a JWT_SECRET under 32 bytes and an ALLOWED_ORIGINS naming no origin, however APP_ENV is spelled', { ...once, timeout: 60_000 }, async () => {
      const long = 'p'.repeat(32);
      for (const [env, want] of [
        [{ APP_ENV: ' production', JWT_SECRET: 'a', ALLOWED_ORIGINS: 'https://x' }, /at least 32 bytes/],
        [{ NODE_ENV: 'Production', JWT_SECRET: long, ALLOWED_ORIGINS: ',' }, /ALLOWED_ORIGINS/],
        [{ APP_ENV: 'PRODUCTION ', JWT_SECRET: long, ALLOWED_ORIGINS: ' , ' }, /ALLOWED_ORIGINS/],
      ]) {
        const r = await startExpectingExit({ env, secret: null });
        assert.equal(r.ready, false, `${JSON.stringify(env)} started`);
        assert.notEqual(r.code, 0);
        assert.match(r.output, want, JSON.stringify(env));
      }
    });

    test('lat: 1e400 (no double holds it) is INVALID_COORDINATES, on the socket and over REST', { ...once, timeout: 30_000 }, async () => {
      const s = await server();
      const token = s.driverToken();
      const raw = await rawPollingSession(s);
      /** Polls until a packet matching `re` arrives (a ping may come first). */
      const pollFor = async (re) => {
        let seen = '';
        for (let i = 0; i < 5 && !re.test(seen); i += 1) seen += `\u001e${(await raw.get()).text}`;
        return seen;
      };
      assert.equal((await raw.post(`40/locations,${JSON.stringify({ token })}`)).status, 200);
      assert.match(await pollFor(/40\/locations,/), /40\/locations,/);
      assert.equal((await raw.post('42/locations,1["location:update",{"id":"big-1","lat":1e400,"lng":100.5}]')).status, 200);
      const ack = await pollFor(/43\/locations,1\[/);
      assert.match(ack, /43\/locations,1\[\{"status":"error","code":"INVALID_COORDINATES"/, ack);
      const r = await rest(s, 'POST', '/api/realtime/locations', { token, raw: '{"id":"big-2","lat":1e400,"lng":100.5}', headers: { 'content-type': 'application/json' } });
      assert.equal(r.status, 400, r.text);
      assert.equal(r.body?.code, 'INVALID_COORDINATES', r.text);
    });
  });
});
