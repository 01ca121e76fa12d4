// Contract v1.3 §5 — connection-state recovery for unchanged Socket.io
// clients: the official socket.io-client 4.8.3 with no option beyond the URL,
// `auth: { token }` and (where said) `transports` recovers by itself.
//  * a watcher's CONNECT reply carries `pid` (the client keeps `socket._pid`);
//    a driver's does not;
//  * every stream event to a watcher carries its seq as a decimal string as
//    its last argument (the client keeps it as `socket._lastOffset`);
//  * a reconnect sends `{ pid, offset }` in its auth: the server sends every
//    event after `offset`, then the CONNECT reply with the same pid
//    (`socket.recovered === true`), then live — no gap, no duplicate, no
//    `drivers:snapshot`, no `sync:complete`;
//  * another stream, an offset older than retention: a new pid and a
//    `drivers:snapshot`; a revoked or expired token: the auth connect_error;
//  * `auth.lastSeq` wins over `{ pid, offset }` (replay, then sync:complete).
// The line is cut with lib/cutter.mjs (a TCP forwarder between the client and
// the server) or by a SIGKILL of the server.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { io } from 'socket.io-client';
import { startServer, Server, tempDataDir, createDatabase, pgAdminUrl } from '../lib/server.mjs';
import { startCutter } from '../lib/cutter.mjs';
import { nowSeconds, uniqueName } from '../lib/token.mjs';
import {
  Peer, connectDriver, connectResumingWatcher, closeAll, fix, rest, allEvents, assertOk,
  waitUntil, withTimeout, settle, STREAM_EVENTS,
} from '../lib/client.mjs';

const NOTIFY_SECRET = 'notify-secret-for-recovery-tests';
const AUTH_ERRORS = new Set(['Authentication required', 'Invalid token', 'Token expired', 'Forbidden']);
const VARIANTS = [
  ['default transports (polling, then websocket)', undefined],
  ['websocket only', ['websocket']],
  ['polling only', ['polling']],
];
/** The stock client's reconnection backoff reaches 5 s (± jitter): a reconnect after a cut may take that long. */
const RECONNECT_MS = 20_000;

/** Only for pacing the drivers and holding a cut open (never to wait for a result). */
const delay = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * A watcher exactly as an app opens one with the official client: the URL,
 * `auth: { token }` and, when given, `transports` — nothing else. Records
 * every event (Peer) and every `connect` (with `recovered` and `_pid` at that
 * moment, and how many events had been delivered: the client delivers the
 * events that came before the CONNECT reply just before `connect`) and
 * `connect_error`.
 */
function officialSocket(url, token, transports) {
  const opts = { auth: { token } };
  if (transports) opts.transports = transports;
  const socket = io(url, opts);
  const peer = new Peer(socket);
  peer.connects = [];
  peer.connectErrors = [];
  socket.on('connect', () => {
    peer.connects.push({ at: peer.events.length, recovered: socket.recovered, pid: socket._pid, t: Date.now() });
  });
  socket.on('connect_error', (err) => peer.connectErrors.push({ message: err.message, at: peer.events.length, t: Date.now() }));
  return peer;
}

/** Wait for the peer's n-th `connect`; fails at once on an auth connect_error. */
async function nthConnect(peer, n, timeoutMs = RECONNECT_MS) {
  await waitUntil(() => {
    const refused = peer.connectErrors.find((e) => AUTH_ERRORS.has(e.message));
    if (refused) throw new Error(`connect_error "${refused.message}" while waiting for connect #${n}`);
    return peer.connects.length >= n;
  }, { timeoutMs, what: `connect #${n}` });
  return peer.connects[n - 1];
}

/** An official watcher, connected, with its first drivers:snapshot. */
async function officialWatcher(url, token, transports) {
  const w = officialSocket(url, token, transports);
  await nthConnect(w, 1, 10_000);
  w.snapshot = await w.waitFor('drivers:snapshot');
  // (auth:expiring may come first for a token close to its exp)
  const first = w.events.find((e) => !e.name.startsWith('auth:'));
  assert.equal(first?.name, 'drivers:snapshot', 'a watcher without lastSeq gets drivers:snapshot first');
  return w;
}

function lastStreamSeq(peer) {
  for (let i = peer.events.length - 1; i >= 0; i -= 1) {
    if (STREAM_EVENTS.has(peer.events[i].name)) return peer.events[i].data.seq;
  }
  return null;
}

const streamEntries = (entries) => entries.filter((e) => STREAM_EVENTS.has(e.name));

/** A stream event carries exactly one extra argument: its seq as a decimal string. */
function assertOffsetArg(e, what) {
  assert.equal(e.args.length, 2, `${what}: ${e.name} seq ${e.data?.seq} has ${e.args.length} argument(s), expected payload + seq string`);
  assert.equal(typeof e.args[1], 'string', `${what}: last argument of ${e.name} is a ${typeof e.args[1]}`);
  assert.equal(e.args[1], String(e.data.seq), `${what}: last argument of ${e.name} vs its seq`);
}

