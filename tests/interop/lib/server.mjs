// Spawn / stop helpers for the wecare-rt binary under test.
//
// Every server gets its own free loopback port and (unless one is given) its
// own fresh DATA_DIR. The environment is built from scratch (plus PATH/HOME),
// so nothing from the invoking shell (APP_ENV, NODE_ENV, ...) leaks in.
// Set WECARE_RT_LOG=1 to mirror server output to stderr.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomSecret, mintToken, driverToken, watcherToken } from './token.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
export const repoRoot = path.resolve(here, '..', '..', '..');
export const binPath = process.env.WECARE_RT_BIN
  ? path.resolve(process.env.WECARE_RT_BIN)
  : path.join(repoRoot, 'target', 'debug', 'wecare-rt');

const READY_TIMEOUT_MS = 15_000;

// With WECARE_INTEROP_DATABASE_URL (an admin URL of a PostgreSQL server;
// scripts/test.sh starts one), every server gets a database of its own
// (DATABASE_URL), dropped by dispose(): the whole suite then shows every
// contract rule on a PostgreSQL-backed node too.
export const pgAdminUrl = process.env.WECARE_INTEROP_DATABASE_URL || null;
let dbCounter = 0;

function psql(url, sql) {
  execFileSync('psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', url, '-c', sql], { stdio: ['ignore', 'ignore', 'pipe'] });
}

/**
 * A fresh database on the test PostgreSQL server: { url, drop() }.
 * `adminUrl`: another server's admin URL (e.g. a private instance a test
 * started with scripts/pg-instance.sh) instead of WECARE_INTEROP_DATABASE_URL.
 */
