/**
 * The HTTP fallback used while the socket is down (docs/protocol.md §9.6):
 * `GET /api/realtime/latest` when there is no position, then a loop of
 * `GET /api/realtime/events?since=&streamId=&waitMs=` with a Bearer token,
 * retried with capped, jittered backoff.
 */
import { backoffDelay } from './backoff';
import { httpProblem, type Problem } from './connection';
import { RestPath, type EventsPage, type LatestState } from './events';
import type { StreamSync } from './sync';

/** Events asked for per page. A page this full means more are waiting. */
export const PAGE_LIMIT = 1000;

export interface LongPollOptions {
  baseUrl: string;
  tokenProvider: () => Promise<string>;
  sync: StreamSync;
  /** How long the server may hold an empty page. Defaults to 25000. */
  waitMs?: number;
  fetch?: typeof fetch;
  /**
   * A page came back. `caughtUp`: the page holds everything up to the head
   * the server had (it was not full); false while a backlog is being paged.
   */
  onHealthy: (caughtUp: boolean) => void;
  /** A request failed (network, 5xx, auth). */
  onFailure: (problem: Problem) => void;
  onResync: (reason: string) => void;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string | undefined,
  ) {
    super(`HTTP ${status}${code ? ` ${code}` : ''}`);
  }
}

/** fetch rejects with a TypeError when nothing answers, an AbortError on our timeout. */
function problemOf(err: unknown): Problem {
  if (err instanceof HttpError) return httpProblem(err.status);
  if (err instanceof Error && err.name === 'AbortError') return 'timeout';
  return 'unreachable';
}

export class LongPoll {
  private controller: AbortController | null = null;
  private generation = 0;
  private running = false;

  constructor(private readonly opts: LongPollOptions) {}

  get active(): boolean {
    return this.running;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.generation += 1;
    void this.loop(this.generation);
  }

  /** Stop at once; a request in flight is aborted and its result ignored. */
  stop(): void {
    this.running = false;
    this.generation += 1;
    this.controller?.abort();
    this.controller = null;
  }

  private current(gen: number): boolean {
    return this.running && gen === this.generation;
  }

  private async loop(gen: number): Promise<void> {
    let failures = 0;
    while (this.current(gen)) {
      try {
        await this.step(gen);
        failures = 0;
      } catch (err) {
        if (!this.current(gen)) return;
        failures += 1;
        this.opts.onFailure(problemOf(err));
        await this.sleep(backoffDelay(failures, { baseMs: 500, capMs: 10_000 }) + 200, gen);
      }
    }
  }

  private async step(gen: number): Promise<void> {
    const { sync } = this.opts;
    if (sync.lastSeq === null) {
      const latest = await this.get<LatestState>(RestPath.Latest, gen);
      if (!latest || !this.current(gen)) return;
      sync.applySnapshot(latest);
      this.opts.onHealthy(true);
      return;
    }
    const q = new URLSearchParams({
      since: String(sync.lastSeq),
      waitMs: String(this.opts.waitMs ?? 25_000),
      limit: String(PAGE_LIMIT),
    });
    if (sync.streamId) q.set('streamId', sync.streamId);
    const page = await this.get<EventsPage>(`${RestPath.Events}?${q}`, gen);
    if (!page || !this.current(gen)) return;
    const outcome = sync.applyPage(page);
    if (outcome.kind === 'resync') {
      sync.forgetPosition();
      this.opts.onResync(outcome.reason);
      this.opts.onHealthy(false);
      return;
    }
    // Applied first, reported after: "current" is only said of events the fleet holds.
    this.opts.onHealthy(page.events.length < PAGE_LIMIT);
  }

  private async get<T>(path: string, gen: number): Promise<T | null> {
    const token = await this.opts.tokenProvider();
    if (!this.current(gen)) return null;
    const controller = new AbortController();
    this.controller = controller;
    // The long-poll holds up to waitMs; anything much longer is a dead connection.
    const timer = setTimeout(() => controller.abort(), (this.opts.waitMs ?? 25_000) + 10_000);
    try {
      const res = await (this.opts.fetch ?? fetch)(`${this.opts.baseUrl}${path}`, {
        headers: { Authorization: `Bearer ${token}` },
        signal: controller.signal,
        cache: 'no-store',
      });
      if (!res.ok) {
        let code: string | undefined;
        try {
          code = ((await res.json()) as { code?: string }).code;
        } catch {
          /* not JSON */
        }
        throw new HttpError(res.status, code);
      }
      return (await res.json()) as T;
    } finally {
      clearTimeout(timer);
      if (this.controller === controller) this.controller = null;
    }
  }

  private sleep(ms: number, gen: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      // Wake early when stopped so a restart is not delayed by an old backoff.
      const check = setInterval(() => {
        if (!this.current(gen)) {
          clearTimeout(t);
          clearInterval(check);
          resolve();
        }
      }, 100);
      setTimeout(() => clearInterval(check), ms + 1);
    });
  }
}