/** Compare two seq lists; on a difference, say how (count, first difference, duplicates, missing, unexpected). */
function assertSeqList(got, want, what) {
  if (got.length === want.length && got.every((s, i) => s === want[i])) return;
  const count = new Map();
  for (const s of got) count.set(s, (count.get(s) ?? 0) + 1);
  const dups = [...count].filter(([, n]) => n > 1).map(([s]) => s);
  const wanted = new Set(want);
  const missing = want.filter((s) => !count.has(s));
  const unexpected = [...count.keys()].filter((s) => !wanted.has(s));
  let i = 0;
  while (i < got.length && got[i] === want[i]) i += 1;
  const outOfOrder = got.findIndex((s, k) => k > 0 && s <= got[k - 1]);
  assert.fail(`${what}: received ${got.length} events, expected ${want.length} (seq ${want[0]}..${want.at(-1)}); `
    + `first difference at #${i}: got [${got.slice(Math.max(0, i - 2), i + 5)}] want [${want.slice(Math.max(0, i - 2), i + 5)}]; `
    + `duplicates (${dups.length}) [${dups.slice(0, 20)}]; missing (${missing.length}) [${missing.slice(0, 20)}]; `
    + `unexpected (${unexpected.length}) [${unexpected.slice(0, 20)}]; first out-of-order index ${outOfOrder}`);
}

/**
 * What a dispatcher's map got is exactly the stored stream: the same seqs
 * once each and in order, the same payloads, each with its seq string.
 */
function assertStreamIs(peer, stored, what) {
  const got = streamEntries(peer.events);
  assertSeqList(got.map((e) => e.data.seq), stored.map((e) => e.seq), what);
  for (let i = 0; i < got.length; i += 1) {
    assert.deepEqual({ type: got[i].name, ...got[i].data }, stored[i], `${what}: event #${i} (seq ${stored[i].seq}) is the stored event`);
    assertOffsetArg(got[i], what);
  }
}

async function sendN(driver, n) {
  const acks = [];
  for (let i = 0; i < n; i += 1) {
    const f = fix();
    const a = await driver.emitAck('location:update', f);
    assertOk(a, f);
    acks.push(a);
  }
  return acks;
}

/**
 * A few drivers (connected directly to the server, never through a cutter)
 * each emitting `location:update` with an ack every `intervalMs` (at most
 * `maxInFlight` unanswered), for as long as it runs: 4 × 50/s ≈ 200 fixes/s.
 * A fix whose ack did not come (disconnect, timeout) is sent again with the
 * same id (a fix stored before a kill is then acked as a duplicate with its
 * seq); a driver whose socket closed (server killed) connects again with the
 * same identity until it can. `stop()` sends no new fix but first gets every
 * unanswered one acked, so every stored fix ends up acked. Only acked fixes
 * count (`acks`).
 */
class FixLoad {
  constructor(server, { drivers = 4, intervalMs = 20, maxInFlight = 8, ackMs = 5000 } = {}) {
    Object.assign(this, { server, n: drivers, intervalMs, maxInFlight, ackMs });
    this.peers = [];
    this.acks = [];
    this.refusals = [];
    this.unanswered = 0;
    this.reconnects = 0;
    this.stopped = false;
    this.abandoned = false; // stop without resending (after hooks)
    this.loops = [];
  }

  async connect() {
    this.peers = await Promise.all(Array.from({ length: this.n }, () => connectDriver(this.server)));
    return this;
  }

  run() {
    this.loops = this.peers.map((_, i) => this.#loop(i));
    return this;
  }

  get maxAcked() { return this.acks.reduce((m, a) => Math.max(m, a.seq), 0); }
  get ackedSeqs() { return [...new Set(this.acks.map((a) => a.seq))].sort((a, b) => a - b); }

  /** Resolves once `n` more fixes than now have been acked. */
  more(n, timeoutMs = 15_000) {
    const target = this.acks.length + n;
    return waitUntil(() => this.acks.length >= target, { timeoutMs, what: `${n} more acked fixes (have ${this.acks.length})` });
  }

  async #loop(i) {
    let peer = this.peers[i];
    const { driverId, email } = peer;
    const again = [];
    const inFlight = new Set();
    for (;;) {
      if (this.stopped) {
        await Promise.allSettled([...inFlight]);
        if (again.length === 0 || this.abandoned) break;
      }
      if (!peer.connected) {
        await Promise.allSettled([...inFlight]);
        peer.close();
        peer = await this.#reconnect(driverId, email);
        if (!peer) break;
        this.peers[i] = peer;
        continue;
      }
      const f = again.shift() ?? (this.stopped ? null : fix());
      if (!f) continue;
      const p = peer.emitAckWithin(this.ackMs, 'location:update', f).then((ack) => {
        if (ack?.status === 'ok') this.acks.push(ack);
        else {
          this.refusals.push(ack);
          if (ack?.retryable) again.push(f);
        }
      }, () => {
        this.unanswered += 1;
        again.push(f);
      }).finally(() => inFlight.delete(p));
      inFlight.add(p);
      if (inFlight.size >= this.maxInFlight) await Promise.race([...inFlight]);
      await delay(this.intervalMs);
    }
    await Promise.allSettled([...inFlight]);
  }

