// Contract §11 (v1.2) / deploy/haproxy.cfg — three `wecare-rt serve` nodes on
// one PostgreSQL database behind HAProxy (Debian's package, installed by
// scripts/lb-test-setup.sh when missing), driven by the official
// socket.io-client through the load balancer only:
//
//  (a) default transports (polling, then the upgrade to websocket): drivers
//      and watchers spread over the three nodes, fixes acked and delivered;
//  (b) long-polling only, many polls per session on every node: each poll
//      must reach the node that holds its session (sticky by sid, no cookies:
//      Node's client keeps none);
//  (c) a node that loses PostgreSQL leaves rotation (/readyz 503) while its
//      process lives, and returns when the database is back;
//  (d) with no node in rotation the balancer answers like a node would
//      (503 STORAGE_UNAVAILABLE, Retry-After); /metrics is not exposed;
//  (e) a node stopped with SIGTERM drains and leaves rotation; its clients
//      reconnect through HAProxy to the others and carry on: every fix acked
//      and stored once, watchers resume with lastSeq, no gap, no duplicate.
//
// The test starts everything itself (private PostgreSQL via
// scripts/pg-instance.sh, the nodes, HAProxy on free loopback ports with the
// config rendered from environment variables) and stops it in `after`.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { io } from 'socket.io-client';
import { startServer, freePort, repoRoot, createDatabase } from '../lib/server.mjs';
import { randomSecret, driverToken, watcherToken, uniqueName } from '../lib/token.mjs';
import {
  Peer, closeAll, fix, rest, allEvents, waitUntil, withTimeout, STREAM_EVENTS,
} from '../lib/client.mjs';

const CONFIG = path.join(repoRoot, 'deploy', 'haproxy.cfg');
const SETUP = path.join(repoRoot, 'scripts', 'lb-test-setup.sh');
const PG_INSTANCE = path.join(repoRoot, 'scripts', 'pg-instance.sh');
const BACKEND = 'wecare_nodes';
const GRACE_MS = 10_000;

// ---------------------------------------------------------------- HAProxy

/** The haproxy binary; runs the project's setup script when it is missing. */
function ensureHaproxy() {
  const found = () => {
    try {
      return execFileSync('sh', ['-c', 'command -v haproxy'], { encoding: 'utf8' }).trim() || null;
    } catch {
      return ['/usr/sbin/haproxy', '/usr/local/sbin/haproxy'].find((p) => existsSync(p)) ?? null;
    }
  };
  const bin = found();
  if (bin) return bin;
  // Not installed: the same script a CI machine runs (apt-get install haproxy).
  const out = execFileSync(SETUP, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], timeout: 600_000 });
  const p = out.trim().split('\n').pop();
  assert.ok(p && existsSync(p), `scripts/lb-test-setup.sh did not provide haproxy (printed ${JSON.stringify(out)})`);
  return p;
}

class Haproxy {
  constructor(bin, nodes) {
    this.bin = bin;
    this.nodes = nodes;
    this.dir = mkdtempSync(path.join(os.tmpdir(), 'wecare-lb-'));
    this.sock = path.join(this.dir, 'admin.sock');
    this.out = '';
  }

  get url() { return `http://127.0.0.1:${this.port}`; }
  get nsUrl() { return `${this.url}/locations`; }

