// The drop-in for the WeCare app's socketService.ts (web/compat, the built
// package) in Chromium against the real server. A page written for the test
// calls it as the deployed components do: the driver tracker's
// `sendLocationUpdate({ driverId, lat, lng, status })` every second, the
// Map's `onLocationUpdated(data => merge)`. The page is served by playwright
// on the server's own origin, so it loads while the server is down.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Server, Driver, launchBrowser, makeFix, waitUntil, DEFAULT_WAIT_MS, bundleEntry } from './lib/harness.mjs';

const PAGE = '/compat-test.html';
// The app's code, as deployed: it imports the module by its path, and the
// package stands in for it.
const ENTRY = `
import socketService, { sendLocationUpdate, onLocationUpdated, getSocket, whenStored } from './compat/dist/socketService.js';
window.__compat = {
  api: socketService,
  driverTick(i) {
    // DriverLocationTracker: sendLocationUpdate({ driverId, lat, lng, status }) with status undefined
    sendLocationUpdate({ driverId: window.__driverId, lat: 13.7 + i * 0.0001, lng: 100.5, status: undefined });
  },
  whenStored,
  watch() {
    // MapCommandEditor: merge each event into its rows. The test keeps what
    // the page merged in sessionStorage, in the same task as the merge, so a
    // reload cannot lose the record of an event the page took.
    const keep = (key, v) => sessionStorage.setItem(key, JSON.stringify([...JSON.parse(sessionStorage.getItem(key) ?? '[]'), v]));
    onLocationUpdated((data) => keep('test.seen', { seq: data.seq, driverId: data.driverId }));
    getSocket().on('drivers:snapshot', (s) => keep('test.snapshots', s.seq));
  },
  merged: () => ({ seen: JSON.parse(sessionStorage.getItem('test.seen') ?? '[]'), snapshots: JSON.parse(sessionStorage.getItem('test.snapshots') ?? '[]') }),
};
`;

let server;
let bundle;
const profiles = [];

function profile() {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'wecare-compat-profile-'));
  profiles.push(dir);
  return dir;
}

/** A browser on `dir`, the test page routed on the server's origin, `token` in local storage. */
async function openBrowser(dir, token, { withoutIndexedDb = false, driverId = null } = {}) {
  const browser = await launchBrowser({ profile: dir });
  await browser.context.route(`${server.url}${PAGE}`, (route) =>
    route.fulfill({ contentType: 'text/html', body: '<!doctype html><title>compat</title><script src="/compat-test.js"></script>' }),
  );
  await browser.context.route(`${server.url}/compat-test.js`, (route) => route.fulfill({ contentType: 'text/javascript', body: bundle }));
  await browser.context.addInitScript(
    ([t, d, noIdb]) => {
      localStorage.setItem('wecare_token', t);
      window.__driverId = d;
      if (noIdb) Object.defineProperty(window, 'indexedDB', { get: () => undefined }); // private mode
    },
    [token, driverId, withoutIndexedDb],
  );
  return browser;
}