  async #reconnect(driverId, email) {
    while (!this.abandoned) {
      try {
        const p = await connectDriver(this.server, { driverId, email });
        this.reconnects += 1;
        return p;
      } catch {
        await delay(200);
      }
    }
    return null;
  }

  /** Stop sending; resolves when every fix sent has been acked (or, abandoned, answered or given up). */
  async stop({ abandon = false } = {}) {
    this.stopped = true;
    if (abandon) this.abandoned = true;
    await Promise.all(this.loops);
  }

  close() { for (const p of this.peers) p.close(); }
}

/**
 * After the load stopped: the peer got every stored event after its first
 * snapshot, once, in order, as stored; every acked fix among them; one
 * snapshot and no sync:complete.
 */
async function assertWholeWindow(server, w, load, what, { exactAcks = true } = {}) {
  const stored = (await allEvents(server, { since: w.snapshot.seq })).events;
  assert.ok(stored.length > 0, `${what}: events were stored`);
  const head = stored.at(-1).seq;
  await w.until(() => (lastStreamSeq(w) ?? 0) >= head, 20_000, `${what}: the watcher reaching seq ${head} (has ${lastStreamSeq(w)})`);
  await settle();
  assertStreamIs(w, stored, what);
  const got = new Set(streamEntries(w.events).map((e) => e.data.seq));
  const lost = load.ackedSeqs.filter((s) => !got.has(s));
  assert.deepEqual(lost, [], `${what}: acked fixes never delivered`);
  if (exactAcks) {
    // Every fix of the window was acked (no ack went missing): the fixes the
    // watcher got are exactly the acked ones.
    const locations = streamEntries(w.events).filter((e) => e.name === 'location:updated').map((e) => e.data.seq);
    assertSeqList(locations, load.ackedSeqs, `${what}: location:updated seqs vs acked seqs`);
  }
  assert.equal(w.all('drivers:snapshot').length, 1, `${what}: no second drivers:snapshot`);
  assert.equal(w.all('sync:complete').length, 0, `${what}: no sync:complete on a recovery`);
  assert.deepEqual(load.refusals.filter((a) => !a?.retryable), [], `${what}: no fix refused`);
}

/**
 * The reconnect `c` (after the disconnect at event index `discAt`, with the
 * client's offset `offset`) recovered: same pid, and the events delivered
 * before its `connect` (those the server sent before the CONNECT reply) run
 * from offset + 1 through at least `mustHave` — everything committed before
 * the client came back — with nothing but stream events among them.
 */
function assertRecoveredConnect(w, c, { pid, discAt, offset, mustHave, what }) {
  assert.equal(c.recovered, true, `${what}: socket.recovered after the reconnect`);
  assert.equal(c.pid, pid, `${what}: the CONNECT reply carries the same pid`);
  const buffered = w.events.slice(discAt, c.at);
  const others = buffered.filter((e) => !STREAM_EVENTS.has(e.name)).map((e) => e.name);
  assert.deepEqual(others, [], `${what}: only stream events before the CONNECT reply`);
  assert.ok(buffered.length > 0, `${what}: the events missed during the cut came before the CONNECT reply`);
  assert.equal(buffered[0].data.seq, offset + 1, `${what}: the first event after the reconnect follows the offset`);
  assert.ok(buffered.at(-1).data.seq >= mustHave,
    `${what}: before the CONNECT reply came events up to seq ${buffered.at(-1).data.seq}, but seq ${mustHave} was acked before the client came back`);
  return buffered.length;
}

/**
 * The reconnect of `w` (after `discAt` in its log) was not recovered: a new
 * pid, and a `drivers:snapshot` before anything else. Returns the snapshot.
 */
async function assertNotRecoveredConnect(w, pid, discAt) {
  const c = await nthConnect(w, 2);
  assert.equal(c.recovered, false, 'not recovered');
  assert.equal(typeof c.pid, 'string', 'a new pid');
  assert.notEqual(c.pid, pid, 'a new pid');
  const snap = (await w.waitForCount('drivers:snapshot', 2, () => true, 10_000))[1];
  const afterCut = w.events.slice(discAt);
  assert.equal(afterCut[0].name, 'drivers:snapshot', `first after the reconnect: ${afterCut.map((e) => e.name).slice(0, 5)}`);
  return snap;
}

/**
 * `driver` sends three fixes and `w` receives them (its offset is the last);
 * then `cutter` cuts `w`'s connection until restored. Returns the offset,
 * the cut's promise, and where `w`'s log stood at the disconnect.
 */
async function receiveThenCut(cutter, driver, w) {
  const seen = await sendN(driver, 3);
  await w.waitFor('location:updated', (e) => e.seq === seen[2].seq);
  const offset = seen[2].seq;
  assert.equal(w.socket._lastOffset, String(offset));
  const cutOver = cutter.cut(Infinity);
  await w.waitDisconnect(5000);
  return { offset, cutOver, discAt: w.events.length };
}

async function revoke(server, body) {
  return rest(server, 'POST', '/api/realtime/revoke', { body, headers: { authorization: `Bearer ${NOTIFY_SECRET}` } });
}

