/**
 * The outbox drain (docs/protocol.md §9 "a well-behaved driver"), independent
 * of the transport: one batch in flight at a time, newest fix first then the
 * backlog oldest-first (`Outbox.peek`), per-item results:
 *
 * * `ok` (also `duplicate: true`) → removed;
 * * retryable (`RATE_LIMITED`, `UNAVAILABLE`) → kept, back off;
 * * any other refusal → dead letter (never resent unchanged);
 * * no answer (timeout, disconnect, network) → all kept, back off.
 *
 * Backoff: exponential with full jitter, capped, never giving up (`backoff.ts`).
 */
import { backoffDelay, type BackoffOptions } from './backoff';
import { MAX_BATCH, RETRYABLE_CODES, type LocationFix, type LocationOkAck, type LocationResult } from './events';
import type { Outbox } from './outbox';

/** Sends one batch and answers one result per item, in order; throws when there is no answer. */
export type SendBatch = (fixes: LocationFix[]) => Promise<LocationResult[]>;

/** Where to send right now, or `null` when no transport is up (wait for `wake`). */
export type TransportPicker = () => { name: string; send: SendBatch } | null;

export interface SenderOptions {
  outbox: Outbox;
  transport: TransportPicker;
  batchMax?: number;
  backoff?: BackoffOptions;
  random?: () => number;
  /** Waits `ms` or until `signal` aborts; injectable for tests. */
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
  onAck?: (ack: LocationOkAck, transport: string) => void;
  onDeadLetter?: (fix: LocationFix, code: string, message: string) => void;
  onRetry?: (reason: string, delayMs: number, attempt: number) => void;
  /** After every round (the outbox changed, or a send failed). */
  onRound?: () => void;
}

export const DEFAULT_SEND_BACKOFF: BackoffOptions = { baseMs: 1000, capMs: 30_000 };

function defaultSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done);
  });
}

export class Sender {
  /** Consecutive failed rounds (the backoff exponent). */
  failures = 0;
  private running = false;
  private again = false;
  private stopped = false;
  private sleeper: AbortController | null = null;
  private idleWaiters: (() => void)[] = [];

  constructor(private readonly opts: SenderOptions) {}

  /** Something to send, or a transport came up: drain now (a backoff in progress is kept). */
  wake(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    void this.loop();
  }

  /** A fresh connection: forget the backoff and drain at once. */
  resetBackoff(): void {
    this.failures = 0;
    this.sleeper?.abort();
    this.wake();
  }

  stop(): void {
    this.stopped = true;
    this.sleeper?.abort();
  }

  get busy(): boolean {
    return this.running;
  }

  /** Resolves when the sender has nothing left it can do now (empty, or no transport). */
  idle(): Promise<void> {
    if (!this.running) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  private async loop(): Promise<void> {
    try {
      for (;;) {
        this.again = false;
        const more = await this.round();
        this.opts.onRound?.();
        if (this.stopped) break;
        if (!more && !this.again) break;
      }
    } finally {
      this.running = false;
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
  }

  /** One batch; `true` when another round should follow at once. */
  private async round(): Promise<boolean> {
    const transport = this.opts.transport();
    if (!transport) return false;
    const batch = await this.opts.outbox.peek(Math.min(MAX_BATCH, this.opts.batchMax ?? MAX_BATCH));
    if (batch.length === 0) return false;
    let results: LocationResult[];
    try {
      results = await transport.send(batch);
      if (!Array.isArray(results) || results.length !== batch.length) {
        throw new Error(`expected ${batch.length} results, got ${Array.isArray(results) ? results.length : typeof results}`);
      }
    } catch (e) {
      await this.backOff(`${transport.name}: ${e instanceof Error ? e.message : String(e)}`);
      return true;
    }
    const ok: string[] = [];
    let retry: string | null = null;
    for (let i = 0; i < batch.length; i += 1) {
      const fix = batch[i] as LocationFix;
      const r = results[i] as LocationResult;
      if (r && r.status === 'ok') {
        ok.push(fix.id);
        this.opts.onAck?.(r, transport.name);
      } else if (r && (r.retryable === true || (RETRYABLE_CODES as readonly string[]).includes(r.code))) {
        retry ??= r.code;
      } else {
        const code = r?.code ?? 'INVALID_PAYLOAD';
        const message = r?.message ?? 'no result';
        await this.opts.outbox.deadLetter(fix.id, code, message);
        this.opts.onDeadLetter?.(fix, code, message);
      }
    }
    await this.opts.outbox.remove(ok);
    if (retry !== null) {
      await this.backOff(retry);
      return true;
    }
    this.failures = 0;
    return true;
  }

  private async backOff(reason: string): Promise<void> {
    this.failures += 1;
    const delay = backoffDelay(this.failures, this.opts.backoff ?? DEFAULT_SEND_BACKOFF, this.opts.random);
    this.opts.onRetry?.(reason, delay, this.failures);
    this.opts.onRound?.();
    this.sleeper = new AbortController();
    await (this.opts.sleep ?? defaultSleep)(delay, this.sleeper.signal);
    this.sleeper = null;
  }
}
