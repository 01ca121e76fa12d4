// Contract §5 — the durable event stream and recovery: resume with
// auth.lastSeq/streamId, sync:complete, events:sync, durability across
// SIGKILL + restart on the same DATA_DIR, new streamId for a new store,
// retention.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { io } from 'socket.io-client';
import { startServer } from '../lib/server.mjs';
import {
  Peer, connectDriver, connectWatcher, closeAll, fix, isoAgo, rest, settle, waitUntil, STREAM_EVENTS, assertOk,
} from '../lib/client.mjs';

/** Stream events a peer received before its sync:complete, and the sync:complete itself. */
function replayOf(peer) {
  const idx = peer.events.findIndex((e) => e.name === 'sync:complete');
  assert.ok(idx >= 0, 'sync:complete received');
  const before = peer.events.slice(0, idx);
  return {
    replayed: before.filter((e) => STREAM_EVENTS.has(e.name)).map((e) => ({ type: e.name, ...e.data })),
    others: before.filter((e) => !STREAM_EVENTS.has(e.name)).map((e) => e.name),
    done: peer.events[idx].data,
  };
}

const seqs = (list) => list.map((e) => e.seq);

function assertStrictlyIncreasing(list, what) {
  for (let i = 1; i < list.length; i += 1) {
    assert.ok(list[i].seq > list[i - 1].seq, `${what}: seq ${list[i - 1].seq} then ${list[i].seq} at #${i}`);
  }
}

async function sendN(driver, n, extra = {}) {
  const acks = [];
  for (let i = 0; i < n; i += 1) {
    const f = fix(extra);
    const a = await driver.emitAck('location:update', f);
    assertOk(a, f);
    acks.push(a);
  }
  return acks;
}