describe('v1.3 §5 connection-state recovery with the official client (a cut between client and server)', () => {
  let server;
  let cutter;
  let front; // the server as seen through the cutter
  const loads = [];
  const newLoad = async (opts) => {
    const l = await new FixLoad(server, opts).connect();
    loads.push(l);
    return l;
  };

  before(async () => {
    server = await startServer({ env: { NOTIFY_SECRET } });
    cutter = await startCutter(server.port);
    front = cutter.front(server);
  });
  after(async () => {
    await Promise.all(loads.map((l) => l.stop({ abandon: true })));
    closeAll();
    await cutter?.close();
    await server?.dispose();
  });

  test('a watcher\'s CONNECT reply carries pid (officer and admin); a driver\'s does not', { timeout: 30_000 }, async () => {
    for (const role of ['officer', 'admin']) {
      for (const [name, transports] of VARIANTS) {
        const w = await officialWatcher(server.nsUrl, server.watcherToken({ role }), transports);
        assert.equal(typeof w.socket._pid, 'string', `${role}, ${name}: socket._pid`);
        assert.ok(w.socket._pid.length > 0, `${role}, ${name}: pid not empty`);
        assert.equal(w.socket.recovered, false, `${role}, ${name}: a first connect is not a recovery`);
        w.close();
      }
    }
    for (const [name, transports] of VARIANTS) {
      const d = officialSocket(server.nsUrl, server.driverToken(), transports);
      await nthConnect(d, 1, 10_000);
      assert.equal(d.socket._pid, undefined, `driver, ${name}: no pid in the CONNECT reply`);
      assert.notEqual(d.socket.recovered, true, `driver, ${name}`);
      const f = fix();
      assertOk(await d.emitAck('location:update', f), f);
      d.close();
    }
  });

  test('stream events carry their seq as a decimal string, as the last argument; one-argument listeners are unaffected', { timeout: 30_000 }, async () => {
    const w = await officialWatcher(server.nsUrl, server.watcherToken(), ['websocket']);
    const full = { 'location:updated': [], 'driver:status:updated': [], 'driver:presence': [] };
    const single = [];
    for (const name of Object.keys(full)) {
      w.socket.on(name, (...args) => full[name].push(args));
    }
    w.socket.on('location:updated', (e) => single.push(e));
    const d = await connectDriver(server); // its first socket: driver:presence online
    const [a] = await sendN(d, 1);
    const st = await d.emitAck('driver:status', { status: 'BUSY' });
    assert.equal(st.status, 'ok', JSON.stringify(st));
    const [b] = await sendN(d, 1);
    await w.waitFor('location:updated', (e) => e.seq === b.seq);
    await w.waitFor('driver:presence', (e) => e.driverId === d.driverId);

    for (const [name, calls] of Object.entries(full)) {
      assert.ok(calls.length >= 1, `${name} received`);
      for (const args of calls) {
        assert.equal(args.length, 2, `${name}: ${JSON.stringify(args).slice(0, 300)}`);
        assert.equal(typeof args[0], 'object');
        assert.equal(args[1], String(args[0].seq), `${name}: the last argument is String(seq)`);
      }
    }
    assert.deepEqual(full['location:updated'].map((args) => args[0].seq), [a.seq, b.seq]);
    assert.equal(full['driver:status:updated'][0][0].seq, st.seq);
    assert.deepEqual(single.map((e) => e.seq), [a.seq, b.seq], 'a one-argument listener gets the payload');
    assert.equal(single[0].id, a.id);
    // The client keeps the last one as its offset.
    assert.equal(w.socket._lastOffset, String(lastStreamSeq(w)));
    // Not a stream event: a string last argument would be taken as an offset.
    for (const e of w.events.filter((x) => !STREAM_EVENTS.has(x.name))) {
      assert.notEqual(typeof e.args.at(-1), 'string', `${e.name} ends with a string argument`);
    }
    for (const e of streamEntries(w.events)) assertOffsetArg(e, 'every stream event');
    w.close();
    d.close();
  });

  for (const [name, transports] of VARIANTS) {
    test(`${name}: ~200 fixes/s, the line cut for 5 s → the client reconnects by itself, recovered, every event once and in order, no second snapshot`, { timeout: 90_000 }, async (t) => {
      const what = `cut, ${name}`;
      const load = await newLoad();
      const w = await officialWatcher(front.nsUrl, server.watcherToken(), transports);
      try {
        const pid = w.socket._pid;
        assert.equal(typeof pid, 'string', 'pid on the first connect');
        const t0 = Date.now();
        load.run();
        if (!transports) await waitUntil(() => w.transport === 'websocket', { what: 'the upgrade to websocket' });
        await load.more(200);
        await w.until(() => lastStreamSeq(w) !== null, 5000, 'live events');

        const cutOver = cutter.cut(5000);
        const disc = await w.waitDisconnect(5000);
        assert.ok(['transport close', 'transport error'].includes(disc.reason), `disconnect reason ${disc.reason}`);
        const discAt = w.events.length;
        const offset = lastStreamSeq(w);
        assert.equal(w.socket._lastOffset, String(offset), 'the client\'s offset is the last seq it got');
        await cutOver;
        const mustHave = load.maxAcked;
        assert.ok(mustHave > offset, `fixes were acked during the cut (${mustHave} > ${offset})`);

        const c = await nthConnect(w, 2);
        const replayed = assertRecoveredConnect(w, c, { pid, discAt, offset, mustHave, what });
        await load.more(100); // live again
        if (!transports) await waitUntil(() => w.transport === 'websocket', { what: 'the upgrade after the reconnect' });
        await load.stop();
        assert.equal(load.unanswered, 0, 'every fix answered (drivers are not behind the cut)');
        await assertWholeWindow(server, w, load, what);
        assert.equal(w.connects.length, 2, 'one reconnect');
        assert.equal(w.disconnects.length, 1, 'one disconnect');
        assert.equal(w.socket._pid, pid);
        t.diagnostic(`${load.acks.length} fixes acked in ${((Date.now() - t0) / 1000).toFixed(1)} s; `
          + `back ${c.t - disc.at} ms after the cut began; ${replayed} events before the CONNECT reply (offset ${offset}); `
          + `${streamEntries(w.events).length} stream events in all`);
      } finally {
        await load.stop({ abandon: true });
        load.close();
        w.close();
      }
    });
  }

  test('pid without offset (nothing received yet): recovered from the head at the time the session began', { timeout: 60_000 }, async () => {
    const what = 'pid, no offset';
    const d = await connectDriver(server);
    // Its driver:presence is committed before the watcher's session begins.
    await waitUntil(async () => {
      const r = await rest(server, 'GET', '/api/realtime/latest', { token: server.watcherToken() });
      return r.body?.drivers?.find((x) => x.driverId === d.driverId)?.online === true;
    }, { what: 'the driver online in the latest state' });
    const w = await officialWatcher(front.nsUrl, server.watcherToken(), ['websocket']);
    try {
      const pid = w.socket._pid;
      // An event for a driver already online (a fresh status) would set an offset; none is sent.
      await settle();
      assert.equal(lastStreamSeq(w), null, 'precondition: no stream event received');
      assert.equal(w.socket._lastOffset, undefined, 'precondition: no offset');

      const cutOver = cutter.cut(Infinity);
      await w.waitDisconnect(5000);
      const discAt = w.events.length;
      const missed = await sendN(d, 5);
      cutter.restore();
      await cutOver;
      const c = await nthConnect(w, 2);
      assertRecoveredConnect(w, c, { pid, discAt, offset: w.snapshot.seq, mustHave: missed.at(-1).seq, what });
      const live = await sendN(d, 2);
      await w.waitFor('location:updated', (e) => e.seq === live[1].seq);
      const stored = (await allEvents(server, { since: w.snapshot.seq })).events.filter((e) => e.seq <= live[1].seq);
      assertStreamIs(w, stored, what);
      for (const a of [...missed, ...live]) assert.ok(stored.some((e) => e.seq === a.seq), `acked ${a.seq}`);
      assert.equal(w.all('drivers:snapshot').length, 1, 'no second snapshot');
      assert.equal(w.all('sync:complete').length, 0);
    } finally {
      w.close();
      d.close();
    }
  });

  test('two cuts in a row (the pid of a recovered session recovers again): both recovered, every event once and in order', { timeout: 90_000 }, async (t) => {
    const what = 'two cuts';
    const load = await newLoad();
    const w = await officialWatcher(front.nsUrl, server.watcherToken(), ['websocket']);
    try {
      const pid = w.socket._pid;
      load.run();
      await load.more(100);
      await w.until(() => lastStreamSeq(w) !== null, 5000, 'live events');
      const replayed = [];
      for (let k = 1; k <= 2; k += 1) {
        const cutOver = cutter.cut(2000);
        await w.until(() => w.disconnects.length >= k, 5000, `disconnect #${k}`);
        const discAt = w.events.length;
        const offset = lastStreamSeq(w);
        await cutOver;
        const mustHave = load.maxAcked;
        const c = await nthConnect(w, k + 1);
        replayed.push(assertRecoveredConnect(w, c, { pid, discAt, offset, mustHave, what: `${what}, #${k}` }));
        await load.more(100);
      }
      await load.stop();
      await assertWholeWindow(server, w, load, what);
      t.diagnostic(`${load.acks.length} fixes acked; ${replayed.join(' and ')} events before the CONNECT replies`);
    } finally {
      await load.stop({ abandon: true });
      load.close();
      w.close();
    }
  });

  test('an offset beyond the head of this stream: a new pid, recovered false, drivers:snapshot, no replay', { timeout: 60_000 }, async () => {
    const d = await connectDriver(server);
    const token = server.watcherToken();
    const w = await officialWatcher(front.nsUrl, token, ['websocket']);
    try {
      const pid = w.socket._pid;
      const seen = await sendN(d, 2);
      await w.waitFor('location:updated', (e) => e.seq === seen[1].seq);
      const cutOver = cutter.cut(Infinity);
      await w.waitDisconnect(5000);
      const discAt = w.events.length;
      await sendN(d, 2);
      // The client sends { pid, offset } merged under its auth: an auth
      // offset (the documented `socket.auth`) stands for a store that went
      // back (e.g. restored from a copy) under the same pid.
      const beyond = String(seen[1].seq + 100_000);
      w.socket.auth = { token, offset: beyond };
      cutter.restore();
      await cutOver;
      const snap = await assertNotRecoveredConnect(w, pid, discAt);
      assert.equal(snap.streamId, w.snapshot.streamId);
      const [live] = await sendN(d, 1);
      await w.waitFor('location:updated', (e) => e.seq === live.seq);
      const streamAfter = streamEntries(w.events.slice(discAt));
      for (const e of streamAfter) assert.ok(e.data.seq > snap.seq, `no replayed event (${e.data.seq})`);
      assert.equal(w.all('sync:complete').length, 0);
    } finally {
      w.close();
      d.close();
    }
  });

  test('auth.lastSeq wins over { pid, offset }: after a cut the replay comes with sync:complete, not as a recovery', { timeout: 60_000 }, async () => {
    const what = 'lastSeq and pid';
    const load = await newLoad();
    // auth is a function returning { token, lastSeq, streamId }; the client adds pid and offset.
    const w = await connectResumingWatcher(front);
    try {
      const pid = w.socket._pid;
      assert.equal(typeof pid, 'string', 'a watcher gets a pid also with an auth function');
      load.run();
      await load.more(100);
      await w.until(() => lastStreamSeq(w) !== null, 5000, 'live events');
      const reconnected = new Promise((r) => w.socket.once('connect', r));

      const cutOver = cutter.cut(2000);
      await w.waitDisconnect(5000);
      const discAt = w.events.length;
      const L = w.resume.last;
      assert.equal(L, lastStreamSeq(w));
      assert.equal(w.socket._lastOffset, String(L));
      await cutOver;
      await withTimeout(reconnected, RECONNECT_MS, 'the reconnect');
      assert.equal(w.socket.recovered, false, 'lastSeq wins: the CONNECT reply does not carry the old pid');
      assert.equal(typeof w.socket._pid, 'string', 'a new pid');

      const done = await w.waitFor('sync:complete', () => true, 20_000);
      const afterCut = w.events.slice(discAt);
      const idx = afterCut.findIndex((e) => e.name === 'sync:complete');
      const replayed = afterCut.slice(0, idx);
      assert.deepEqual(replayed.filter((e) => !STREAM_EVENTS.has(e.name)).map((e) => e.name), [], 'only stream events before sync:complete');
      assert.ok(replayed.length > 0, 'events were missed during the cut');
      assert.equal(done.fromSeq, L);
      assert.equal(done.streamId, w.snapshot.streamId);
      assert.equal(done.replayed, replayed.length);
      assert.equal(done.toSeq, replayed.at(-1).data.seq);
      assertSeqList(replayed.map((e) => e.data.seq), Array.from({ length: done.toSeq - L }, (_, k) => L + 1 + k), `${what}: the replay`);

      await load.more(100);
      await load.stop();
      const stored = (await allEvents(server, { since: w.snapshot.seq })).events;
      const head = stored.at(-1).seq;
      await w.until(() => (lastStreamSeq(w) ?? 0) >= head, 20_000, `the watcher reaching seq ${head}`);
      await settle();
      assertStreamIs(w, stored, what);
      assert.equal(w.all('drivers:snapshot').length, 1, 'resumed, not re-snapshotted');
      assert.equal(w.all('sync:complete').length, 1);
    } finally {
      await load.stop({ abandon: true });
      load.close();
      w.close();
    }
  });

  async function refusedAfterCut(token, prepare, expectedMessage) {
    const d = await connectDriver(server);
    const w = await officialWatcher(front.nsUrl, token, ['websocket']);
    try {
      const seen = await sendN(d, 2);
      await w.waitFor('location:updated', (e) => e.seq === seen[1].seq);
      assert.equal(w.all('auth:expired').length, 0, 'precondition: the token is in force');
      const cutOver = cutter.cut(Infinity);
      await w.waitDisconnect(5000);
      const discAt = w.events.length;
      const pid = w.socket._pid;
      await prepare();
      await sendN(d, 3); // missed events, not for this token
      cutter.restore();
      await cutOver;
      await waitUntil(() => w.connectErrors.some((e) => AUTH_ERRORS.has(e.message)) || w.connects.length > 1,
        { timeoutMs: RECONNECT_MS, what: 'the reconnect\'s answer' });
      assert.equal(w.connects.length, 1, `the reconnect was accepted (recovered: ${w.socket.recovered})`);
      const err = w.connectErrors.find((e) => AUTH_ERRORS.has(e.message));
      assert.equal(err.message, expectedMessage);
      await settle(300);
      assert.notEqual(w.socket.recovered, true, 'never recovered');
      assert.equal(w.socket.connected, false);
      assert.equal(w.connects.length, 1);
      assert.deepEqual(w.events.slice(discAt).map((e) => e.name), [], 'nothing delivered after the cut');
      // socket.io-client holds events that come before a CONNECT reply; a
      // refusal must not be preceded by any (no replay for a refused token).
      assert.equal(w.socket.receiveBuffer.length, 0, 'no event sent ahead of the refusal');
      assert.equal(w.socket._pid, pid);
    } finally {
      w.close();
      d.close();
    }
  }

  test('a token revoked during the cut: the reconnect gets connect_error "Invalid token", never recovered', { timeout: 60_000 }, async () => {
    const token = server.watcherToken();
    await refusedAfterCut(token, async () => {
      const r = await revoke(server, { token });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.body.status, 'ok');
    }, 'Invalid token');
  });

  test('a token that expired during the cut: the reconnect gets connect_error "Token expired", never recovered', { timeout: 60_000 }, async () => {
    const exp = nowSeconds() + 4;
    const token = server.token({ id: uniqueName('usr'), email: 'exp@wecare.test', role: 'officer', exp });
    await refusedAfterCut(token, async () => {
      await waitUntil(() => Date.now() >= exp * 1000 + 200, { timeoutMs: 6000, what: 'the token\'s exp' });
    }, 'Token expired');
  });
});

