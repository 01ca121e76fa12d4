// Browser-test harness: the real wecare-rt binary serving the built page,
// HS256 tokens minted with node:crypto, drivers played with socket.io-client
// from node, and Debian's Chromium driven by playwright-core. Loopback only;
// every wait has a timeout.
import { spawn } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { io } from 'socket.io-client';

const here = path.dirname(fileURLToPath(import.meta.url));
export const webRoot = path.resolve(here, '..', '..', '..');
export const repoRoot = path.resolve(webRoot, '..');
// WECARE_WEB_DIST serves another build of the page (e.g. an older commit's, to see a test fail without a fix).
export const webDist = process.env.WECARE_WEB_DIST ? path.resolve(process.env.WECARE_WEB_DIST) : path.join(webRoot, 'dist');
export const outputDir = path.join(repoRoot, 'test-output', 'web');
const binPath = process.env.WECARE_RT_BIN ? path.resolve(process.env.WECARE_RT_BIN) : path.join(repoRoot, 'target', 'debug', 'wecare-rt');
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

export const DEFAULT_WAIT_MS = 10_000;

/**
 * Bundles a test page's entry (`contents`, resolved from the web root, as
 * `sourcefile` with its `loader`) into one script for the page.
 */
export async function bundleEntry(contents, sourcefile, loader = 'js') {
  const { build } = await import('esbuild');
  const out = await build({
    stdin: { contents, resolveDir: webRoot, sourcefile, loader },
    bundle: true,
    format: 'iife',
    target: ['es2020'],
    write: false,
    logLevel: 'warning',
  });
  return out.outputFiles[0].text;
}

/** The page's languages: every page test runs once per browser locale (Playwright `locale`). */
export const LOCALES = [
  { locale: 'th-TH', lang: 'th' },
  { locale: 'en-US', lang: 'en' },
];

