// Contract v1.3 §5, connection-state recovery for unchanged Socket.io clients,
// in Chromium: a page that uses the stock socket.io-client 4.8.3 directly
// (bundled with esbuild; no option but the URL and `auth: { token }`) watches
// the stream while five drivers (from node) send ~20 fixes/s in all, acked.
//  * the server is SIGKILLed and restarted on the same port and DATA_DIR;
//  * the page's own connection is cut (`socket.io.engine.close()`).
// Either way the client reconnects by itself with `{ pid, offset }`: the
// server sends the missed events, then the CONNECT reply with the same pid
// (`socket.recovered === true`), then live. The page then holds every stored
// event after its first `drivers:snapshot` once and in order (every acked fix
// among them), each with its seq string as last argument, and no second
// snapshot. The page is a document of the server's own origin with the bundle added.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Server, Driver, launchBrowser, makeFix, waitUntil, DEFAULT_WAIT_MS, bundleEntry } from './lib/harness.mjs';

const DOCUMENT = '/healthz';
const STREAM_EVENTS = ['location:updated', 'driver:status:updated', 'driver:presence'];
/** The stock client's reconnection backoff reaches 5 s (± 50 %): a reconnect may take that long. */
const RECONNECT_MS = 20_000;

// The page: socket.io-client as an app would use it. It records every event
// (name, seq, arguments), every connect (`recovered` and `_pid` at that
// moment, and how many events had been delivered: the client delivers the
// events that came before the CONNECT reply just before `connect`), every
// disconnect (with the client's offset) and connect_error.
const ENTRY = `
import { io } from 'socket.io-client';
const STREAM = new Set(${JSON.stringify(STREAM_EVENTS)});
const rec = { events: [], snapshots: [], syncCompletes: 0, others: [], connects: [], disconnects: [], connectErrors: [], upgrades: [] };
const lastSeq = () => (rec.events.length ? rec.events[rec.events.length - 1].seq : null);
window.__rec = {
  open(url, token) {
    const socket = io(url, { auth: { token } });
    window.__socket = socket;
    socket.onAny((name, ...args) => {
      if (STREAM.has(name)) {
        rec.events.push({ name, seq: args[0] && args[0].seq, nargs: args.length, last: args[args.length - 1] });
      } else if (name === 'drivers:snapshot') {
        rec.snapshots.push({ seq: args[0].seq, streamId: args[0].streamId, at: rec.events.length, lastArg: typeof args[args.length - 1] });
      } else if (name === 'sync:complete') {
        rec.syncCompletes += 1;
      } else {
        rec.others.push(name);
      }
    });
    socket.on('connect', () => rec.connects.push({
      at: rec.events.length, recovered: socket.recovered, pid: socket._pid,
      transport: socket.io.engine && socket.io.engine.transport && socket.io.engine.transport.name, t: Date.now(),
    }));
    socket.on('disconnect', (reason) => rec.disconnects.push({ reason, at: rec.events.length, offset: socket._lastOffset, lastSeq: lastSeq(), t: Date.now() }));
    socket.on('connect_error', (e) => rec.connectErrors.push({ message: e.message, t: Date.now() }));
    // Engine.IO: each new connection starts on polling and probes websocket.
    socket.io.on('open', () => {
      const engine = socket.io.engine;
      engine.on('upgrade', (tr) => rec.upgrades.push({ to: tr.name, t: Date.now() }));
      engine.on('upgradeError', (e) => rec.upgrades.push({ error: String(e && e.message), t: Date.now() }));
    });
  },
  cut() { window.__socket.io.engine.close(); },
  summary: () => ({
    events: rec.events.length, lastSeq: lastSeq(), snapshots: rec.snapshots.length, connects: rec.connects.slice(),
    disconnects: rec.disconnects.slice(), connectErrors: rec.connectErrors.length, offset: window.__socket._lastOffset,
    transport: window.__socket.io.engine && window.__socket.io.engine.transport && window.__socket.io.engine.transport.name,
    upgrades: rec.upgrades.slice(),
  }),
  all: () => rec,
};
`;

let server;
let browser;
let bundle;
const drivers = [];
const loads = [];

before(async () => {
  bundle = await bundleEntry(ENTRY, 'recovery-test-entry.js');
  server = await new Server().start();
  browser = await launchBrowser();
});

after(async () => {
  for (const l of loads) l.stopped = true;
  await Promise.allSettled(loads.map((l) => Promise.all(l.loops)));
  for (const d of drivers) d.close();
  await browser?.close();
  await server?.dispose();
});