export function createDatabase(label = 'interop', adminUrl = pgAdminUrl) {
  if (!adminUrl) throw new Error('no WECARE_INTEROP_DATABASE_URL');
  dbCounter += 1;
  const name = `wecare_${label}_${process.pid}_${dbCounter}_${Math.floor(Math.random() * 1e6)}`;
  psql(adminUrl, `CREATE DATABASE ${name}`);
  const u = new URL(adminUrl);
  u.pathname = `/${name}`;
  const url = u.toString();
  return { url, name, drop: () => { try { psql(adminUrl, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`); } catch { /* best effort */ } } };
}
const EXIT_TIMEOUT_MS = Number(process.env.WECARE_RT_EXIT_TIMEOUT_MS ?? 10_000);

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

export function tempDataDir(label = 'data') {
  return mkdtempSync(path.join(os.tmpdir(), `wecare-interop-${label}-`));
}

function baseEnv() {
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin' };
  if (process.env.HOME) env.HOME = process.env.HOME;
  if (process.env.RUST_LOG) env.RUST_LOG = process.env.RUST_LOG;
  if (process.env.RUST_BACKTRACE) env.RUST_BACKTRACE = process.env.RUST_BACKTRACE;
  return env;
}

/** Values used unless the test overrides them; `null` in `env` removes a var. */
const DEFAULTS = {
  HOST: '127.0.0.1',
  // Most tests fire many messages from one driver; keep the rate limiter out
  // of the way except where it is the subject.
  RATE_LIMIT_PER_SEC: '10000',
  // Presence-offline events are out of scope; keep them from firing mid-test.
  PRESENCE_GRACE_MS: '600000',
};

function buildEnv(port, dataDir, secret, env, { defaults = true, databaseUrl } = {}) {
  const e = { ...baseEnv(), ...(defaults ? DEFAULTS : { HOST: '127.0.0.1' }), PORT: String(port), DATA_DIR: dataDir };
  if (databaseUrl) e.DATABASE_URL = databaseUrl;
  if (secret !== null) e.JWT_SECRET = secret;
  for (const [k, v] of Object.entries(env ?? {})) {
    if (v === null || v === undefined) delete e[k];
    else e[k] = String(v);
  }
  return e;
}

function spawnProc(env) {
  if (!existsSync(binPath)) {
    throw new Error(`wecare-rt binary not found at ${binPath} (build it with \`cargo build -p wecare-cli\` or set WECARE_RT_BIN)`);
  }
  const child = spawn(binPath, ['serve'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const out = { text: '' };
  const keep = (chunk) => {
    out.text += chunk.toString();
    if (out.text.length > 200_000) out.text = out.text.slice(-100_000);
    if (process.env.WECARE_RT_LOG) process.stderr.write(chunk);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  const exited = new Promise((resolve) => {
    child.on('exit', (code, signal) => resolve({ code, signal }));
    child.on('error', (err) => resolve({ code: null, signal: null, error: err }));
  });
  child.exitInfo = null;
  exited.then((info) => { child.exitInfo = info; });
  return { child, out, exited };
}

async function httpStatus(port, pathname, timeoutMs = 1000) {
  try {
    const res = await fetch(`http://127.0.0.1:${port}${pathname}`, { signal: AbortSignal.timeout(timeoutMs) });
    await res.arrayBuffer();
    return res.status;
  } catch {
    return null;
  }
}

function withTimeout(promise, ms, what) {
  let t;
  return Promise.race([
    promise,
    new Promise((_, rej) => { t = setTimeout(() => rej(new Error(`timeout after ${ms} ms: ${what}`)), ms); }),
  ]).finally(() => clearTimeout(t));
}

export class Server {
  constructor({ port, dataDir, secret, env, ownsDataDir, database }) {
    this.database = database ?? null;
    this.port = port;
    this.dataDir = dataDir;
    this.secret = secret;
    this.env = env;
    this.ownsDataDir = ownsDataDir;
    this.proc = null;
    this.stopping = false;
  }

  get url() { return `http://127.0.0.1:${this.port}`; }
  get nsUrl() { return `${this.url}/locations`; }
  get pid() { return this.proc?.child.pid; }
  get output() { return this.proc?.out.text ?? ''; }
  get alive() { return !!this.proc && this.proc.child.exitInfo === null; }

  token(claims, opts) { return mintToken(this.secret, claims, opts); }
  driverToken(opts) { return driverToken(this.secret, opts); }
  watcherToken(opts) { return watcherToken(this.secret, opts); }

  async launch() {
    const env = buildEnv(this.port, this.dataDir, this.secret, this.env, { databaseUrl: this.database?.url });
    this.proc = spawnProc(env);
    this.stopping = false;
    const deadline = Date.now() + READY_TIMEOUT_MS;
    while (Date.now() < deadline) {
      if (this.proc.child.exitInfo) {
        throw new Error(`wecare-rt exited before ready (${JSON.stringify(this.proc.child.exitInfo)}):\n${this.output.slice(-4000)}`);
      }
      if ((await httpStatus(this.port, '/healthz')) === 200) return this;
      await new Promise((r) => setTimeout(r, 50));
    }
    this.proc.child.kill('SIGKILL');
    throw new Error(`wecare-rt not ready within ${READY_TIMEOUT_MS} ms on port ${this.port}:\n${this.output.slice(-4000)}`);
  }

  /** Throws if the process died on its own (a crash is a contract violation, §7). */
  assertAlive() {
    if (this.proc && this.proc.child.exitInfo && !this.stopping) {
      throw new Error(`wecare-rt died unexpectedly (${JSON.stringify(this.proc.child.exitInfo)}):\n${this.output.slice(-4000)}`);
    }
  }

  async #signal(sig) {
    if (!this.proc) return null;
    const { child, exited } = this.proc;
    const crashed = child.exitInfo && !this.stopping ? child.exitInfo : null;
    this.stopping = true;
    if (child.exitInfo === null) child.kill(sig);
    let info;
    try {
      info = await withTimeout(exited, EXIT_TIMEOUT_MS, `wecare-rt exit after ${sig}`);
    } catch (err) {
      child.kill('SIGKILL');
      await exited;
      err.message += ` (killed with SIGKILL); last output:\n${this.output.slice(-3000)}`;
      throw err;
    }
    if (crashed) {
      throw new Error(`wecare-rt had died before ${sig} (${JSON.stringify(crashed)}):\n${this.output.slice(-4000)}`);
    }
    return info;
  }

  /** Graceful stop: SIGTERM and wait for exit (SIGKILL after 10 s). */
  stop() { return this.#signal('SIGTERM'); }

  /** Hard kill: SIGKILL and wait for exit. */
  kill() { return this.#signal('SIGKILL'); }

  /** SIGKILL immediately, synchronously (e.g. from inside an ack callback). */
  killNow() {
    this.stopping = true;
    this.proc?.child.kill('SIGKILL');
  }

  async waitExit(ms = EXIT_TIMEOUT_MS) {
    return withTimeout(this.proc.exited, ms, 'wecare-rt exit');
  }

  /** Start again on the same DATA_DIR and secret, on a new free port. */
  async restart({ samePort = false } = {}) {
    if (this.alive) await this.stop();
    if (!samePort) this.port = await freePort();
    return this.launch();
  }

  /** Stop (ignoring errors if already gone) and remove the data dir. For `after` hooks. */
  async dispose() {
    let err = null;
    try { await this.stop(); } catch (e) { err = e; }
    if (this.ownsDataDir) rmSync(this.dataDir, { recursive: true, force: true });
    if (this.ownsDataDir) this.database?.drop();
    if (err) throw err;
  }
}

/**
 * Start a server. Options:
 *  env: extra/overriding env vars (null removes one, e.g. JWT_SECRET: null)
 *  dataDir: reuse an existing dir (not removed by dispose)
 *  secret: JWT secret (default random; null = do not set JWT_SECRET)
 *  databaseUrl: DATABASE_URL shared with other nodes (the caller owns the
 *    database: dispose() does not drop it)
 */
const databasesByDir = new Map();

export async function startServer({ env = {}, dataDir, secret, databaseUrl } = {}) {
  const port = await freePort();
  const ownsDataDir = !dataDir;
  const dir = dataDir ?? tempDataDir();
  // A server given an existing data folder shares its store: on PostgreSQL
  // that is the database of the server it was made for.
  const database = databaseUrl
    ? { url: databaseUrl, drop: () => {} }
    : pgAdminUrl ? (dataDir ? databasesByDir.get(dataDir) : createDatabase()) : null;
  const s = new Server({ port, dataDir: dir, secret: secret === undefined ? randomSecret() : secret, env, ownsDataDir, database });
  if (database && ownsDataDir) databasesByDir.set(dir, database);
  try {
    await s.launch();
  } catch (err) {
    if (ownsDataDir) rmSync(dir, { recursive: true, force: true });
    if (ownsDataDir) database?.drop();
    throw err;
  }
  return s;
}

/**
 * Start a server that is expected to refuse to start. Resolves with
 * { code, signal, output, ready } where ready=true means it served /healthz
 * (it is then killed).
 */
export async function startExpectingExit({ env = {}, secret, timeoutMs = 10_000 } = {}) {
  const port = await freePort();
  const dir = tempDataDir('exit');
  const e = buildEnv(port, dir, secret === undefined ? randomSecret() : secret, env, { defaults: false });
  const { child, out, exited } = spawnProc(e);
  const deadline = Date.now() + timeoutMs;
  let ready = false;
  try {
    while (Date.now() < deadline && child.exitInfo === null) {
      if ((await httpStatus(port, '/healthz', 300)) === 200) { ready = true; break; }
      await new Promise((r) => setTimeout(r, 50));
    }
    if (child.exitInfo === null) child.kill('SIGKILL');
    const info = await withTimeout(exited, EXIT_TIMEOUT_MS, 'wecare-rt exit');
    return { ...info, output: out.text, ready: ready || (info.signal === 'SIGKILL') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