export function withTimeout(promise, ms, what) {
  let t;
  return Promise.race([
    promise,
    new Promise((_, rej) => {
      t = setTimeout(() => rej(new Error(`timeout after ${ms} ms: ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(t));
}

/** Poll `cond` until truthy (for conditions with no event to await). `what` may be a function, read at the timeout. */
export async function waitUntil(cond, { timeoutMs = DEFAULT_WAIT_MS, intervalMs = 50, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > deadline) {
      throw new Error(`timeout after ${timeoutMs} ms waiting for ${typeof what === 'function' ? what() : what}`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

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

// ---- tokens ----------------------------------------------------------------

export function signJwt(payload, secret) {
  const enc = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const input = `${enc({ alg: 'HS256', typ: 'JWT' })}.${enc(payload)}`;
  return `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`;
}

const nowS = () => Math.floor(Date.now() / 1000);

// ---- server ----------------------------------------------------------------

export class Server {
  constructor({ env = {} } = {}) {
    this.secret = randomBytes(32).toString('hex');
    this.dataDir = mkdtempSync(path.join(os.tmpdir(), 'wecare-web-'));
    this.extraEnv = env;
    this.proc = null;
    this.log = '';
  }

  get url() {
    return `http://127.0.0.1:${this.port}`;
  }

  officerToken({ ttlSeconds = 3600, exp } = {}) {
    const iat = nowS();
    return signJwt({ id: 'officer-1', email: 'officer@wecare.test', role: 'officer', iat, exp: exp ?? iat + ttlSeconds }, this.secret);
  }

  driverToken(driverId) {
    const iat = nowS();
    return signJwt({ id: `u-${driverId}`, role: 'driver', driver_id: driverId, email: `${driverId}@drivers.test`, iat, exp: iat + 3600 }, this.secret);
  }

  async start() {
    if (!existsSync(binPath)) throw new Error(`wecare-rt binary not found at ${binPath} (cargo build, or set WECARE_RT_BIN)`);
    if (!existsSync(path.join(webDist, 'index.html'))) throw new Error(`page not built: ${webDist} (npm run build)`);
    this.port ??= await freePort();
    const env = {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: process.env.HOME ?? os.tmpdir(),
      HOST: '127.0.0.1',
      PORT: String(this.port),
      DATA_DIR: this.dataDir,
      JWT_SECRET: this.secret,
      WEB_DIR: webDist,
      ALLOWED_ORIGINS: `http://127.0.0.1:${this.port}`,
      RATE_LIMIT_PER_SEC: '10000',
      PRESENCE_GRACE_MS: '600000',
      ...(process.env.RUST_LOG ? { RUST_LOG: process.env.RUST_LOG } : {}),
      ...this.extraEnv,
    };
    const child = spawn(binPath, ['serve'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    const keep = (c) => {
      this.log = (this.log + c.toString()).slice(-50_000);
      if (process.env.WECARE_RT_LOG) process.stderr.write(c);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    child.exitInfo = null;
    child.exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve((child.exitInfo = { code, signal }))));
    this.proc = child;
    await waitUntil(
      async () => {
        if (child.exitInfo) throw new Error(`wecare-rt exited before ready ${JSON.stringify(child.exitInfo)}:\n${this.log}`);
        try {
          const r = await fetch(`${this.url}/healthz`, { signal: AbortSignal.timeout(1000) });
          return r.status === 200;
        } catch {
          return false;
        }
      },
      { timeoutMs: 15_000, what: 'GET /healthz 200' },
    );
    return this;
  }

  async #signal(sig) {
    const child = this.proc;
    if (!child) return;
    this.proc = null;
    if (!child.exitInfo) child.kill(sig);
    try {
      await withTimeout(child.exited, 10_000, `wecare-rt exit after ${sig}`);
    } catch {
      child.kill('SIGKILL');
      await child.exited;
    }
  }

  /** SIGKILL and wait for the exit. */
  kill() {
    return this.#signal('SIGKILL');
  }

  async dispose() {
    await this.#signal('SIGTERM');
    rmSync(this.dataDir, { recursive: true, force: true });
  }

  async rest(method, pathname, token, body) {
    const res = await fetch(`${this.url}${pathname}`, {
      method,
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(10_000),
    });
    const json = await res.json();
    if (!res.ok) throw new Error(`${method} ${pathname}: ${res.status} ${JSON.stringify(json)}`);
    return json;
  }

  /** Every stream event so far, read as a watcher through `GET /api/realtime/events`. */
  async allEvents() {
    const token = this.officerToken();
    const events = [];
    let since = 0;
    for (;;) {
      const page = await this.rest('GET', `/api/realtime/events?since=${since}&limit=1000`, token);
      events.push(...page.events);
      if (page.events.length === 0) return events;
      since = page.lastSeq;
    }
  }
}

/** location:updated counts per driver, from the server's own stream. */
export function fixesPerDriver(events) {
  const n = {};
  for (const e of events) if (e.type === 'location:updated') n[e.driverId] = (n[e.driverId] ?? 0) + 1;
  return n;
}

// ---- drivers ---------------------------------------------------------------

let fixCounter = 0;
export function makeFix(driverId, lat, lng, { recordedAt = Date.now(), status } = {}) {
  fixCounter += 1;
  const f = { id: `${driverId}-${process.pid}-${fixCounter}`, lat, lng, recordedAt };
  if (status) f.status = status;
  return f;
}

/** A driver on socket.io-client (websocket, as the mobile app does). */
export class Driver {
  constructor(server, driverId) {
    this.server = server;
    this.driverId = driverId;
    this.socket = io(`${server.url}/locations`, {
      auth: (cb) => cb({ token: server.driverToken(driverId) }),
      transports: ['websocket'],
      reconnectionDelay: 100,
      reconnectionDelayMax: 500,
    });
  }

  connected() {
    if (this.socket.connected) return Promise.resolve();
    return withTimeout(new Promise((r) => this.socket.once('connect', r)), DEFAULT_WAIT_MS, `driver ${this.driverId} connect`);
  }

  /** Send one fix and wait for its ack (durably stored). */
  async send(fix) {
    const ack = await this.socket.timeout(DEFAULT_WAIT_MS).emitWithAck('location:update', fix);
    if (ack.status !== 'ok') throw new Error(`fix refused: ${JSON.stringify(ack)}`);
    return ack;
  }

  /** The same over REST (the legacy fallback path). */
  async post(fix) {
    const r = await this.server.rest('POST', '/api/driver-locations', this.server.driverToken(this.driverId), fix);
    if (r.results[0].status !== 'ok') throw new Error(`fix refused: ${JSON.stringify(r)}`);
    return r.results[0];
  }

  close() {
    this.socket.close();
  }
}

// ---- browser ---------------------------------------------------------------

/** Chromium with `locale` as the browser's language (navigator.languages, Accept-Language). */
export async function launchBrowser({ locale = 'en-US', profile } = {}) {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} missing: run web/scripts/ensure-chromium.sh`);
  // `profile`: a folder of the caller's, kept on close (a browser closed and
  // opened again on the same profile: IndexedDB, storage). Else a fresh one.
  const userDataDir = profile ?? mkdtempSync(path.join(os.tmpdir(), 'wecare-chromium-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    viewport: { width: 1280, height: 800 },
    locale,
    timeout: 30_000,
  });
  context.setDefaultTimeout(DEFAULT_WAIT_MS);
  // Loopback only: anything else (tile servers, …) is refused.
  await context.route(
    (url) => url.hostname !== '127.0.0.1' && url.hostname !== 'localhost',
    (route) => route.abort(),
  );
  return {
    context,
    async close() {
      await context.close();
      if (!profile) rmSync(userDataDir, { recursive: true, force: true });
    },
  };
}

/** Open the Map Command page signed in with `token` (tiles off: no network). */
export async function openPage(browser, server, token, { beforeLoad } = {}) {
  const page = browser.context.pages()[0] ?? (await browser.context.newPage());
  page.logs = [];
  page.on('console', (m) => page.logs.push(`[${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => page.logs.push(`[pageerror] ${e.message}`));
  if (beforeLoad) await beforeLoad(page);
  await page.goto(`${server.url}/?tiles=none&token=${encodeURIComponent(token)}`, { waitUntil: 'load' });
  await page.waitForFunction(() => !!window.__wecare, null, { timeout: DEFAULT_WAIT_MS });
  return page;
}

/** Wait until the page's banner is in `kind`. */
export function bannerIs(page, kind, timeout = DEFAULT_WAIT_MS) {
  return page.waitForFunction((k) => window.__wecare.banner().kind === k, kind, { timeout, polling: 25 });
}

/** Wait until driver `id` has `n` trail points drawn (returns how long it took). */
export async function trailHas(page, id, n, timeout = DEFAULT_WAIT_MS) {
  const t0 = Date.now();
  await page.waitForFunction(([d, k]) => window.__wecare.trailCount(d) >= k, [id, n], { timeout, polling: 10 });
  return Date.now() - t0;
}

export async function screenshot(page, name) {
  mkdirSync(outputDir, { recursive: true });
  await page.screenshot({ path: path.join(outputDir, `${name}.png`) });
}

/**
 * Click the map's zoom-in button `times` times as an officer would, each
 * once the previous zoom has ended (Leaflet drops a zoom asked for during
 * the animation of the last one). The scale bar's label changes with every
 * zoom level, so it tells when one is done.
 */
export async function zoomIn(page, times = 1) {
  for (let i = 0; i < times; i += 1) {
    const scale = await page.textContent('.leaflet-control-scale');
    await page.click('.leaflet-control-zoom-in');
    await page.waitForFunction((s) => document.querySelector('.leaflet-control-scale').textContent !== s, scale);
  }
}