describe('§5 resume and events:sync', () => {
  let server;
  let ref; // a watcher connected for the whole file: the reference stream
  let driver;

  before(async () => {
    server = await startServer();
    ref = await connectWatcher(server);
    driver = await connectDriver(server);
  });
  after(async () => {
    closeAll();
    await server?.dispose();
  });

  const lastRefSeq = () => ref.stream().at(-1)?.seq ?? ref.snapshot.seq;

  test('resume with lastSeq + streamId replays exactly the missed events in order, then sync:complete, then live', async () => {
    const w1 = await connectWatcher(server);
    const streamId = w1.snapshot.streamId;
    const seen = await sendN(driver, 3);
    await w1.waitFor('location:updated', (e) => e.seq === seen[2].seq);
    const L = seen[1].seq; // the client processed up to here
    w1.close();

    const missed = await sendN(driver, 4);
    assert.equal((await driver.emitAck('driver:status', { status: 'busy' })).status, 'ok');
    missed.push(...(await sendN(driver, 1)));
    await ref.waitFor('location:updated', (e) => e.seq === missed.at(-1).seq);

    const w2 = await connectWatcher(server, { lastSeq: L, streamId });
    await w2.waitFor('sync:complete');
    const { replayed, others, done } = replayOf(w2);
    assert.deepEqual(others, [], 'nothing but stream events before sync:complete');
    const expected = ref.stream().filter((e) => e.seq > L && e.seq <= done.toSeq);
    assert.deepEqual(seqs(replayed), seqs(expected), 'replay = every event after lastSeq, in order');
    assert.deepEqual(replayed, expected, 'replayed events are the ordinary events');
    for (const a of [seen[2], ...missed]) assert.ok(replayed.some((e) => e.seq === a.seq), `acked seq ${a.seq} replayed`);
    assert.equal(done.streamId, streamId);
    assert.equal(done.fromSeq, L);
    assert.equal(done.toSeq, replayed.at(-1).seq);
    assert.equal(done.replayed, replayed.length);

    const live = await sendN(driver, 2);
    await w2.waitFor('location:updated', (e) => e.seq === live[1].seq);
    await ref.waitFor('location:updated', (e) => e.seq === live[1].seq);
    assertStrictlyIncreasing(w2.stream(), 'resumed watcher');
    assert.deepEqual(seqs(w2.stream()), seqs(ref.stream().filter((e) => e.seq > L && e.seq <= live[1].seq)), 'no gap, no duplicate');
    assert.equal(w2.all('drivers:snapshot').length, 0, 'no snapshot on a successful resume');
    assert.equal(w2.all('sync:complete').length, 1);
    w2.close();
  });

  test('resume with lastSeq only (no streamId) also replays', async () => {
    const L = lastRefSeq();
    const missed = await sendN(driver, 2);
    await ref.waitFor('location:updated', (e) => e.seq === missed[1].seq);
    const w = await connectWatcher(server, { lastSeq: L });
    const done = await w.waitFor('sync:complete');
    const { replayed } = replayOf(w);
    assert.deepEqual(seqs(replayed), seqs(ref.stream().filter((e) => e.seq > L && e.seq <= done.toSeq)));
    for (const a of missed) assert.ok(replayed.some((e) => e.seq === a.seq), `missed ${a.seq} replayed`);
    assert.equal(done.fromSeq, L);
    assert.equal(w.all('drivers:snapshot').length, 0);
    w.close();
  });

  test('resume at the head: sync:complete {fromSeq = toSeq = lastSeq, replayed: 0}, then live', async () => {
    const [a] = await sendN(driver, 1);
    await ref.waitFor('location:updated', (e) => e.seq === a.seq);
    const L = lastRefSeq();
    const w = await connectWatcher(server, { lastSeq: L, streamId: ref.snapshot.streamId });
    const done = await w.waitFor('sync:complete');
    assert.deepEqual(replayOf(w).replayed, []);
    assert.equal(done.fromSeq, L);
    assert.equal(done.toSeq, L);
    assert.equal(done.replayed, 0);
    assert.equal(done.streamId, ref.snapshot.streamId);
    const [b] = await sendN(driver, 1);
    const ev = await w.waitFor('location:updated', (e) => e.seq === b.seq);
    assert.ok(ev.seq > L);
    w.close();
  });

  test('no gap and no duplicate when events keep flowing during the resume', async () => {
    const L = lastRefSeq();
    const streamId = ref.snapshot.streamId;
    const flooders = await Promise.all([1, 2].map(() => connectDriver(server)));
    let stop = false;
    const acked = [];
    const flood = Promise.all(flooders.map(async (d) => {
      for (let i = 0; i < 150 && !stop; i += 1) {
        const a = await d.emitAck('location:update', fix());
        assertOk(a);
        acked.push(a.seq);
      }
    }));
    await waitUntil(() => acked.length >= 10, { what: 'flood started' });
    const resumers = [];
    for (let k = 0; k < 4; k += 1) {
      resumers.push(await connectWatcher(server, { lastSeq: L, streamId }));
      await waitUntil(() => acked.length >= 10 + (k + 1) * 15, { what: 'more flood', timeoutMs: 10_000 });
    }
    await Promise.all(resumers.map((w) => w.waitFor('sync:complete', () => true, 10_000)));
    stop = true;
    await flood;
    const final = await sendN(driver, 1);
    const end = final[0].seq;
    await ref.waitFor('location:updated', (e) => e.seq === end, 10_000);
    const expected = seqs(ref.stream().filter((e) => e.seq > L && e.seq <= end));
    for (const [k, w] of resumers.entries()) {
      await w.waitFor('location:updated', (e) => e.seq === end, 10_000);
      assert.deepEqual(seqs(w.stream()), expected, `resumer ${k}: replay + live = the reference stream`);
      const { done } = replayOf(w);
      assert.equal(done.fromSeq, L);
      assert.equal(done.toSeq, replayOf(w).replayed.at(-1)?.seq ?? L);
      w.close();
    }
    flooders.forEach((d) => d.close());
  });

  test('lastSeq with a different streamId → drivers:snapshot, no replay', async () => {
    await sendN(driver, 2);
    const w = await connectWatcher(server, { lastSeq: 1, streamId: `${ref.snapshot.streamId}-other`, waitSnapshot: true });
    assert.equal(w.events[0].name, 'drivers:snapshot');
    assert.equal(w.snapshot.streamId, ref.snapshot.streamId);
    const [a] = await sendN(driver, 1);
    await w.waitFor('location:updated', (e) => e.seq === a.seq);
    for (const e of w.stream()) assert.ok(e.seq > w.snapshot.seq, `no replayed event (${e.seq})`);
    assert.equal(w.all('sync:complete').length, 0, 'sync:complete never follows a snapshot');
    w.close();
  });

  test('lastSeq beyond the head → drivers:snapshot', async () => {
    const w = await connectWatcher(server, { lastSeq: lastRefSeq() + 10_000, streamId: ref.snapshot.streamId, waitSnapshot: true });
    assert.equal(w.events[0].name, 'drivers:snapshot');
    const [a] = await sendN(driver, 1);
    await w.waitFor('location:updated', (e) => e.seq === a.seq);
    assert.equal(w.all('sync:complete').length, 0);
    w.close();
  });

  test('a page whose since is beyond the head or of another stream starts from the beginning with gap: true, at once', async () => {
    // The socket's rule (lastSeq beyond the head / another streamId → snapshot) for pages.
    await sendN(driver, 3);
    const w = await connectWatcher(server);
    const cases = [
      { since: lastRefSeq() + 10_000, limit: 3, streamId: ref.snapshot.streamId },
      { since: lastRefSeq() + 10_000, limit: 3 },
      { since: 1, limit: 3, streamId: `${ref.snapshot.streamId}-other` },
    ];
    for (const c of cases) {
      const page = await w.emitAck('events:sync', c);
      assert.equal(page.status, 'ok', JSON.stringify(page));
      assert.equal(page.gap, true, JSON.stringify(c));
      assert.deepEqual(seqs(page.events), [1, 2, 3], 'from the first event of this stream');
    }
    // A long-poll does not wait out waitMs to say so.
    const started = Date.now();
    const r = await rest(server, 'GET', `/api/realtime/events?since=${lastRefSeq() + 10_000}&limit=3&waitMs=20000`, {
      token: w.token, timeoutMs: 25_000,
    });
    assert.equal(r.status, 200);
    assert.equal(r.body.gap, true);
    assert.ok(Date.now() - started < 10_000, `answered after ${Date.now() - started} ms`);
    w.close();
  });

  test('events:sync {since, limit} → {status, streamId, events:[{type, ...}], lastSeq, gap}; pages join up', async () => {
    const since = lastRefSeq();
    const acks = await sendN(driver, 5);
    assert.equal((await driver.emitAck('driver:status', { status: 'ON_DUTY' })).status, 'ok');
    const last = await sendN(driver, 1);
    await ref.waitFor('location:updated', (e) => e.seq === last[0].seq);
    const w = await connectWatcher(server);

    const all = await w.emitAck('events:sync', { since, limit: 100 });
    assert.equal(all.status, 'ok', JSON.stringify(all));
    assert.equal(all.streamId, ref.snapshot.streamId);
    assert.equal(all.gap, false);
    assert.ok(Array.isArray(all.events));
    const expected = ref.stream().filter((e) => e.seq > since && e.seq <= last[0].seq);
    assert.deepEqual(all.events.filter((e) => e.seq <= last[0].seq), expected, 'same events as live, with type');
    for (const a of acks) assert.ok(all.events.some((e) => e.seq === a.seq && e.type === 'location:updated'));
    assert.ok(all.events.some((e) => e.type === 'driver:status:updated' && e.status === 'ON_DUTY'));
    assert.ok(all.lastSeq >= all.events.at(-1).seq);

    // paging with limit 2
    const paged = [];
    let cursor = since;
    for (let i = 0; i < 50; i += 1) {
      const page = await w.emitAck('events:sync', { since: cursor, limit: 2 });
      assert.equal(page.status, 'ok');
      assert.ok(page.events.length <= 2);
      if (page.events.length === 0) break;
      assertStrictlyIncreasing(page.events, 'page');
      assert.ok(page.events[0].seq > cursor);
      paged.push(...page.events);
      cursor = page.events.at(-1).seq;
    }
    assert.deepEqual(seqs(paged).filter((s) => s <= last[0].seq), seqs(expected));

    const atHead = await w.emitAck('events:sync', { since: w.snapshot.seq, limit: 10 });
    assert.equal(atHead.status, 'ok');
    assert.deepEqual(atHead.events.filter((e) => e.type !== 'driver:presence'), []);
    assert.equal(atHead.gap, false);
    w.close();
  });

  test('events:sync: default limit 500, max 1000', async () => {
    const since = lastRefSeq();
    for (let b = 0; b < 2; b += 1) {
      const updates = Array.from({ length: 1000 }, (_, i) => fix({ recordedAt: isoAgo((1000 - i) * 100) }));
      const r = await driver.emitAckWithin(20_000, 'location:batch', { updates });
      assert.equal(r.status, 'ok');
    }
    const w = await connectWatcher(server);
    const dflt = await w.emitAck('events:sync', { since });
    assert.equal(dflt.status, 'ok');
    assert.equal(dflt.events.length, 500);
    const big = await w.emitAck('events:sync', { since, limit: 5000 });
    assert.equal(big.status, 'ok', JSON.stringify(big).slice(0, 300));
    assert.equal(big.events.length, 1000);
    assertStrictlyIncreasing(big.events, 'events:sync');
    assert.equal(big.events[0].seq, ref.stream().find((e) => e.seq > since).seq);
    w.close();
  });
});