  async start() {
    this.port = await freePort();
    this.statsPort = await freePort();
    const env = {
      PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
      WECARE_LB_BIND: `127.0.0.1:${this.port}`,
      WECARE_LB_STATS_BIND: `127.0.0.1:${this.statsPort}`,
      WECARE_LB_ADMIN_SOCKET: this.sock,
      WECARE_LB_LOG: 'stdout',
      WECARE_LB_UNPRIVILEGED: '1',
    };
    this.nodes.forEach((n, i) => { env[`WECARE_NODE${i + 1}`] = `127.0.0.1:${n.port}`; });
    execFileSync(this.bin, ['-c', '-q', '-f', CONFIG], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = spawn(this.bin, ['-db', '-f', CONFIG], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    const keep = (c) => {
      this.out += c.toString();
      if (this.out.length > 400_000) this.out = this.out.slice(-200_000);
      if (process.env.WECARE_LB_LOG_ECHO) process.stderr.write(c);
    };
    this.child.stdout.on('data', keep);
    this.child.stderr.on('data', keep);
    this.exited = new Promise((resolve) => this.child.on('exit', (code, signal) => resolve({ code, signal })));
    this.exited.then((info) => { this.exitInfo = info; });
    await this.waitStates(['UP', 'UP', 'UP'], 15_000);
    return this;
  }

  tail(n = 3000) { return this.out.slice(-n); }

  /**
   * HAProxy's request log (option httplog) from `from` (an offset into the
   * output): { server, status, retries, redispatched, request } per line.
   */
  requests(from = 0) {
    const out = [];
    for (const line of this.out.slice(from).split('\n')) {
      const r = / wecare wecare_nodes\/(\S+) \S+ (\d{3}) .* \d+\/\d+\/\d+\/\d+\/(\+?)(\d+) \d+\/\d+ "([^"]*)"/.exec(line);
      if (r) out.push({ server: r[1], status: Number(r[2]), redispatched: r[3] === '+', retries: Number(r[4]), request: r[5] });
    }
    return out;
  }

