// The driver client (src/client/driver.ts) in Chromium with the durable
// IndexedDbOutbox, against the real server: fixes recorded while the server
// is down all arrive once it starts, newest first; fixes recorded during an
// outage survive a page reload (same IndexedDB) and are stored exactly once
// after the server restarts. The test page is served by playwright on the
// server's own origin, so it loads (and reloads) while the server is down.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import path from 'node:path';
import { Server, launchBrowser, DEFAULT_WAIT_MS, bundleEntry } from './lib/harness.mjs';

const DRIVER = 'amb-31';
const DB = `wecare-driver-test-${process.pid}`;

let server;
let browser;
let page;
let bundle;

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

const ENTRY = `
import { DriverClient } from './src/client/driver';
import { IndexedDbOutbox } from './src/client/outbox';
window.__driverTest = {
  async start(name, opts) {
    const outbox = await IndexedDbOutbox.open({ name });
    const driver = new DriverClient({ baseUrl: location.origin, tokenProvider: () => window.__driverToken(), outbox, ...opts });
    window.__driver = driver;
    window.__driverStates = [];
    driver.subscribe((s) => window.__driverStates.push(s));
    driver.start();
  },
  async record(fixes) {
    const ids = [];
    for (const f of fixes) ids.push((await window.__driver.record(f)).id);
    return ids;
  },
};
`;

before(async () => {
  bundle = await bundleEntry(ENTRY, 'driver-test-entry.ts', 'ts');
  server = new Server();
  server.port = await freePort(); // known before the server runs
  browser = await launchBrowser();
  // Registered after the harness's loopback-only rule, so these win.
  await browser.context.route(`${server.url}/driver-test.html`, (route) =>
    route.fulfill({ contentType: 'text/html', body: '<!doctype html><title>driver</title><script src="/driver-test.js"></script>' }),
  );
  await browser.context.route(`${server.url}/driver-test.js`, (route) =>
    route.fulfill({ contentType: 'text/javascript', body: bundle }),
  );
  page = browser.context.pages()[0] ?? (await browser.context.newPage());
  page.logs = [];
  page.on('pageerror', (e) => page.logs.push(`[pageerror] ${e.message}`));
  await page.exposeFunction('__driverToken', () => server.driverToken(DRIVER));
});

after(async () => {
  await browser?.close();
  await server?.dispose();
});

async function openAndStart(opts) {
  await page.goto(`${server.url}/driver-test.html`, { waitUntil: 'load' });
  await page.waitForFunction(() => !!window.__driverTest, null, { timeout: DEFAULT_WAIT_MS });
  await page.evaluate(([name, o]) => window.__driverTest.start(name, o), [DB, opts]);
}

const state = () => page.evaluate(() => window.__driver.state);
const record = (fixes) => page.evaluate((f) => window.__driverTest.record(f), fixes);
const drained = (timeout = 20_000) =>
  page.waitForFunction(() => window.__driver.state.pending === 0 && window.__driver.state.lastAck !== null, null, { timeout, polling: 25 });
function fixes(n, from) {
  const t = Date.now();
  return Array.from({ length: n }, (_, i) => ({ lat: 13.7 + (from + i) * 0.001, lng: 100.5, recordedAt: t - (n - i) * 1000 }));
}

async function driverFixes() {
  return (await server.allEvents()).filter((e) => e.type === 'location:updated' && e.driverId === DRIVER);
}

test('fixes recorded before the server is up all arrive once it starts, newest first then oldest-first', { timeout: 60_000 }, async (t) => {
  await openAndStart({ httpFallbackAfterMs: 600_000, reconnectionDelayMaxMs: 500, backoff: { baseMs: 200, capMs: 2000 } });
  const ids = await record(fixes(5, 0));
  const s0 = await state();
  assert.equal(s0.pending, 5);
  assert.notEqual(s0.connection, 'connected');
  assert.equal(new Set(ids).size, 5);

  await server.start();
  await drained();
  const s1 = await state();
  assert.equal(s1.connection, 'connected');
  assert.equal(s1.deadLetters, 0);

  const events = (await driverFixes()).sort((a, b) => a.seq - b.seq);
  assert.deepEqual(events.map((e) => e.id), [ids[4], ids[0], ids[1], ids[2], ids[3]], 'newest first, then oldest-first');
  assert.equal(events[0].outdated, false, 'the newest fix moves the marker');
  assert.ok(events.slice(1).every((e) => e.outdated), 'the backlog fills the trail');
  t.diagnostic(`stats ${JSON.stringify(await page.evaluate(() => window.__driver.stats))}`);
});

test('fixes recorded mid-outage survive a page reload and are stored exactly once after the restart', { timeout: 90_000 }, async (t) => {
  const before = await driverFixes();
  assert.equal(before.length, 5);

  await server.kill();
  await page.waitForFunction(() => window.__driver.state.connection !== 'connected', null, { timeout: DEFAULT_WAIT_MS, polling: 25 });
  const idsA = await record(fixes(3, 10));
  assert.equal((await state()).pending, 3);

  // Reload mid-outage: a new DriverClient on the same IndexedDB. A short HTTP
  // fallback delay, so the POST path races the socket (dedup must hold).
  await page.reload({ waitUntil: 'load' });
  await page.waitForFunction(() => !!window.__driverTest, null, { timeout: DEFAULT_WAIT_MS });
  await page.evaluate(([name, o]) => window.__driverTest.start(name, o), [
    DB,
    { httpFallbackAfterMs: 1000, reconnectionDelayMaxMs: 500, backoff: { baseMs: 200, capMs: 1000 } },
  ]);
  await page.waitForFunction(() => window.__driver.state.pending === 3, null, { timeout: DEFAULT_WAIT_MS, polling: 25 });
  const idsB = await record(fixes(2, 20));
  assert.equal((await state()).pending, 5);
  // Let the HTTP fallback engage (and fail) against the dead server before it returns.
  await page.waitForFunction(() => window.__driver.state.connection === 'http-fallback', null, { timeout: DEFAULT_WAIT_MS, polling: 25 });

  await server.start();
  await drained(30_000);

  const all = await driverFixes();
  const count = {};
  for (const e of all) count[e.id] = (count[e.id] ?? 0) + 1;
  const recorded = [...before.map((e) => e.id), ...idsA, ...idsB];
  for (const id of recorded) assert.equal(count[id], 1, `${id} stored exactly once`);
  assert.equal(all.length, recorded.length, 'nothing else stored');
  const s = await state();
  assert.equal(s.deadLetters, 0);
  assert.deepEqual(await page.evaluate(() => window.__driver.deadLetters()), []);
  t.diagnostic(`stats ${JSON.stringify(await page.evaluate(() => window.__driver.stats))}, last ack via ${s.lastAck?.via}`);
  t.diagnostic(`states ${(await page.evaluate(() => window.__driverStates.map((x) => x.connection))).filter((c, i, a) => c !== a[i - 1]).join(' → ')}`);

  // Back on the socket once it reconnects.
  await page.waitForFunction(() => window.__driver.state.connection === 'connected', null, { timeout: 20_000, polling: 25 });
  const [idC] = await record(fixes(1, 30));
  await page.waitForFunction((id) => window.__driver.state.lastAck?.id === id, idC, { timeout: DEFAULT_WAIT_MS, polling: 25 });
  assert.equal((await state()).lastAck.via, 'socket');
  assert.equal((await driverFixes()).filter((e) => e.id === idC).length, 1);
  assert.deepEqual(page.logs.filter((l) => l.startsWith('[pageerror]')), []);
});