describe('§5 durability across SIGKILL and restart (same DATA_DIR)', () => {
  let server;
  let streamId;
  const preKill = []; // stream events seen before each kill

  before(async () => { server = await startServer(); });
  after(async () => {
    closeAll();
    await server?.dispose();
  });

  test('SIGKILL right after an ack: the event is replayed after restart, streamId unchanged, seq keeps increasing, dedup survives', async () => {
    const w = await connectWatcher(server);
    streamId = w.snapshot.streamId;
    const d = await connectDriver(server);
    const warm = await sendN(d, 3);
    const f = fix({ lat: 16.5, lng: 102.8 });
    const ack = await new Promise((resolve) => {
      d.socket.emit('location:update', f, (a) => { server.killNow(); resolve(a); });
    });
    assertOk(ack, f);
    await server.waitExit();
    preKill.push(...w.stream());
    const maxSeen = Math.max(ack.seq, ...preKill.map((e) => e.seq));
    w.close();
    d.close();

    await server.restart();
    const w2 = await connectWatcher(server, { lastSeq: warm[2].seq, streamId });
    const done = await w2.waitFor('sync:complete');
    const { replayed } = replayOf(w2);
    const again = replayed.find((e) => e.type === 'location:updated' && e.id === f.id);
    assert.ok(again, 'the acked event survived SIGKILL');
    assert.equal(again.seq, ack.seq);
    assert.equal(again.lat, f.lat);
    assert.equal(done.streamId, streamId, 'streamId unchanged across restart');

    const w3 = await connectWatcher(server);
    assert.equal(w3.snapshot.streamId, streamId);
    const me = w3.snapshot.drivers.find((x) => x.driverId === d.driverId);
    assert.equal(me?.lat, f.lat, 'latest position survived');

    const d2 = await connectDriver(server, { driverId: d.driverId, email: d.email });
    const dup = await d2.emitAck('location:update', f);
    assert.equal(dup.status, 'ok');
    assert.equal(dup.duplicate, true, 'dedup survives a restart');
    assert.equal(dup.seq, ack.seq);
    const next = await d2.emitAck('location:update', fix());
    assertOk(next);
    assert.ok(next.seq > maxSeen, `next seq ${next.seq} > every seq before the kill (${maxSeen})`);
    await w3.waitFor('location:updated', (e) => e.seq === next.seq);
    w2.close();
    w3.close();
    d2.close();
  });

  test('a burst acked just before SIGKILL is fully there after restart', async () => {
    const w = await connectWatcher(server);
    const d = await connectDriver(server);
    const start = w.snapshot.seq;
    const fixes = Array.from({ length: 40 }, () => fix());
    const acks = await new Promise((resolve) => {
      const got = [];
      for (const f of fixes) {
        d.socket.emit('location:update', f, (a) => {
          got.push(a);
          if (got.length === fixes.length) { server.killNow(); resolve(got); }
        });
      }
    });
    assert.ok(acks.every((a) => a.status === 'ok'), JSON.stringify(acks.find((a) => a.status !== 'ok')));
    await server.waitExit();
    w.close();
    d.close();
    await server.restart();
    const r = await rest(server, 'GET', `/api/realtime/events?since=${start}&limit=1000`, { token: server.watcherToken() });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body.streamId, streamId);
    const ids = new Set(r.body.events.filter((e) => e.type === 'location:updated').map((e) => e.id));
    for (const f of fixes) assert.ok(ids.has(f.id), `acked ${f.id} lost`);
  });

  test('resume with a lastSeq from before a restart: no gap, no duplicate', async () => {
    const w = await connectWatcher(server);
    const d = await connectDriver(server);
    const before1 = await sendN(d, 3);
    await w.waitFor('location:updated', (e) => e.seq === before1[2].seq);
    const L = before1[0].seq;
    const missedBeforeKill = await sendN(d, 3);
    await w.waitFor('location:updated', (e) => e.seq === missedBeforeKill[2].seq);
    const seenBeforeKill = w.stream().filter((e) => e.seq > L);
    await server.kill();
    w.close();
    d.close();

    await server.restart();
    const d2 = await connectDriver(server, { driverId: d.driverId });
    const afterRestart = await sendN(d2, 2);
    const w2 = await connectWatcher(server, { lastSeq: L, streamId });
    const done = await w2.waitFor('sync:complete');
    const live = await sendN(d2, 2);
    await w2.waitFor('location:updated', (e) => e.seq === live[1].seq);

    const got = w2.stream();
    assertStrictlyIncreasing(got, 'resumed across restart');
    assert.equal(done.streamId, streamId);
    assert.equal(done.fromSeq, L);
    // every location event seen before the kill is replayed identically
    for (const e of seenBeforeKill.filter((x) => x.type === 'location:updated')) {
      assert.deepEqual(got.find((x) => x.seq === e.seq), e, `pre-kill event ${e.seq}`);
    }
    for (const a of [...before1.slice(1), ...missedBeforeKill, ...afterRestart, ...live]) {
      assert.ok(got.some((x) => x.seq === a.seq), `acked seq ${a.seq} delivered`);
    }
    // and the same as what the store itself reports
    const r = await w2.emitAck('events:sync', { since: L, limit: 1000 });
    assert.deepEqual(seqs(r.events.filter((e) => e.seq <= live[1].seq)), seqs(got));
    w2.close();
    d2.close();
  });

  test('a fresh DATA_DIR gets a new streamId and seq starts at 1; an old lastSeq/streamId there gets a snapshot', async () => {
    const other = await startServer();
    try {
      const w = await connectWatcher(other);
      assert.equal(typeof w.snapshot.streamId, 'string');
      assert.notEqual(w.snapshot.streamId, streamId);
      assert.equal(w.snapshot.seq, 0, 'empty store');
      assert.deepEqual(w.snapshot.drivers, []);
      const r = await connectWatcher(other, { lastSeq: 5, streamId, waitSnapshot: true });
      assert.equal(r.events[0].name, 'drivers:snapshot');
      const d = await connectDriver(other);
      const [a] = await sendN(d, 1);
      await r.waitFor('location:updated', (e) => e.seq === a.seq);
      await w.waitFor('location:updated', (e) => e.seq === a.seq);
      assert.equal(w.stream()[0].seq, 1, 'the first event of a new stream has seq 1');
      assert.equal(r.all('sync:complete').length, 0);
      w.close();
      r.close();
      d.close();
    } finally {
      await other.dispose();
    }
  });
});