async function openTab(browser, { bindings = true } = {}) {
  const page = await browser.context.newPage();
  page.logs = [];
  page.on('console', (m) => page.logs.push(`[${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => page.logs.push(`[pageerror] ${e.message}`));
  if (bindings) {
    page.seen = [];
    page.snapshots = [];
    await page.exposeFunction('__seen', (seq, driverId) => page.seen.push({ seq, driverId }));
    await page.exposeFunction('__snapshot', (seq) => page.snapshots.push(seq));
  }
  await page.goto(`${server.url}${PAGE}`, { waitUntil: 'load' });
  await page.waitForFunction(() => !!window.__compat, null, { timeout: DEFAULT_WAIT_MS });
  return page;
}

/** The driver's fixes the server stored, in stream order. */
async function storedFixes(driverId) {
  return (await server.allEvents()).filter((e) => e.type === 'location:updated' && e.driverId === driverId);
}

before(async () => {
  bundle = await bundleEntry(ENTRY, 'compat-test-entry.js');
  server = new Server();
  await server.start();
});

after(async () => {
  await server?.dispose();
  for (const d of profiles) rmSync(d, { recursive: true, force: true });
});

test('50 fixes queued while the server is down survive the browser closing: stored once each, the newest first then the rest in order, when the driver opens the page again', { timeout: 120_000 }, async () => {
  const driverId = 'amb-compat-closed';
  const dir = profile();
  await server.kill();
  let browser = await openBrowser(dir, server.driverToken(driverId), { driverId });
  let tab = await openTab(browser, { bindings: false });
  for (let i = 0; i < 50; i += 1) await tab.evaluate((k) => window.__compat.driverTick(k), i);
  await tab.evaluate(() => window.__compat.whenStored());
  // The whole browser goes, not just the socket.
  await browser.close();

  await server.start();
  browser = await openBrowser(dir, server.driverToken(driverId), { driverId });
  tab = await openTab(browser, { bindings: false });
  await tab.evaluate(() => window.__compat.api.initializeSocket() && true);
  await waitUntil(async () => {
    const f = await storedFixes(driverId);
    return f.length >= 50 ? f : null;
  }, { timeoutMs: 30_000, what: 'the 50 fixes stored' });
  await new Promise((r) => setTimeout(r, 500)); // absence: nothing more may follow
  const all = await storedFixes(driverId);
  assert.equal(all.length, 50, 'each stored once');
  const lats = all.map((e) => Math.round((e.lat - 13.7) / 0.0001));
  assert.deepEqual(lats, [49, ...Array.from({ length: 49 }, (_, i) => i)], 'the newest first, then the backlog in order');
  assert.equal(all[0].outdated, false);
  // The backlog fills the trail: a fix recorded before the newest does not
  // move the marker. Two ticks can fall in one millisecond (the module
  // stamps recordedAt with Date.now()), and a fix as new as the marker's is
  // not older than it.
  const newest = Date.parse(all[0].recordedAt);
  assert.ok(all.slice(1).every((e) => Date.parse(e.recordedAt) <= newest), 'the backlog was recorded before the newest');
  assert.deepEqual(
    all.slice(1).filter((e) => e.outdated !== Date.parse(e.recordedAt) < newest).map((e) => [e.recordedAt, e.outdated]),
    [],
    'the backlog fills the trail',
  );
  assert.deepEqual(tab.logs.filter((l) => l.startsWith('[pageerror]')), []);
  await browser.close();
});

test('two tabs of one driver send a fix a second each for a minute through a server SIGKILL: every fix stored exactly once', { timeout: 180_000 }, async () => {
  const driverId = 'amb-compat-tabs';
  const browser = await openBrowser(profile(), server.driverToken(driverId), { driverId });
  const tabs = [await openTab(browser, { bindings: false }), await openTab(browser, { bindings: false })];
  let sent = 0;
  const t0 = Date.now();
  let killed = false;
  while (Date.now() - t0 < 60_000) {
    for (const [k, tab] of tabs.entries()) {
      await tab.evaluate((i) => window.__compat.driverTick(i), sent * 2 + k);
    }
    sent += 1;
    if (!killed && Date.now() - t0 > 25_000) {
      killed = true;
      await server.kill();
      setTimeout(() => void server.start(), 5_000);
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
  await Promise.all(tabs.map((t) => t.evaluate(() => window.__compat.whenStored())));
  const expected = sent * 2;
  await waitUntil(async () => (await storedFixes(driverId)).length >= expected, { timeoutMs: 60_000, intervalMs: 250, what: `${expected} fixes stored` });
  await new Promise((r) => setTimeout(r, 1000)); // absence
  const all = await storedFixes(driverId);
  const count = new Map();
  for (const e of all) {
    const k = Math.round((e.lat - 13.7) / 0.0001);
    count.set(k, (count.get(k) ?? 0) + 1);
  }
  assert.equal(count.size, expected, `every fix stored: ${count.size} of ${expected}`);
  assert.deepEqual([...count].filter(([, n]) => n !== 1), [], 'each exactly once');
  for (const t of tabs) assert.deepEqual(t.logs.filter((l) => l.startsWith('[pageerror]')), []);
  await browser.close();
});

test('a watcher page reloaded during a burst of 500 fixes has every event once, in order, with no snapshot after the reload', { timeout: 120_000 }, async () => {
  const driverId = 'amb-compat-burst';
  const browser = await openBrowser(profile(), server.officerToken());
  const tab = await openTab(browser, { bindings: false });
  const merged = () => tab.evaluate(() => window.__compat.merged());
  await tab.evaluate(() => window.__compat.watch());
  await waitUntil(async () => (await merged()).snapshots.length === 1, { what: 'the first snapshot' });
  const driver = new Driver(server, driverId);
  await driver.connected();
  const acked = [];
  const burst = (async () => {
    for (let i = 0; i < 500; i += 1) acked.push((await driver.send(makeFix(driverId, 13.7 + i * 0.0001, 100.5))).seq);
  })();
  await waitUntil(async () => (await merged()).seen.length >= 100, { what: 'the burst under way' });
  await tab.reload({ waitUntil: 'load' });
  await tab.waitForFunction(() => !!window.__compat, null, { timeout: DEFAULT_WAIT_MS });
  const before = await merged();
  await tab.evaluate(() => window.__compat.watch());
  await burst;
  const ofDriver = (m) => m.seen.filter((e) => e.driverId === driverId).map((e) => e.seq);
  await waitUntil(async () => ofDriver(await merged()).length >= 500, { timeoutMs: 30_000, what: 'the 500 events merged' });
  await new Promise((r) => setTimeout(r, 500)); // absence
  const after = await merged();
  assert.ok(ofDriver(before).length < 500, `the reload came mid-burst (${ofDriver(before).length} merged before it)`);
  assert.deepEqual(ofDriver(after), acked, 'every event once, in order, across the reload');
  assert.deepEqual(after.snapshots, before.snapshots, 'resumed from its position: no snapshot after the reload');
  driver.close();
  await browser.close();
});

test('without IndexedDB (private mode) the page keeps working: fixes in memory, said once in the console', { timeout: 60_000 }, async () => {
  const driverId = 'amb-compat-private';
  const browser = await openBrowser(profile(), server.driverToken(driverId), { driverId, withoutIndexedDb: true });
  const tab = await openTab(browser, { bindings: false });
  for (let i = 0; i < 5; i += 1) await tab.evaluate((k) => window.__compat.driverTick(k), i);
  await waitUntil(async () => (await storedFixes(driverId)).length === 5, { what: 'the 5 fixes stored' });
  const said = tab.logs.filter((l) => l.includes('IndexedDB is not available'));
  assert.equal(said.length, 1, tab.logs.join('\n'));
  assert.match(said[0], /^\[warning\]/);
  assert.deepEqual(tab.logs.filter((l) => l.startsWith('[pageerror]')), []);
  await browser.close();
});