describe('v1.3 §5 recovery across a SIGKILL and a restart on the same DATA_DIR', () => {
  let server;
  let cutter;
  const loads = [];
  before(async () => {
    server = await startServer();
    cutter = await startCutter(server.port); // the server comes back on the same port
  });
  after(async () => {
    await Promise.all(loads.map((l) => l.stop({ abandon: true })));
    closeAll();
    await cutter?.close();
    await server?.dispose();
  });

  /**
   * A watcher (official client) and ~200 fixes/s; `outage(ctx)` takes the
   * server down and brings it back; then the watcher must have recovered,
   * with every stored event once and in order, every acked fix among them.
   * ctx: { load, w, disc } → resolves { offset, discAt, mustHave }.
   */
  async function acrossRestart(t, what, url, transports, outage) {
    const load = await new FixLoad(server).connect();
    loads.push(load);
    const w = await officialWatcher(url, server.watcherToken(), transports);
    try {
      const pid = w.socket._pid;
      load.run();
      if (!transports) await waitUntil(() => w.transport === 'websocket', { what: 'the upgrade to websocket' });
      await load.more(200);
      await w.until(() => lastStreamSeq(w) !== null, 5000, 'live events');

      const o = await outage({ load, w });
      const c = await nthConnect(w, 2);
      let replayed = 0;
      if (o.mustHave > o.offset) {
        replayed = assertRecoveredConnect(w, c, { pid, ...o, what });
      } else {
        // The watcher had everything acked before it went: nothing is owed before the CONNECT reply.
        assert.equal(c.recovered, true, `${what}: socket.recovered`);
        assert.equal(c.pid, pid, `${what}: the same pid`);
      }
      await load.more(100); // the drivers are back and the watcher is live
      await load.stop();
      assert.ok(load.reconnects >= load.n, 'every driver reconnected');
      await assertWholeWindow(server, w, load, what);
      assert.equal(w.connects.length, 2, 'one reconnect');
      assert.equal(w.socket._pid, pid);
      t.diagnostic(`${load.acks.length} fixes acked (${load.unanswered} unanswered, resent); offset ${o.offset}, `
        + `acked before the kill up to ${o.ackedAtKill}, before the watcher came back up to ${o.mustHave}; `
        + `${replayed} events before the CONNECT reply; back ${c.t - o.discTime} ms after it went`);
    } finally {
      await load.stop({ abandon: true });
      load.close();
      w.close();
      if (!server.alive) await server.restart({ samePort: true });
    }
  }

  test('default transports, straight to the server: SIGKILL, ~1 s down, restart on the same port → recovered, every acked fix once and in order', { timeout: 90_000 }, async (t) => {
    await acrossRestart(t, 'SIGKILL', server.nsUrl, undefined, async ({ load, w }) => {
      await server.kill();
      const ackedAtKill = load.maxAcked; // acked ⇒ committed before the kill
      const disc = await w.waitDisconnect(5000);
      assert.ok(['transport close', 'transport error'].includes(disc.reason), `disconnect reason ${disc.reason}`);
      const discAt = w.events.length;
      const offset = lastStreamSeq(w);
      assert.equal(w.socket._lastOffset, String(offset));
      await delay(1000); // the server stays down for a moment
      await server.restart({ samePort: true });
      return { offset, discAt, mustHave: ackedAtKill, ackedAtKill, discTime: disc.at };
    });
  });

  // Through the cutter, so that the watcher surely misses events of both
  // processes: the line is cut 100 fixes before the kill and given back 200
  // fixes after the restart (the drivers are not behind the cut).
  for (const [name, transports] of VARIANTS) {
    test(`${name}: events missed before the SIGKILL and after the restart → recovered across both processes, every acked fix once and in order`, { timeout: 90_000 }, async (t) => {
      await acrossRestart(t, `SIGKILL, ${name}`, cutter.nsUrl, transports, async ({ load, w }) => {
        const cutOver = cutter.cut(Infinity);
        const disc = await w.waitDisconnect(5000);
        const discAt = w.events.length;
        const offset = lastStreamSeq(w);
        assert.equal(w.socket._lastOffset, String(offset));
        await load.more(100);
        await server.kill();
        const ackedAtKill = load.maxAcked;
        await delay(1000); // the server stays down for a moment
        await server.restart({ samePort: true });
        await load.more(200);
        cutter.restore();
        await cutOver;
        const mustHave = load.maxAcked;
        assert.ok(offset < ackedAtKill && ackedAtKill < mustHave, `missed ${offset} < ${ackedAtKill} < ${mustHave}`);
        return { offset, discAt, mustHave, ackedAtKill, discTime: disc.at };
      });
    });
  }
});

