// The project's own Engine.IO / Socket.IO server layer (crates/sio, issue
// 18), on its own: the official socket.io-client against the layer's echo
// example (crates/sio/examples/echo.rs), on every transport, through the
// upgrade, its heartbeat, payload bound, refusals and protocol errors.
// Nothing here touches storage, so it runs on the embedded pass only.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { io } from 'socket.io-client';
import { repoRoot, pgAdminUrl } from '../lib/server.mjs';
import { withTimeout, waitUntil } from '../lib/client.mjs';

const BIN = process.env.WECARE_SIO_ECHO_BIN ?? path.join(repoRoot, 'target', 'debug', 'examples', 'echo');
const PING_MS = 200;
const MAX_PAYLOAD = 4096;
const CONNECT_TIMEOUT_MS = 1500;

let base;
const sockets = [];
const procs = [];

/** Starts the echo example with these timings; resolves with its base URL. */
async function startEcho({ pingMs = PING_MS, connectTimeoutMs = CONNECT_TIMEOUT_MS, maxPending = 10_000 } = {}) {
  const args = [pingMs, pingMs, MAX_PAYLOAD, connectTimeoutMs, maxPending].map(String);
  const proc = spawn(BIN, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  procs.push(proc);
  return withTimeout(new Promise((resolve, reject) => {
    let out = '';
    proc.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/listening on (http:\/\/\S+)/);
      if (m) resolve(m[1]);
    });
    proc.on('exit', (code) => reject(new Error(`echo server exited ${code}`)));
  }), 15_000, 'the echo server to listen');
}

before(async () => {
  base = await startEcho();
});

after(() => {
  for (const s of sockets) s.close();
  for (const p of procs) p.kill('SIGKILL');
});

function join(opts = {}) {
  const s = io(`${base}/locations`, { auth: { token: 'good' }, reconnection: false, ...opts });
  sockets.push(s);
  return s;
}

const connected = (s) => withTimeout(new Promise((resolve, reject) => {
  s.once('connect', resolve);
  s.once('connect_error', reject);
}), 5_000, 'connect');

const stats = async () => (await fetch(`${base}/stats`)).json();

async function get(query) {
  const res = await fetch(`${base}/socket.io/?${query}`);
  return { status: res.status, text: await res.text() };
}

async function rawPollingHandshake() {
  const open = await get('EIO=4&transport=polling');
  assert.equal(open.status, 200);
  assert.equal(open.text[0], '0');
  return JSON.parse(open.text.slice(1));
}

const TRANSPORTS = [
  ['websocket only', ['websocket'], 'websocket'],
  ['polling only', ['polling'], 'polling'],
  ['polling, then the upgrade', ['polling', 'websocket'], 'websocket'],
];

