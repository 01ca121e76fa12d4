// The HTTP fallback tells the watcher whether it is current: a full page
// means a backlog is still being paged (the banner must not say "live"),
// and failures arrive as problems in plain terms, never as raw errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LongPoll, PAGE_LIMIT } from '../../src/client/longpoll';
import { StreamSync } from '../../src/client/sync';
import { ServerEvent, type EventsPage, type StreamEvent } from '../../src/client/events';
import type { Problem } from '../../src/client/connection';

const T0 = Date.parse('2026-01-16T08:30:00.000Z');

function fix(seq: number): StreamEvent {
  const t = new Date(T0 + seq).toISOString();
  return {
    type: ServerEvent.LocationUpdated,
    seq,
    id: `f${seq}`,
    driverId: 'd1',
    lat: 13,
    lng: 100,
    latitude: 13,
    longitude: 100,
    recordedAt: t,
    lastUpdated: t,
    timestamp: t,
    outdated: false,
  };
}

function page(from: number, n: number): EventsPage {
  const events = Array.from({ length: n }, (_, i) => fix(from + i));
  return { status: 'ok', streamId: 'S', events, lastSeq: from + n - 1, gap: false };
}

const json = (body: unknown, status = 200) => new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });

/** A fetch that answers from a script, then holds the long-poll (as an idle server does) until aborted. */
function scripted(answers: Array<() => Response | Promise<Response>>): typeof fetch {
  return (async (_url: string | URL | Request, init?: RequestInit) => {
    const next = answers.shift();
    if (next) return next();
    return new Promise<Response>((_, reject) =>
      init?.signal?.addEventListener('abort', () => reject(new DOMException('aborted', 'AbortError'))),
    );
  }) as typeof fetch;
}

function until(cond: () => boolean, what: string, ms = 2000): Promise<void> {
  return new Promise((resolve, reject) => {
    const deadline = Date.now() + ms;
    const tick = () => {
      if (cond()) return resolve();
      if (Date.now() > deadline) return reject(new Error(`timeout waiting for ${what}`));
      setTimeout(tick, 1);
    };
    tick();
  });
}

test('a full page is reported as behind, the page that ends the backlog as caught up', async () => {
  const sync = new StreamSync();
  sync.applySnapshot({ streamId: 'S', seq: 0, drivers: [] });
  const reports: Array<{ caughtUp: boolean; applied: number }> = [];
  const lp = new LongPoll({
    baseUrl: 'http://rt.test',
    tokenProvider: async () => 't',
    sync,
    fetch: scripted([() => json(page(1, PAGE_LIMIT)), () => json(page(PAGE_LIMIT + 1, 5))]),
    onHealthy: (caughtUp) => reports.push({ caughtUp, applied: sync.lastSeq ?? -1 }),
    onFailure: () => assert.fail('no failure expected'),
    onResync: () => assert.fail('no resync expected'),
  });
  lp.start();
  await until(() => reports.length === 2, 'two pages');
  lp.stop();
  // Each report comes after its page is applied: "caught up" is only said of events the fleet holds.
  assert.deepEqual(reports, [
    { caughtUp: false, applied: PAGE_LIMIT },
    { caughtUp: true, applied: PAGE_LIMIT + 5 },
  ]);
});

test('failures are reported as problems, not as the browser error text', async () => {
  const sync = new StreamSync();
  sync.applySnapshot({ streamId: 'S', seq: 0, drivers: [] });
  const problems: Problem[] = [];
  let healthy = 0;
  const lp = new LongPoll({
    baseUrl: 'http://rt.test',
    tokenProvider: async () => 't',
    sync,
    fetch: scripted([
      () => Promise.reject(new TypeError('Failed to fetch')),
      () => json({ status: 'error', code: 'UNAVAILABLE' }, 503),
      () => json(page(1, 1)),
    ]),
    onHealthy: () => {
      healthy += 1;
    },
    onFailure: (p) => problems.push(p),
    onResync: () => assert.fail('no resync expected'),
  });
  lp.start();
  // Two backoffs (random, at most 0.5 s and 1 s, plus 0.2 s each).
  await until(() => healthy === 1, 'recovery after two failures', 5000);
  lp.stop();
  assert.deepEqual(problems, ['unreachable', 'server-error']);
});

test('a page that arrives after stop() is ignored (the socket has taken over)', async () => {
  const sync = new StreamSync();
  sync.applySnapshot({ streamId: 'S', seq: 0, drivers: [] });
  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  let consumed!: () => void;
  const read = new Promise<void>((r) => (consumed = r));
  const late = json(page(1, 3));
  const lateJson = late.json.bind(late);
  late.json = () => (consumed(), lateJson());
  let healthy = 0;
  const lp = new LongPoll({
    baseUrl: 'http://rt.test',
    tokenProvider: async () => 't',
    sync,
    // Ignores the abort on purpose: the late answer must still be dropped.
    fetch: scripted([async () => (await held, late)]),
    onHealthy: () => {
      healthy += 1;
    },
    onFailure: () => {},
    onResync: () => assert.fail('no resync expected'),
  });
  lp.start();
  await until(() => lp.active, 'started');
  lp.stop();
  release();
  await read;
  // One turn of the event loop runs every continuation of the late answer.
  await new Promise((r) => setImmediate(r));
  assert.equal(sync.lastSeq, 0);
  assert.equal(healthy, 0);
});

test('over HTTP too, a driver without a reported status stays unknown, and a known one stays known', async () => {
  const sync = new StreamSync();
  // The bodies as the server writes them: no `status` key for a driver that reported none.
  const latest = {
    streamId: 'S',
    seq: 0,
    drivers: [
      { driverId: 'd1', lat: 13, lng: 100, recordedAt: new Date(T0).toISOString(), online: true, lastSeen: new Date(T0).toISOString() },
      { driverId: 'd2', lat: null, lng: null, recordedAt: null, status: 'ON_DUTY', online: true, lastSeen: new Date(T0).toISOString() },
    ],
  };
  const events = [fix(1), { ...fix(2), driverId: 'd2' }];
  let healthy = 0;
  const lp = new LongPoll({
    baseUrl: 'http://rt.test',
    tokenProvider: async () => 't',
    sync,
    fetch: scripted([() => json(latest), () => json({ streamId: 'S', events, lastSeq: 2, gap: false })]),
    onHealthy: () => {
      healthy += 1;
    },
    onFailure: () => assert.fail('no failure expected'),
    onResync: () => assert.fail('no resync expected'),
  });
  lp.start();
  await until(() => healthy === 2, 'the snapshot and one page');
  lp.stop();
  assert.equal(sync.lastSeq, 2);
  assert.equal(sync.fleet.drivers.get('d1')!.status, null);
  assert.equal(sync.fleet.drivers.get('d2')!.status, 'ON_DUTY');
});