describe('v1.3 §5 not recovered: offset older than retention (RETENTION_HOURS=0.0003, about 1 s)', () => {
  let server;
  let cutter;
  before(async () => {
    server = await startServer({ env: { RETENTION_HOURS: '0.0003' } });
    cutter = await startCutter(server.port);
  });
  after(async () => {
    closeAll();
    await cutter?.close();
    await server?.dispose();
  });

  test('the events after the offset were pruned during the cut: a new pid, recovered false, drivers:snapshot, no replay', { timeout: 60_000 }, async () => {
    const d = await connectDriver(server);
    const w = await officialWatcher(cutter.nsUrl, server.watcherToken(), ['websocket']);
    try {
      const pid = w.socket._pid;
      const { offset, cutOver, discAt } = await receiveThenCut(cutter, d, w);
      const missed = await sendN(d, 3);
      // Until the events after the offset are pruned (oldest first): the
      // client's offset is then older than retention.
      await waitUntil(async () => {
        const r = await rest(server, 'GET', `/api/realtime/events?since=${offset}&limit=10`, { token: server.watcherToken() });
        return r.status === 200 && r.body.gap === true;
      }, { timeoutMs: 15_000, intervalMs: 200, what: 'retention to prune the events after the offset' });
      const lastFix = fix({ lat: 17.25, lng: 99.5 });
      const latest = await d.emitAck('location:update', lastFix);
      assertOk(latest, lastFix);
      cutter.restore();
      await cutOver;

      const snap = await assertNotRecoveredConnect(w, pid, discAt);
      assert.equal(snap.streamId, w.snapshot.streamId);
      assert.ok(snap.seq >= latest.seq, `snapshot as of ${snap.seq}, head ${latest.seq}`);
      assert.equal(snap.drivers.find((x) => x.driverId === d.driverId)?.lat, lastFix.lat, 'the snapshot has the latest position');
      const [live] = await sendN(d, 1);
      await w.waitFor('location:updated', (e) => e.seq === live.seq);
      const streamAfter = streamEntries(w.events.slice(discAt));
      for (const e of streamAfter) assert.ok(e.data.seq > snap.seq, `no replayed event (${e.data.seq})`);
      for (const a of missed) assert.ok(!streamAfter.some((e) => e.data.seq === a.seq), `pruned ${a.seq} not delivered`);
      const s = streamAfter.map((e) => e.data.seq);
      assertSeqList(s, Array.from({ length: s.length }, (_, k) => snap.seq + 1 + k), 'after the snapshot');
      assert.equal(w.all('sync:complete').length, 0);
    } finally {
      w.close();
      d.close();
    }
  });
});