describe('our Socket.IO layer with the official client', { skip: pgAdminUrl ? 'no storage here: the embedded pass covers it' : false }, () => {
  for (const [name, transports, ends] of TRANSPORTS) {
    test(`${name}: join (events before the CONNECT reply, pid), acks, 1000 shared frames once and in order, a server disconnect`, { timeout: 30_000 }, async () => {
      const s = join({ transports, auth: { token: 'good', early: 'before-connect' } });
      const order = [];
      s.on('early', (v) => order.push(['early', v]));
      s.on('connect', () => order.push(['connect']));
      const ticks = [];
      s.on('tick', (i) => ticks.push(i));
      await connected(s);
      // The client holds events that come before the CONNECT reply and
      // delivers them just before its `connect` (what recovery relies on).
      assert.deepEqual(order, [['early', 'before-connect'], ['connect']], 'emitted while joining, delivered before connect');
      assert.equal(s._pid, 'echo-pid', 'the CONNECT reply carries pid');
      // The burst starts at once: on the upgrade path it crosses the switch.
      s.emit('burst', { n: 1000 });
      assert.deepEqual(await s.timeout(5_000).emitWithAck('echo', { a: [1, 'two'] }), { a: [1, 'two'] });
      await waitUntil(() => ticks.length >= 1000, { timeoutMs: 10_000, what: '1000 ticks' });
      assert.deepEqual(ticks, [...Array(1000).keys()], 'every frame once, in order');
      await waitUntil(() => s.io.engine.transport.name === ends, { timeoutMs: 5_000, what: `the ${ends} transport` });
      // Several heartbeats pass: the client answers, the session lives.
      let pings = 0;
      s.io.engine.on('ping', () => { pings += 1; });
      await waitUntil(() => pings >= 3, { timeoutMs: PING_MS * 20, what: 'three server pings' });
      assert.ok(s.connected);
      const reason = new Promise((r) => s.once('disconnect', r));
      s.emit('bye');
      assert.equal(await withTimeout(reason, 5_000, 'disconnect'), 'io server disconnect');
      await waitUntil(async () => (await stats()).sessions === 0, { timeoutMs: 5_000, what: 'the session gone' });
    });
  }

  test('a refused join is a connect_error with the message; another namespace is refused too', { timeout: 10_000 }, async () => {
    for (const transports of [['websocket'], ['polling']]) {
      const s = join({ transports, auth: { token: 'bad' } });
      await assert.rejects(connected(s), /Invalid token/);
      s.close();
      const other = io(`${base}/other`, { auth: { token: 'good' }, transports, reconnection: false });
      sockets.push(other);
      await assert.rejects(connected(other), /Invalid namespace/);
      other.close();
    }
    assert.equal((await stats()).sockets, 0);
  });

  test('a binary event is answered, not read; the socket goes on', { timeout: 10_000 }, async () => {
    for (const transports of [['websocket'], ['polling']]) {
      const s = join({ transports });
      await connected(s);
      assert.deepEqual(await s.timeout(5_000).emitWithAck('x', Buffer.from([1, 2, 3]), Buffer.from([4])), { binary: true });
      assert.deepEqual(await s.timeout(5_000).emitWithAck('echo', 7), 7);
      s.close();
    }
  });

  test('a message over the payload bound closes that connection, on both transports', { timeout: 15_000 }, async () => {
    for (const transports of [['websocket'], ['polling']]) {
      const s = join({ transports });
      await connected(s);
      const reason = new Promise((r) => s.once('disconnect', r));
      s.emit('echo', 'x'.repeat(MAX_PAYLOAD * 2));
      assert.match(await withTimeout(reason, 5_000, 'the cut'), /transport (close|error)/);
      await waitUntil(async () => (await stats()).left.includes('PayloadTooLarge'), { timeoutMs: 5_000, what: 'PayloadTooLarge' });
    }
  });

  test('a peer that never answers a ping, or never joins, is dropped; a poll of it is refused after', { timeout: 15_000 }, async () => {
    const silent = await rawPollingHandshake();
    assert.equal(silent.pingInterval, PING_MS);
    assert.equal(silent.maxPayload, MAX_PAYLOAD);
    assert.deepEqual(silent.upgrades, ['websocket']);
    const joined = await fetch(`${base}/socket.io/?EIO=4&transport=polling&sid=${silent.sid}`, { method: 'POST', body: '40/locations,{"token":"good"}' });
    assert.equal(await joined.text(), 'ok');
    const before = (await stats()).left.filter((r) => r === 'PingTimeout').length;
    const idle = await rawPollingHandshake();
    // Polls until the session is gone, never answering its pings.
    const started = Date.now();
    let last;
    do {
      last = await get(`EIO=4&transport=polling&sid=${silent.sid}`);
    } while (last.status === 200 && last.text !== '1' && Date.now() - started < 5_000);
    assert.ok(Date.now() - started < 2 * PING_MS * 2 + 1000, `gone after ${Date.now() - started} ms`);
    await waitUntil(async () => (await stats()).left.filter((r) => r === 'PingTimeout').length > before, { what: 'PingTimeout reported' });
    // The one that never joined is gone within its connect timeout.
    await waitUntil(async () => (await get(`EIO=4&transport=polling&sid=${idle.sid}`)).status === 400, { timeoutMs: CONNECT_TIMEOUT_MS + 2_000, what: 'the unjoined session gone' });
  });

  test('protocol errors are answered like the reference server', { timeout: 10_000 }, async () => {
    assert.deepEqual(await get('EIO=4&transport=polling&sid=nope'), { status: 400, text: '{"code":1,"message":"Session ID unknown"}' });
    assert.deepEqual(await get('EIO=3&transport=polling'), { status: 400, text: '{"code":5,"message":"Unsupported protocol version"}' });
    assert.deepEqual(await get('EIO=4&transport=flash'), { status: 400, text: '{"code":0,"message":"Transport unknown"}' });
    const post = await fetch(`${base}/socket.io/?EIO=4&transport=polling`, { method: 'POST', body: '' });
    assert.equal(post.status, 400);
    assert.equal(await post.text(), '{"code":2,"message":"Bad handshake method"}');
    // Two polls at once: the session is broken off. Whichever arrives
    // second is refused; the one that waits is answered with the close.
    const { sid } = await rawPollingHandshake();
    const polls = await Promise.all([1, 2].map(() => get(`EIO=4&transport=polling&sid=${sid}`)));
    assert.deepEqual(polls.map((p) => p.status).sort(), [200, 400], JSON.stringify(polls));
    assert.equal(polls.find((p) => p.status === 200).text, '1', 'the waiting poll is answered with the close packet');
  });

  test('what a peer that never reads can make a session queue is bounded: its pings go unanswered, and refused joins end the session', { timeout: 20_000 }, async () => {
    // Slow heartbeats and a long connect timeout, so only the bounds end the session.
    const slow = await startEcho({ pingMs: 20_000, connectTimeoutMs: 20_000 });
    const open = await fetch(`${slow}/socket.io/?EIO=4&transport=polling`);
    const { sid } = JSON.parse((await open.text()).slice(1));
    const url = `${slow}/socket.io/?EIO=4&transport=polling&sid=${sid}`;
    const post = async (body) => (await fetch(url, { method: 'POST', body })).text();
    const poll = async () => { const r = await fetch(url); return { status: r.status, text: await r.text() }; };
    // A thousand client pings, then a refused join: the poll holds the
    // refusal alone, no answer to a ping before it.
    assert.equal(await post(Array(1000).fill('2').join('\x1e')), 'ok');
    assert.equal(await post('40/locations,{"token":"bad"}'), 'ok');
    assert.equal((await poll()).text, '44/locations,{"message":"Invalid token"}');
    // Seven more refused joins: the eighth ends the session.
    for (let i = 2; i <= 8; i += 1) {
      assert.equal(await post('40/locations,{"token":"bad"}'), 'ok');
      const r = await poll();
      assert.ok(r.text.startsWith('44/locations,'), `refusal ${i}: ${JSON.stringify(r)}`);
    }
    const last = await poll();
    assert.ok(last.text === '1' || last.status === 400, `the session ended: ${JSON.stringify(last)}`);
    assert.equal((await poll()).status, 400, 'and is gone');

    // Joining and leaving again and again on one session: after 16 joins it is closed.
    const { sid: sid2 } = JSON.parse((await (await fetch(`${slow}/socket.io/?EIO=4&transport=polling`)).text()).slice(1));
    const url2 = `${slow}/socket.io/?EIO=4&transport=polling&sid=${sid2}`;
    for (let i = 1; i <= 16; i += 1) {
      assert.equal(await (await fetch(url2, { method: 'POST', body: '40/locations,{"token":"good"}' })).text(), 'ok');
      const r = await (await fetch(url2)).text();
      assert.ok(r.startsWith('40/locations,'), `join ${i}: ${r}`);
      assert.equal(await (await fetch(url2, { method: 'POST', body: '41/locations,' })).text(), 'ok');
    }
    await fetch(url2, { method: 'POST', body: '40/locations,{"token":"good"}' });
    const ended = await fetch(url2);
    const endedText = await ended.text();
    assert.ok(endedText === '1' || ended.status === 400, `the 17th join ends the session: ${ended.status} ${endedText}`);
  });

  test('sessions that never join are bounded in number too: one over the bound is a 503 on either transport, and a stock client gets in once a place frees', { timeout: 20_000 }, async () => {
    const bound = 3;
    const echo = await startEcho({ maxPending: bound, connectTimeoutMs: 2_000 });
    const echoStats = async () => (await fetch(`${echo}/stats`)).json();
    const open = () => fetch(`${echo}/socket.io/?EIO=4&transport=polling`);
    const sids = [];
    for (let i = 0; i < bound; i += 1) {
      const r = await open();
      assert.equal(r.status, 200);
      sids.push(JSON.parse((await r.text()).slice(1)).sid);
    }
    const over = await open();
    assert.equal(over.status, 503);
    assert.equal(over.headers.get('retry-after'), '1');
    assert.deepEqual(await over.json(), { code: 4, message: 'Server busy' });
    // A websocket handshake is refused before the upgrade.
    const u = new URL(echo);
    const wsStatus = await new Promise((resolve, reject) => {
      const c = net.connect(Number(u.port), u.hostname, () => {
        c.write('GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n'
          + 'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n');
      });
      let text = '';
      c.on('data', (d) => { text += d; if (text.includes('\r\n')) { c.destroy(); resolve(Number(text.split(' ')[1])); } });
      c.on('error', reject);
    });
    assert.equal(wsStatus, 503);
    assert.deepEqual(await echoStats(), { sessions: bound, pending: bound, busy: 2, sockets: 0, left: [] });

    // A session whose join is accepted frees its place at once.
    const url = `${echo}/socket.io/?EIO=4&transport=polling&sid=${sids[0]}`;
    assert.equal(await (await fetch(url, { method: 'POST', body: '40/locations,{"token":"good"}' })).text(), 'ok');
    assert.ok((await (await fetch(url)).text()).startsWith('40/locations,'), 'joined');
    assert.equal((await echoStats()).pending, bound - 1);
    const again = await open();
    assert.equal(again.status, 200);
    await again.text();

    // Full again: a stock client is refused, retries by itself, and gets in
    // once the sessions that never joined reach their connect timeout.
    const c = io(`${echo}/locations`, { auth: { token: 'good' }, reconnectionDelay: 200, reconnectionDelayMax: 400 });
    sockets.push(c);
    const refused = withTimeout(new Promise((r) => c.once('connect_error', r)), 5_000, 'a refusal while full');
    await refused;
    await withTimeout(new Promise((r) => c.once('connect', r)), 10_000, 'the client in after the timeouts');
    assert.ok(c.connected);
    // The client took the first place freed; the other unjoined sessions
    // (opened a moment later) reach their own timeout soon after.
    const after = await waitUntil(async () => {
      const st = await echoStats();
      return st.pending === 0 && st;
    }, { timeoutMs: 5_000, what: 'every unjoined session gone' });
    assert.ok(after.busy >= 3, `the client's refused tries counted: ${JSON.stringify(after)}`);
  });
});