  /** Server name -> status ("UP", "DOWN", "MAINT", "UP 1/2", ...), from the stats CSV. */
  async states() {
    if (this.exitInfo) throw new Error(`haproxy exited ${JSON.stringify(this.exitInfo)}:\n${this.tail()}`);
    let text;
    try {
      const r = await fetch(`http://127.0.0.1:${this.statsPort}/stats;csv`, { signal: AbortSignal.timeout(2000) });
      text = await r.text();
    } catch {
      return null; // not listening yet
    }
    const [head, ...rows] = text.trim().split('\n');
    const cols = head.replace(/^# /, '').split(',');
    const iPx = cols.indexOf('pxname');
    const iSv = cols.indexOf('svname');
    const iSt = cols.indexOf('status');
    const out = {};
    for (const row of rows) {
      const f = row.split(',');
      if (f[iPx] === BACKEND && f[iSv] !== 'BACKEND') out[f[iSv]] = f[iSt];
    }
    return out;
  }

  /** Wait until node1..3 have exactly these statuses (null = any). */
  async waitStates(want, timeoutMs = 15_000) {
    let last = null;
    try {
      await waitUntil(async () => {
        last = await this.states();
        return last && want.every((w, i) => w === null || last[`node${i + 1}`] === w);
      }, { timeoutMs, intervalMs: 100, what: `haproxy server states ${JSON.stringify(want)}` });
    } catch (err) {
      err.message += ` (last: ${JSON.stringify(last)})\n${this.tail()}`;
      throw err;
    }
  }

  /** One command on the admin socket; resolves with its output. */
  cli(cmd) {
    return withTimeout(new Promise((resolve, reject) => {
      const c = net.createConnection(this.sock);
      let buf = '';
      c.on('connect', () => c.end(`${cmd}\n`));
      c.on('data', (d) => { buf += d; });
      c.on('end', () => resolve(buf));
      c.on('error', reject);
    }), 5000, `haproxy cli: ${cmd}`);
  }

  /** The sid stick table: Map sid -> node number (gpt0 = server id). */
  async sessions() {
    const text = await this.cli(`show table ${BACKEND}`);
    const m = new Map();
    for (const line of text.split('\n')) {
      const r = /key=(\S+) .*gpt0=(\d+)/.exec(line);
      if (r) m.set(r[1], Number(r[2]));
    }
    return m;
  }

  async stop() {
    if (this.child) {
      if (!this.exitInfo) this.child.kill('SIGTERM');
      await withTimeout(this.exited, 5000, 'haproxy exit').catch(() => { this.child.kill('SIGKILL'); return this.exited; });
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

// ------------------------------------------------- a cuttable DB link

/**
 * A TCP relay between one node and PostgreSQL. cut() closes every open
 * connection and refuses new ones (the node has lost its database);
 * restore() forwards again.
 */
class DbLink {
  constructor(target) {
    this.target = target; // { host, port }
    this.open = new Set();
    this.cutOff = false;
    this.server = net.createServer((c) => {
      if (this.cutOff) { c.destroy(); return; }
      const up = net.createConnection(this.target);
      const pair = [c, up];
      this.open.add(pair);
      const done = () => { this.open.delete(pair); c.destroy(); up.destroy(); };
      c.on('error', done); up.on('error', done);
      c.on('close', done); up.on('close', done);
      c.pipe(up); up.pipe(c);
    });
  }

  listen() {
    return new Promise((resolve) => this.server.listen(0, '127.0.0.1', () => { this.port = this.server.address().port; resolve(this); }));
  }

  cut() {
    this.cutOff = true;
    for (const [c, up] of [...this.open]) { c.destroy(); up.destroy(); }
  }

  restore() { this.cutOff = false; }

  close() {
    this.cut();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

// ---------------------------------------------------------- clients

/** A socket through the balancer. No `transports` option = the client's defaults. */
function lbPeer(lb, { auth, transports, reconnection = true } = {}) {
  const opts = { forceNew: true, autoConnect: false, reconnection, auth, timeout: 5000 };
  if (transports) opts.transports = transports;
  const peer = new Peer(io(lb.nsUrl, opts));
  peer.sids = []; // the Engine.IO session of every (re)connect
  peer.socket.on('connect', () => peer.sids.push(peer.socket.io.engine.id));
  return peer;
}

function connected(peer, timeoutMs = 10_000) {
  if (peer.socket.connected) return Promise.resolve(peer);
  return withTimeout(new Promise((resolve, reject) => {
    peer.socket.once('connect', () => resolve(peer));
    if (!peer.socket.io.opts.reconnection) peer.socket.once('connect_error', (e) => reject(new Error(`connect_error: ${e.message}`)));
  }), timeoutMs, 'socket connect through haproxy');
}

/**
 * Connects `peer` and waits for its first snapshot. `received`: the seqs of
 * every stream event that arrived, in order; `snapshots`: how many came.
 */
async function startWatching(peer) {
  Object.defineProperty(peer, 'received', {
    get: () => peer.events.filter((e) => STREAM_EVENTS.has(e.name)).map((e) => e.data.seq),
  });
  Object.defineProperty(peer, 'snapshots', { get: () => peer.all('drivers:snapshot').length });
  peer.socket.connect();
  peer.snapshot = await peer.waitFor('drivers:snapshot', () => true, 15_000);
  return peer;
}

/**
 * A watcher as a well-behaved app runs one (contract §9): an auth callback
 * that carries lastSeq/streamId on every reconnect; stream events at or below
 * lastSeq are dropped. `received`: the seqs of every stream event that
 * arrived, in order; `applied`: those it applied.
 */
async function lbWatcher(lb, secret, opts = {}) {
  const token = watcherToken(secret);
  const state = { last: null, streamId: null };
  const peer = lbPeer(lb, {
    ...opts,
    auth: (cb) => cb(state.last === null ? { token } : { token, lastSeq: state.last, streamId: state.streamId }),
  });
  peer.resume = state;
  peer.socket.on('drivers:snapshot', (snap) => { state.streamId = snap.streamId; state.last = snap.seq; });
  for (const name of STREAM_EVENTS) {
    peer.socket.on(name, (e) => { if (e.seq > state.last) state.last = e.seq; });
  }
  // Derived from the recorder's log (which `until` waits on), by the same rule.
  Object.defineProperty(peer, 'applied', {
    get() {
      const out = [];
      let last = null;
      for (const e of peer.events) {
        if (e.name === 'drivers:snapshot') last = e.data.seq;
        else if (STREAM_EVENTS.has(e.name) && e.data.seq > last) { out.push(e.data.seq); last = e.data.seq; }
      }
      return out;
    },
  });
  return startWatching(peer);
}

/**
 * A watcher as the deployed WeCare app runs one: the stock client, `auth`
 * the token alone, no resume of its own — after a cut it relies on
 * Socket.IO's connection-state recovery (contract §5, v1.3), which the
 * client does by itself. `recoveries`: `socket.recovered` at every connect.
 */
async function lbStockWatcher(lb, secret) {
  const peer = lbPeer(lb, { auth: { token: watcherToken(secret) } });
  peer.recoveries = [];
  peer.socket.on('connect', () => peer.recoveries.push(peer.socket.recovered));
  return startWatching(peer);
}

async function lbDriver(lb, secret, opts = {}) {
  const driverId = uniqueName('lb-drv');
  const peer = lbPeer(lb, { ...opts, auth: { token: driverToken(secret, { driverId }) } });
  peer.driverId = driverId;
  peer.retries = 0;
  peer.socket.connect();
  return connected(peer, 15_000);
}

/**
 * Deliver one fix as a well-behaved driver does (contract §9): resend the same
 * id after a timeout, a disconnect or a retryable refusal, until it is acked.
 */
async function deliver(driver, f, { deadlineMs = 40_000, ackMs = 4000 } = {}) {
  const deadline = Date.now() + deadlineMs;
  for (let attempt = 0; ; attempt += 1) {
    if (Date.now() > deadline) throw new Error(`fix ${f.id} of ${driver.driverId} not acked within ${deadlineMs} ms`);
    if (attempt > 0) driver.retries += 1;
    if (!driver.socket.connected) await connected(driver, Math.max(1, deadline - Date.now()));
    let ack;
    try {
      ack = await driver.socket.timeout(ackMs).emitWithAck('location:update', f);
    } catch {
      continue; // no ack (disconnect or timeout): resend, same id
    }
    if (ack?.status === 'ok') return ack;
    assert.equal(ack?.retryable, true, `only retryable refusals may happen: ${JSON.stringify(ack)}`);
    // A retryable refusal (UNAVAILABLE while a node drains): back off a little.
    await new Promise((r) => setTimeout(r, 100 + Math.random() * 200));
  }
}

/**
 * Every watcher got exactly the stored stream after its (only) snapshot: each
 * event once, in seq order, none missing, none sent twice (across reconnects
 * to other nodes too).
 */
function assertNoGapNoDuplicate(watchers, storedSeqs, what) {
  for (const [k, w] of watchers.entries()) {
    const expected = storedSeqs.filter((s) => s > w.snapshot.seq);
    assert.equal(w.snapshots, 1, `${what}: watcher ${k} re-snapshotted instead of resuming`);
    assert.deepEqual(w.received, expected, `${what}: watcher ${k} received exactly the stream after its snapshot, in order`);
  }
}

// ---------------------------------------------------------------- suite

describe('§11 three nodes behind HAProxy (deploy/haproxy.cfg)', { timeout: 240_000 }, () => {
  let pgDir = null;
  let db = null;
  let link = null;
  let lb = null;
  const nodes = [];
  const secret = randomSecret();

  before(async () => {
    const bin = ensureHaproxy();
    pgDir = mkdtempSync(path.join(os.tmpdir(), 'wecare-lb-pg-'));
    const adminUrl = execFileSync(PG_INSTANCE, ['start', pgDir], { encoding: 'utf8', timeout: 300_000 }).trim();
    db = createDatabase('lb', adminUrl);
    // Node 3 reaches the database through a relay the test can cut.
    const u = new URL(db.url);
    link = await new DbLink({ host: u.hostname, port: Number(u.port) }).listen();
    const viaLink = new URL(db.url);
    viaLink.port = String(link.port);
    const env = { SHUTDOWN_GRACE_MS: GRACE_MS };
    // One at a time: the first creates the schema.
    for (const url of [db.url, db.url, viaLink.toString()]) {
      nodes.push(await startServer({ secret, databaseUrl: url, env }));
    }
    lb = new Haproxy(bin, nodes); // assigned first: `after` stops it even if start() fails
    await lb.start();
  });

  after(async () => {
    closeAll();
    const errors = [];
    const attempt = async (f) => { try { await f(); } catch (e) { errors.push(e); } };
    await attempt(() => lb?.stop());
    for (const n of nodes) await attempt(() => n.dispose());
    await attempt(() => link?.close());
    await attempt(() => db?.drop());
    if (pgDir) await attempt(() => execFileSync(PG_INSTANCE, ['stop', pgDir], { stdio: 'ignore', timeout: 60_000 }));
    if (pgDir) rmSync(pgDir, { recursive: true, force: true });
    if (errors.length) throw errors[0];
  });

  const nodeOf = async (peers) => {
    const table = await lb.sessions();
    return peers.map((p) => table.get(p.sids[p.sids.length - 1]) ?? null);
  };

  test('(a) default transports: polling then websocket through HAProxy, drivers and watchers on every node', async () => {
    // One at a time, so least-connections spreads them over the three nodes.
    const watchers = [];
    for (let i = 0; i < 3; i += 1) watchers.push(await lbWatcher(lb, secret));
    const drivers = [];
    for (let i = 0; i < 6; i += 1) drivers.push(await lbDriver(lb, secret));

    // The first fix goes out right at connect, over polling, during the upgrade.
    const acks = [];
    for (const d of drivers) {
      for (let i = 0; i < 5; i += 1) acks.push(await deliver(d, fix()));
    }
    const all = [...watchers, ...drivers];
    await waitUntil(() => all.every((p) => p.transport === 'websocket'), { timeoutMs: 10_000, what: 'every socket upgraded to websocket' });

    const where = await nodeOf(all);
    assert.ok(where.every((n) => n >= 1 && n <= 3), `every session learned by the balancer: ${where}`);
    assert.deepEqual([...new Set(where)].sort(), [1, 2, 3], `sessions spread over the three nodes: ${where}`);

    const seqs = acks.map((a) => a.seq);
    for (const w of watchers) {
      await w.until(() => seqs.every((s) => w.applied.includes(s)), 10_000, 'every acked fix at every watcher');
    }
    const { events } = await allEvents(nodes[0]);
    assertNoGapNoDuplicate(watchers, events.map((e) => e.seq), '(a)');
    assert.ok(all.every((p) => p.disconnects.length === 0), 'no disconnects');
    assert.equal(drivers.reduce((n, d) => n + d.retries, 0), 0, 'no resends were needed');
    closeAll();
  });

  test('(b) long-polling only: many polls per session, every one on the node that holds it', async (t) => {
    const logFrom = lb.out.length;
    const before = await lb.sessions();
    const watchers = [];
    for (let i = 0; i < 3; i += 1) watchers.push(await lbWatcher(lb, secret, { transports: ['polling'] }));
    const drivers = [];
    for (let i = 0; i < 6; i += 1) drivers.push(await lbDriver(lb, secret, { transports: ['polling'] }));
    const all = [...watchers, ...drivers];
    const where = await nodeOf(all);
    assert.deepEqual([...new Set(where)].sort(), [1, 2, 3], `polling sessions on all three nodes: ${where}`);
    for (const p of all) assert.equal(before.has(p.sids[0]), false, 'a new session');

    // Each fix is a POST and its ack a GET of the driver's session; each event
    // a GET of every watcher's session: hundreds of requests that must all
    // reach the right node (a wrong one answers "Session ID unknown" and the
    // client drops the session).
    const FIXES = 30;
    const acks = (await Promise.all(drivers.map(async (d) => {
      const out = [];
      for (let i = 0; i < FIXES; i += 1) out.push(await deliver(d, fix()));
      return out;
    }))).flat();
    const seqs = acks.map((a) => a.seq);
    for (const w of watchers) {
      await w.until(() => seqs.every((s) => w.applied.includes(s)), 15_000, 'every acked fix at every polling watcher');
    }
    assert.ok(all.every((p) => p.transport === 'polling'), 'stayed on polling');
    assert.deepEqual(all.map((p) => p.disconnects.length), all.map(() => 0), 'no session was lost');
    assert.deepEqual(all.map((p) => p.sids.length), all.map(() => 1), 'one session each, from start to end');
    assert.equal(drivers.reduce((n, d) => n + d.retries, 0), 0, 'no resends were needed');
    const { events } = await allEvents(nodes[1]);
    assertNoGapNoDuplicate(watchers, events.map((e) => e.seq), '(b)');
    // HAProxy's own log: every long-polling request answered 200, none
    // refused by a node that did not know its session (that would be 400
    // "Session ID unknown").
    // (The log also shows (a)'s websockets, closed meanwhile.)
    const polls = lb.requests(logFrom).filter((r) => r.request.includes('/socket.io/?EIO=4&transport=polling'));
    const refused = polls.filter((r) => r.status !== 200);
    assert.deepEqual(refused, [], 'no long-polling request refused');
    const perNode = {};
    for (const r of polls) perNode[r.server] = (perNode[r.server] ?? 0) + 1;
    t.diagnostic(`long-polling requests through HAProxy per node: ${JSON.stringify(perNode)}`);
    for (const n of ['node1', 'node2', 'node3']) assert.ok((perNode[n] ?? 0) >= 20, `many polls on ${n}: ${JSON.stringify(perNode)}`);
    closeAll();
  });

  test('(c) a node that cannot reach PostgreSQL leaves rotation while it runs, and returns with the database', async () => {
    const [, , n3] = nodes;
    link.cut();
    let watcher;
    try {
      // /readyz turns 503 on node 3 only; HAProxy takes it out of rotation.
      await waitUntil(async () => (await rest(n3, 'GET', '/readyz').catch(() => ({}))).status === 503,
        { timeoutMs: 15_000, intervalMs: 100, what: 'node 3 not ready without its database' });
      await lb.waitStates(['UP', 'UP', 'DOWN'], 15_000);
      assert.equal((await rest(n3, 'GET', '/healthz')).status, 200, 'node 3 itself is still up');

      // New sessions go to nodes 1 and 2 only, and work.
      watcher = await lbWatcher(lb, secret, { transports: ['polling'] });
      const drivers = [];
      for (let i = 0; i < 4; i += 1) drivers.push(await lbDriver(lb, secret, { transports: ['polling'] }));
      const where = await nodeOf([watcher, ...drivers]);
      assert.ok(where.every((n) => n === 1 || n === 2), `no new session on the node without a database: ${where}`);
      const acks = await Promise.all(drivers.map((d) => deliver(d, fix())));
      await watcher.until(() => acks.every((a) => watcher.applied.includes(a.seq)), 10_000, 'fixes at the watcher');
    } finally {
      // Database back (also when the part above failed, for the next tests).
      link.restore();
    }
    // Node 3 is ready again by itself and back in rotation.
    await lb.waitStates(['UP', 'UP', 'UP'], 30_000);
    const more = [];
    for (let i = 0; i < 3; i += 1) more.push(await lbDriver(lb, secret, { transports: ['polling'] }));
    const whereNow = await nodeOf(more);
    assert.ok(whereNow.includes(3), `node 3 takes new sessions again: ${whereNow}`);
    const ack = await deliver(more[whereNow.indexOf(3)], fix());
    await watcher.until(() => watcher.applied.includes(ack.seq), 10_000, 'a fix through node 3 reaches the watcher');
    closeAll();
  });

  test('(d) no node in rotation: 503 STORAGE_UNAVAILABLE with Retry-After from HAProxy; /metrics stays private', async () => {
    const lbAddr = { port: lb.port };
    const m = await rest(lbAddr, 'GET', '/metrics');
    assert.equal(m.status, 404, '/metrics is not served through the balancer');
    const token = watcherToken(secret);
    assert.equal((await rest(lbAddr, 'GET', '/api/realtime/latest', { token })).status, 200);
    for (let i = 1; i <= 3; i += 1) await lb.cli(`set server ${BACKEND}/node${i} state maint`);
    try {
      await lb.waitStates(['MAINT', 'MAINT', 'MAINT'], 5000);
      const r = await rest(lbAddr, 'GET', '/api/realtime/latest', { token });
      assert.equal(r.status, 503);
      assert.equal(r.headers['retry-after'], '2');
      assert.equal(r.body?.code, 'STORAGE_UNAVAILABLE', r.text);
      assert.equal(r.body?.retryable, true);
    } finally {
      for (let i = 1; i <= 3; i += 1) await lb.cli(`set server ${BACKEND}/node${i} state ready`);
    }
    await lb.waitStates(['UP', 'UP', 'UP'], 15_000);
  });

  test('(e) SIGTERM on a node: it drains and leaves rotation; its clients reconnect through HAProxy and resume', async (t) => {
    // Six resuming watchers (default transports) and six drivers (half
    // default transports, half long-polling), spread over the nodes.
    const watchers = [];
    for (let i = 0; i < 6; i += 1) watchers.push(await lbWatcher(lb, secret));
    const drivers = [];
    for (let i = 0; i < 6; i += 1) drivers.push(await lbDriver(lb, secret, i % 2 ? { transports: ['polling'] } : {}));

    // The victim: a node holding at least one watcher and one driver.
    const wWhere = await nodeOf(watchers);
    const dWhere = await nodeOf(drivers);
    const victimNo = [1, 2, 3].find((n) => wWhere.includes(n) && dWhere.includes(n));
    assert.ok(victimNo, `a node with a watcher and a driver (watchers on ${wWhere}, drivers on ${dWhere})`);
    const victim = nodes[victimNo - 1];
    const others = nodes.filter((n) => n !== victim);
    const movedWatchers = watchers.filter((_, k) => wWhere[k] === victimNo);
    const movedDrivers = drivers.filter((_, k) => dWhere[k] === victimNo);
    // Stock watchers (the deployed app's), until two are on the victim.
    const stock = [];
    const movedStock = [];
    for (let i = 0; i < 12 && movedStock.length < 2; i += 1) {
      const s = await lbStockWatcher(lb, secret);
      stock.push(s);
      if ((await nodeOf([s]))[0] === victimNo) movedStock.push(s);
    }
    assert.equal(movedStock.length, 2, 'two stock watchers on the node to be stopped');

    // Every driver keeps delivering fixes, one after the other.
    const sent = new Map(); // fix id -> driver id
    const acked = new Map(); // fix id -> ack
    let running = true;
    let exitedAt = null;
    const ackedAfterExit = new Map(); // driver id -> fixes acked after the victim exited
    const pumpErrors = [];
    const pumps = drivers.map(async (d) => {
      try {
        while (running) {
          const f = fix();
          sent.set(f.id, d.driverId);
          acked.set(f.id, await deliver(d, f));
          if (exitedAt !== null) ackedAfterExit.set(d.driverId, (ackedAfterExit.get(d.driverId) ?? 0) + 1);
        }
      } catch (err) {
        pumpErrors.push(err);
      }
    });
    try {
      await waitUntil(() => acked.size >= 60, { timeoutMs: 20_000, what: '60 fixes acked before the SIGTERM' });

      const termAt = Date.now();
      victim.stopping = true;
      victim.proc.child.kill('SIGTERM');
      // Handshakes that race the drain are answered by another node (HAProxy
      // replays a handshake refused with 503 or cut by the exiting node).
      const logAtTerm = lb.out.length;
      const opens = await Promise.all(Array.from({ length: 20 }, () => rest({ port: lb.port }, 'GET', '/socket.io/?EIO=4&transport=polling')));
      assert.deepEqual(opens.map((r) => r.status), opens.map(() => 200), 'every handshake during the drain succeeded');
      const replayed = lb.requests(logAtTerm).filter((r) => r.request.startsWith('GET /socket.io/?EIO=4&transport=polling HTTP') && r.retries > 0);
      t.diagnostic(`handshakes replayed by HAProxy on another node during the drain: ${replayed.length} of 20`);

      const exit = await victim.waitExit(GRACE_MS + 5000);
      exitedAt = Date.now();
      assert.equal(exit.code, 0, `clean exit: ${JSON.stringify(exit)}\n${victim.output.slice(-2000)}`);
      assert.ok(Date.now() - termAt <= GRACE_MS + 1000, 'exited within the grace');
      const down = ['UP', 'UP', 'UP'];
      down[victimNo - 1] = 'DOWN';
      await lb.waitStates(down, 10_000);

      // The victim's clients are back, on the other nodes, and keep working.
      await waitUntil(() => [...movedWatchers, ...movedDrivers, ...movedStock].every((p) => p.disconnects.length >= 1 && p.connected),
        { timeoutMs: 20_000, what: 'the stopped node\'s clients reconnected' });
      await waitUntil(() => drivers.every((d) => (ackedAfterExit.get(d.driverId) ?? 0) >= 10),
        { timeoutMs: 20_000, what: 'every driver (moved or not) has 10 more fixes acked after the exit' });
    } finally {
      running = false;
    }
    await withTimeout(Promise.all(pumps), 45_000, 'drivers finish their last fix');
    assert.deepEqual(pumpErrors, [], 'every fix was delivered');

    const nowWhere = await nodeOf([...movedWatchers, ...movedDrivers]);
    assert.ok(nowWhere.every((n) => n !== null && n !== victimNo), `reconnected to the other nodes: ${nowWhere}`);
    for (const d of movedDrivers) assert.ok(d.sids.length >= 2, 'a moved driver opened a new session');

    // Nothing acked is lost, nothing is stored twice.
    const { events } = await allEvents(others[0]);
    const fixes = events.filter((e) => e.type === 'location:updated' && sent.has(e.id));
    const storedIds = fixes.map((e) => e.id);
    assert.equal(new Set(storedIds).size, storedIds.length, 'no fix stored twice');
    assert.deepEqual(new Set(storedIds), new Set(sent.keys()), 'every fix sent was stored (and acked)');
    for (const e of fixes) assert.equal(acked.get(e.id).seq, e.seq, 'the ack carries the stored seq');

    // Every watcher, moved or not, resumed with lastSeq: the whole stream
    // after its snapshot, once, in order.
    const head = events[events.length - 1].seq;
    for (const w of watchers) await w.until(() => w.applied.at(-1) >= head, 15_000, `watcher at the head (${head})`);
    assertNoGapNoDuplicate(watchers, events.map((e) => e.seq), '(e)');
    for (const w of movedWatchers) assert.ok(w.names().includes('sync:complete'), 'the moved watcher resumed (sync:complete)');

    // The stock watchers on the stopped node recovered on another node,
    // by the client's own recovery: the whole stream after their snapshot,
    // once, in order, and no second snapshot.
    for (const w of stock) await w.until(() => w.received.at(-1) >= head, 15_000, `stock watcher at the head (${head})`);
    assertNoGapNoDuplicate(stock, events.map((e) => e.seq), '(e) stock');
    for (const w of movedStock) {
      assert.deepEqual(w.recoveries, [false, true], 'the first connect is new, the reconnect recovered');
      assert.ok(!w.names().includes('sync:complete'), 'recovered, not resumed');
    }
    const stockWhere = await nodeOf(movedStock);
    assert.ok(stockWhere.every((n) => n !== null && n !== victimNo), `recovered on the other nodes: ${stockWhere}`);
    closeAll();
  });
});