describe('§2/§5 graceful restart: the stock client recovers on its own', () => {
  let server;
  before(async () => { server = await startServer(); });
  after(async () => {
    closeAll();
    await server?.dispose();
  });

  test('SIGTERM closes the transport (not "io server disconnect"); the stock client reconnects by itself and resumes with lastSeq, no gap/dup', async () => {
    const token = server.watcherToken();
    let last = null;
    let sid = null;
    // stock reconnection settings; auth as a function so every reconnect carries the last processed seq
    const socket = io(server.nsUrl, {
      forceNew: true,
      transports: ['websocket'],
      auth: (cb) => cb(last === null ? { token } : { token, lastSeq: last, streamId: sid }),
    });
    const w = new Peer(socket);
    socket.on('drivers:snapshot', (snap) => { sid = snap.streamId; last = snap.seq; });
    for (const name of STREAM_EVENTS) socket.on(name, (e) => { last = e.seq; });
    const snap = await w.waitFor('drivers:snapshot');

    const d = await connectDriver(server);
    const before1 = await sendN(d, 3);
    await w.waitFor('location:updated', (e) => e.seq === before1[2].seq);
    d.close();

    await server.stop();
    const disc = await w.waitDisconnect();
    assert.ok(['transport close', 'transport error'].includes(disc.reason), `disconnect reason ${disc.reason}`);

    await server.restart({ samePort: true });
    const d2 = await connectDriver(server, { driverId: d.driverId });
    const after1 = await sendN(d2, 2);
    const done = await w.waitFor('sync:complete', () => true, 15_000);
    assert.equal(done.streamId, snap.streamId);
    const live = await sendN(d2, 1);
    await w.waitFor('location:updated', (e) => e.seq === live[0].seq);

    const got = w.stream();
    assertStrictlyIncreasing(got, 'across the restart');
    for (const a of [...before1, ...after1, ...live]) assert.ok(got.some((e) => e.seq === a.seq), `acked ${a.seq} delivered`);
    const r = await rest(server, 'GET', `/api/realtime/events?since=${snap.seq}&limit=1000`, { token });
    assert.deepEqual(seqs(got), seqs(r.body.events.filter((e) => e.seq <= live[0].seq)), 'exactly the stream, once');
    assert.equal(w.all('drivers:snapshot').length, 1, 'resumed, not re-snapshotted');
    w.close();
    d2.close();
  });
});