describe('v1.3 §5 not recovered: the pid of another stream (restarted on a fresh store, same port)', () => {
  let first;
  let second;
  let cutter;
  before(async () => {
    first = await startServer();
    cutter = await startCutter(first.port);
  });
  after(async () => {
    closeAll();
    await cutter?.close();
    await second?.dispose();
    await first?.dispose();
  });

  test('a new store behind the same address: a new pid, recovered false, drivers:snapshot of the new stream, no replay', { timeout: 60_000 }, async () => {
    const d1 = await connectDriver(first);
    const w = await officialWatcher(cutter.nsUrl, first.watcherToken(), ['websocket']);
    let d2;
    try {
      const pid = w.socket._pid;
      const oldStream = w.snapshot.streamId;
      const { offset, cutOver, discAt } = await receiveThenCut(cutter, d1, w);
      d1.close();
      await first.kill();
      // A fresh DATA_DIR (or database): a new store, a new streamId.
      second = new Server({
        port: first.port,
        dataDir: tempDataDir(),
        secret: first.secret,
        env: first.env,
        ownsDataDir: true,
        database: pgAdminUrl ? createDatabase() : null,
      });
      await second.launch();
      // The new stream's head passes the client's offset, so only the stream tells them apart.
      d2 = await connectDriver(second);
      const acks = await sendN(d2, offset + 3);
      assert.ok(acks.at(-1).seq > offset, `new head ${acks.at(-1).seq} > offset ${offset}`);
      cutter.restore();
      await cutOver;

      const snap = await assertNotRecoveredConnect(w, pid, discAt);
      assert.notEqual(snap.streamId, oldStream, 'the new stream');
      assert.ok(snap.seq >= acks.at(-1).seq);
      assert.ok(snap.drivers.some((x) => x.driverId === d2.driverId));
      assert.ok(!snap.drivers.some((x) => x.driverId === d1.driverId), 'nothing of the old store');
      const [live] = await sendN(d2, 1);
      await w.waitFor('location:updated', (e) => e.seq === live.seq);
      const streamAfter = streamEntries(w.events.slice(discAt));
      for (const e of streamAfter) assert.ok(e.data.seq > snap.seq, `no replayed event (${e.data.seq})`);
      assert.equal(w.all('sync:complete').length, 0);
    } finally {
      w.close();
      d1.close();
      d2?.close();
    }
  });
});