/** A new tab with a watcher on the stock client, connected, with its first snapshot. */
async function openWatcher() {
  const page = await browser.context.newPage();
  page.logs = [];
  page.on('console', (m) => page.logs.push(`[${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => page.logs.push(`[pageerror] ${e.message}`));
  // A document the server itself serves (any will do): Chromium's Local
  // Network Access checks refuse a WebSocket to 127.0.0.1 from a document
  // playwright made up (route.fulfill; ERR_BLOCKED_BY_LOCAL_NETWORK_ACCESS_CHECKS),
  // which would keep the client on polling for good.
  await page.goto(`${server.url}${DOCUMENT}`, { waitUntil: 'load' });
  await page.addScriptTag({ content: bundle });
  await page.waitForFunction(() => !!window.__rec, null, { timeout: DEFAULT_WAIT_MS });
  await page.evaluate(([url, token]) => window.__rec.open(url, token), [`${server.url}/locations`, server.officerToken()]);
  page.summary = () => page.evaluate(() => window.__rec.summary());
  const s = await waitUntil(async () => {
    const x = await page.summary();
    return x.connects.length >= 1 && x.snapshots >= 1 ? x : null;
  }, { what: 'the watcher connected with its first drivers:snapshot' });
  const first = s.connects[0];
  assert.equal(first.recovered, false, 'a first connect is not a recovery');
  assert.equal(typeof first.pid, 'string', 'the CONNECT reply of a watcher carries pid');
  assert.ok(first.pid.length > 0, 'pid not empty');
  return page;
}

/** Wait for the page's n-th connect (fails at once on an auth refusal). */
async function nthConnect(page, n, timeoutMs = RECONNECT_MS) {
  let last;
  const s = await waitUntil(async () => {
    last = await page.summary();
    return last.connects.length >= n ? last : null;
  }, { timeoutMs, intervalMs: 50, what: () => `connect #${n} (have ${last?.connects.length}, ${last?.connectErrors} connect_error(s))` });
  return s.connects[n - 1];
}

/** Wait until the page's Engine.IO connection is on websocket (the stock client starts on polling and upgrades). */
async function onWebsocket(page, what) {
  let s;
  await waitUntil(async () => {
    s = await page.summary();
    return s.transport === 'websocket';
  }, { what: () => `${what}: the upgrade to websocket (on ${s?.transport}, upgrades ${JSON.stringify(s?.upgrades)})` });
}

/**
 * `n` drivers (harness Driver: socket.io-client over websocket from node),
 * each sending one fix every `intervalMs` while its socket is connected, one
 * in flight, waiting for the ack. Only acked fixes count (`acked`); a fix
 * without an ack (the server killed under it) is counted, not resent.
 */
class Load {
  constructor(prefix, { n = 5, intervalMs = 250 } = {}) {
    this.drivers = Array.from({ length: n }, (_, i) => new Driver(server, `${prefix}-${i + 1}`));
    drivers.push(...this.drivers);
    this.intervalMs = intervalMs;
    this.acked = [];
    this.unanswered = 0;
    this.stopped = false;
    this.loops = [];
    loads.push(this);
  }

  async start() {
    await Promise.all(this.drivers.map((d) => d.connected()));
    this.loops = this.drivers.map((d, k) => this.#loop(d, k));
    return this;
  }

  async #loop(d, k) {
    let i = 0;
    while (!this.stopped) {
      if (d.socket.connected) {
        i += 1;
        try {
          this.acked.push((await d.send(makeFix(d.driverId, 13.7 + k * 0.01 + i * 0.00001, 100.5))).seq);
        } catch {
          this.unanswered += 1;
        }
      }
      await new Promise((r) => setTimeout(r, this.intervalMs));
    }
  }

  /** Resolves once `n` more fixes than now have been acked. */
  more(n, timeoutMs = 20_000) {
    const target = this.acked.length + n;
    return waitUntil(() => this.acked.length >= target, { timeoutMs, what: () => `${n} more acked fixes (have ${this.acked.length} of ${target})` });
  }

  async stop() {
    this.stopped = true;
    await Promise.all(this.loops);
  }

  close() {
    for (const d of this.drivers) d.close();
  }
}

/** Compare seq lists; on a difference say how (count, first difference, duplicates, missing, unexpected). */
function assertSeqList(got, want, what) {
  if (got.length === want.length && got.every((s, i) => s === want[i])) return;
  const count = new Map();
  for (const s of got) count.set(s, (count.get(s) ?? 0) + 1);
  const dups = [...count].filter(([, c]) => c > 1).map(([s]) => s);
  const wanted = new Set(want);
  const missing = want.filter((s) => !count.has(s));
  const unexpected = [...count.keys()].filter((s) => !wanted.has(s));
  let i = 0;
  while (i < got.length && got[i] === want[i]) i += 1;
  assert.fail(`${what}: received ${got.length}, expected ${want.length} (seq ${want[0]}..${want.at(-1)}); `
    + `first difference at #${i}: got [${got.slice(Math.max(0, i - 2), i + 5)}] want [${want.slice(Math.max(0, i - 2), i + 5)}]; `
    + `duplicates (${dups.length}) [${dups.slice(0, 20)}]; missing (${missing.length}) [${missing.slice(0, 20)}]; `
    + `unexpected (${unexpected.length}) [${unexpected.slice(0, 20)}]`);
}

/**
 * The reconnect recovered: `recovered === true`, the same pid, and events
 * were delivered before its `connect` (sent before the CONNECT reply),
 * starting right after the offset the client held.
 */
function assertRecovered(rec, n, what) {
  const c = rec.connects[n - 1];
  const disc = rec.disconnects[n - 2];
  assert.equal(c.recovered, true, `${what}: socket.recovered on the reconnect (pid ${rec.connects[0].pid} → ${c.pid})`);
  assert.equal(c.pid, rec.connects[0].pid, `${what}: the CONNECT reply carries the same pid`);
  assert.equal(disc.offset, disc.lastSeq === null ? undefined : String(disc.lastSeq), `${what}: the client's offset is the last seq it got`);
  const replayed = rec.events.slice(disc.at, c.at);
  assert.ok(replayed.length > 0, `${what}: the events missed while away came before the CONNECT reply`);
  assert.equal(replayed[0].seq, disc.lastSeq + 1, `${what}: the first event after the reconnect follows the offset ${disc.offset}`);
  return replayed.length;
}

/**
 * The drivers send 40 more (the page live again) and stop; then the page's
 * whole window is checked, it recovered on its one reconnect, and its
 * record, transport and replayed count are returned.
 */
async function finishRecovered(page, load, what) {
  await load.more(40);
  await load.stop();
  const rec = await assertWholeWindow(page, load, what);
  const transport = (await page.summary()).transport;
  const replayed = assertRecovered(rec, 2, what);
  assert.equal(rec.connects.length, 2, `${what}: one reconnect`);
  return { rec, transport, replayed };
}

/**
 * After the load stopped: the page holds exactly the stored stream after its
 * first snapshot (once, in order, each with its seq string as last argument),
 * every acked fix among it, one drivers:snapshot in all, no sync:complete.
 */
async function assertWholeWindow(page, load, what) {
  const snapSeq = (await page.evaluate(() => window.__rec.all().snapshots[0].seq));
  const stored = (await server.allEvents()).filter((e) => e.seq > snapSeq);
  assert.ok(stored.length > 0, `${what}: events were stored`);
  const head = stored.at(-1).seq;
  let s;
  await waitUntil(async () => {
    s = await page.summary();
    return (s.lastSeq ?? 0) >= head;
  }, { timeoutMs: 20_000, what: () => `${what}: the page reaching seq ${head} (has ${s?.lastSeq})` });
  await new Promise((r) => setTimeout(r, 500)); // absence: nothing more may follow
  const rec = await page.evaluate(() => window.__rec.all());

  assertSeqList(rec.events.map((e) => e.seq), stored.map((e) => e.seq), `${what}: stream events received vs stored`);
  for (const [i, e] of rec.events.entries()) {
    assert.equal(e.name, stored[i].type, `${what}: event seq ${e.seq} is a ${stored[i].type}`);
    assert.equal(e.nargs, 2, `${what}: ${e.name} seq ${e.seq} has ${e.nargs} argument(s), expected payload + seq string`);
    assert.equal(e.last, String(e.seq), `${what}: last argument of ${e.name} seq ${e.seq}`);
  }
  const locations = rec.events.filter((e) => e.name === 'location:updated').map((e) => e.seq);
  assert.ok(locations.every((q, i) => i === 0 || q > locations[i - 1]), `${what}: location:updated seqs increasing`);
  const got = new Set(locations);
  const acked = load.acked.filter((q) => q > snapSeq);
  assert.equal(acked.length, load.acked.length, `${what}: every fix acked after the page's snapshot`);
  assert.deepEqual(acked.filter((q) => !got.has(q)), [], `${what}: acked fixes never received`);
  assert.equal(rec.snapshots.length, 1, `${what}: one drivers:snapshot in all (the first connect's): ${JSON.stringify(rec.snapshots)}`);
  assert.equal(rec.snapshots[0].at, 0, `${what}: the snapshot came before any stream event`);
  assert.notEqual(rec.snapshots[0].lastArg, 'string', `${what}: drivers:snapshot does not end with a string (the client would take it for an offset)`);
  assert.equal(rec.syncCompletes, 0, `${what}: no sync:complete on a recovery`);
  return rec;
}

test('the stock socket.io-client in Chromium recovers across a server SIGKILL and restart: recovered, every event once and in order, no second snapshot', { timeout: 120_000 }, async (t) => {
  const what = 'SIGKILL';
  const page = await openWatcher();
  const load = await new Load('amb-rec-kill').start();
  try {
    await load.more(60); // ~3 s of fixes
    await waitUntil(async () => (await page.summary()).lastSeq !== null, { what: 'live events on the page' });
    await onWebsocket(page, what);

    await server.kill();
    await waitUntil(async () => (await page.summary()).disconnects.length >= 1, { what: 'the page\'s disconnect' });
    // Down long enough for the page to try, and fail, at least once.
    await waitUntil(async () => (await page.summary()).connectErrors >= 1, { what: 'a failed reconnect attempt while the server is down' });
    const ackedBefore = load.acked.length;
    await server.start(); // same port, same DATA_DIR
    // Drivers keep sending once back; the page comes back by itself.
    await load.more(40);
    const c = await nthConnect(page, 2);
    await onWebsocket(page, `${what}, after the reconnect`);
    const { rec, transport, replayed } = await finishRecovered(page, load, what);
    assert.ok(load.acked.length - ackedBefore >= 80, `${what}: fixes acked after the restart`);
    assert.deepEqual(page.logs.filter((l) => l.startsWith('[pageerror]')), []);
    t.diagnostic(`${load.acked.length} fixes acked (${load.unanswered} unanswered at the kill); disconnect "${rec.disconnects[0].reason}" at offset ${rec.disconnects[0].offset}; `
      + `back by ${c.transport} ${c.t - rec.disconnects[0].t} ms after the disconnect (now on ${transport}), ${rec.connectErrors.length} connect_error(s) meanwhile `
      + `(${[...new Set(rec.connectErrors.map((e) => e.message))].join(', ')}); ${replayed} events before the CONNECT reply; ${rec.events.length} stream events in all; engine upgrades ${JSON.stringify(rec.upgrades.map((u) => ({ ...u, t: u.t - rec.connects[0].t })))}; other events ${JSON.stringify(rec.others)}`);
  } finally {
    await load.stop();
    load.close();
    await page.close();
  }
});

test('the stock socket.io-client in Chromium recovers after its connection is cut (engine closed): recovered, every event once and in order, no second snapshot', { timeout: 120_000 }, async (t) => {
  const what = 'cut';
  const page = await openWatcher();
  const load = await new Load('amb-rec-cut').start();
  try {
    await load.more(60);
    await waitUntil(async () => (await page.summary()).lastSeq !== null, { what: 'live events on the page' });
    await onWebsocket(page, what);

    await page.evaluate(() => window.__rec.cut());
    await waitUntil(async () => (await page.summary()).disconnects.length >= 1, { what: 'the page\'s disconnect' });
    const c = await nthConnect(page, 2);
    await onWebsocket(page, `${what}, after the reconnect`);
    const { rec, transport, replayed } = await finishRecovered(page, load, what);
    assert.equal(load.unanswered, 0, `${what}: every fix answered (the drivers were not cut)`);
    assert.equal(rec.connectErrors.length, 0, `${what}: no connect_error (the server was up): ${JSON.stringify(rec.connectErrors)}`);
    assert.deepEqual(page.logs.filter((l) => l.startsWith('[pageerror]')), []);
    t.diagnostic(`${load.acked.length} fixes acked; disconnect "${rec.disconnects[0].reason}" at offset ${rec.disconnects[0].offset}; `
      + `back by ${c.transport} ${c.t - rec.disconnects[0].t} ms after the cut (now on ${transport}); ${replayed} events before the CONNECT reply; ${rec.events.length} stream events in all; engine upgrades ${JSON.stringify(rec.upgrades.map((u) => ({ ...u, t: u.t - rec.connects[0].t })))}; other events ${JSON.stringify(rec.others)}`);
  } finally {
    await load.stop();
    load.close();
    await page.close();
  }
});