describe('§5 retention (RETENTION_HOURS fractional)', () => {
  let server;
  before(async () => { server = await startServer({ env: { RETENTION_HOURS: '0.0003' } }); });
  after(async () => {
    closeAll();
    await server?.dispose();
  });

  test('after old events are pruned: events:sync since 0 reports gap:true, an old lastSeq gets a snapshot, latest positions are kept', async () => {
    const w = await connectWatcher(server);
    const streamId = w.snapshot.streamId;
    const d = await connectDriver(server);
    const acks = await sendN(d, 3);
    const lastFix = fix({ lat: 17.25, lng: 99.5 });
    const last = await d.emitAck('location:update', lastFix);
    assertOk(last, lastFix);
    w.close();

    // Until events after acks[0] are pruned too (retention removes the
    // oldest first, not necessarily all four at once): only then is
    // acks[0].seq a position older than retention.
    const pruned = await waitUntil(async () => {
      const r = await rest(server, 'GET', `/api/realtime/events?since=${acks[0].seq}&limit=10`, { token: server.watcherToken() });
      return r.status === 200 && r.body.gap === true ? r.body : null;
    }, { timeoutMs: 15_000, intervalMs: 200, what: 'retention to prune (gap:true)' });
    assert.equal(pruned.streamId, streamId);

    const w1 = await connectWatcher(server);
    const sync = await w1.emitAck('events:sync', { since: 0, limit: 10 });
    assert.equal(sync.status, 'ok');
    assert.equal(sync.gap, true);
    assert.ok(!sync.events.some((e) => e.seq === acks[0].seq), 'pruned event not returned');
    const head = await w1.emitAck('events:sync', { since: w1.snapshot.seq, limit: 10 });
    assert.equal(head.gap, false, 'nothing dropped after the head');
    // latest positions are kept forever
    const me = w1.snapshot.drivers.find((x) => x.driverId === d.driverId);
    assert.equal(me?.lat, lastFix.lat);
    w1.close();

    const r = await connectWatcher(server, { lastSeq: acks[0].seq, streamId, waitSnapshot: true });
    assert.equal(r.events[0].name, 'drivers:snapshot', 'lastSeq older than retention → snapshot');
    assert.equal(r.snapshot.drivers.find((x) => x.driverId === d.driverId)?.lat, lastFix.lat);
    const [a] = await sendN(d, 1);
    await r.waitFor('location:updated', (e) => e.seq === a.seq);
    await settle();
    assert.equal(r.all('sync:complete').length, 0);
    r.close();
    d.close();
  });
});
