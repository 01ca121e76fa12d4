/**
 * The driver's outbox (docs/protocol.md §9 "a well-behaved driver", design
 * "Clients: the outbox"): every fix is stored with a fresh id BEFORE any send,
 * removed only on an `ok`/`duplicate` result, parked in a dead-letter store
 * when refused as non-retryable, and bounded by count (the oldest pending fix
 * is dropped, and counted, when full).
 *
 * `peek(max)` answers the NEWEST pending fix first (the marker becomes
 * current), then the backlog oldest-first (it fills the trail).
 *
 * `IndexedDbOutbox` is durable (a write resolves once its IndexedDB
 * transaction has committed); `MemoryOutbox` is the same interface in RAM,
 * for tests and for environments without IndexedDB.
 */
import type { LocationFix } from './events';

/** What the app records: a fix without an id (one is given) or with its own. */
export type NewFix = Omit<LocationFix, 'id'> & { id?: string };

export interface DeadLetter {
  fix: LocationFix;
  code: string;
  message: string;
  /** Epoch ms when it was parked. */
  at: number;
}

export interface Outbox {
  /** Store a fix (a fresh `crypto.randomUUID()` id unless it has one); resolves once stored. */
  add(fix: NewFix): Promise<LocationFix>;
  /** Up to `max` pending fixes: the newest first, then the rest oldest-first. */
  peek(max: number): Promise<LocationFix[]>;
  /** Forget these pending fixes (acked `ok`, including `duplicate: true`). */
  remove(ids: readonly string[]): Promise<void>;
  /** Move a pending fix to the dead-letter store (refused, not retryable). */
  deadLetter(id: string, code: string, message: string): Promise<void>;
  deadLetters(): Promise<DeadLetter[]>;
  clearDeadLetters(): Promise<void>;
  /** Pending fixes. */
  count(): Promise<number>;
  /** Pending fixes dropped (oldest first) because the outbox was full. */
  dropped(): Promise<number>;
}

export interface OutboxOptions {
  /** Most pending fixes kept; the oldest is dropped beyond. Default 50 000. */
  maxItems?: number;
  /** Most dead letters kept (oldest dropped). Default 1000. */
  maxDeadLetters?: number;
}

export const DEFAULT_MAX_ITEMS = 50_000;
export const DEFAULT_MAX_DEAD_LETTERS = 1000;

export function newFixId(): string {
  return crypto.randomUUID();
}

function withId(fix: NewFix): LocationFix {
  return { ...fix, id: fix.id ?? newFixId() } as LocationFix;
}

/** Newest first, then the others oldest-first; `items` is oldest-first. */
function order<T>(items: readonly T[], max: number): T[] {
  if (items.length === 0 || max <= 0) return [];
  const newest = items[items.length - 1] as T;
  return [newest, ...items.slice(0, Math.min(max - 1, items.length - 1))];
}

export class MemoryOutbox implements Outbox {
  private pending: LocationFix[] = [];
  private dead: DeadLetter[] = [];
  private droppedCount = 0;
  private readonly maxItems: number;
  private readonly maxDead: number;

  constructor(opts: OutboxOptions = {}) {
    this.maxItems = Math.max(1, opts.maxItems ?? DEFAULT_MAX_ITEMS);
    this.maxDead = Math.max(1, opts.maxDeadLetters ?? DEFAULT_MAX_DEAD_LETTERS);
  }

  async add(fix: NewFix): Promise<LocationFix> {
    const f = withId(fix);
    this.pending.push(f);
    while (this.pending.length > this.maxItems) {
      this.pending.shift();
      this.droppedCount += 1;
    }
    return f;
  }

  async peek(max: number): Promise<LocationFix[]> {
    return order(this.pending, max).map((f) => ({ ...f }));
  }

  async remove(ids: readonly string[]): Promise<void> {
    const gone = new Set(ids);
    this.pending = this.pending.filter((f) => !gone.has(f.id));
  }

  async deadLetter(id: string, code: string, message: string): Promise<void> {
    const i = this.pending.findIndex((f) => f.id === id);
    if (i < 0) return;
    const [fix] = this.pending.splice(i, 1);
    this.dead.push({ fix: fix as LocationFix, code, message, at: Date.now() });
    while (this.dead.length > this.maxDead) this.dead.shift();
  }

  async deadLetters(): Promise<DeadLetter[]> {
    return this.dead.map((d) => ({ ...d, fix: { ...d.fix } }));
  }

  async clearDeadLetters(): Promise<void> {
    this.dead = [];
  }

  async count(): Promise<number> {
    return this.pending.length;
  }

  async dropped(): Promise<number> {
    return this.droppedCount;
  }
}

// ---- IndexedDB ---------------------------------------------------------------

const PENDING = 'pending';
const DEAD = 'dead';
const META = 'meta';
const BY_ID = 'byId';

interface PendingRow {
  n?: number;
  fix: LocationFix;
}

function req<T>(r: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}

function done(tx: IDBTransaction): Promise<void> {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error ?? new Error('IndexedDB transaction aborted'));
  });
}

export interface IndexedDbOutboxOptions extends OutboxOptions {
  /** Database name; one per signed-in driver. Default `wecare.rt.driver.outbox.v1`. */
  name?: string;
  indexedDB?: IDBFactory;
}

export class IndexedDbOutbox implements Outbox {
  private readonly maxItems: number;
  private readonly maxDead: number;

  private constructor(
    private readonly db: IDBDatabase,
    opts: OutboxOptions,
  ) {
    this.maxItems = Math.max(1, opts.maxItems ?? DEFAULT_MAX_ITEMS);
    this.maxDead = Math.max(1, opts.maxDeadLetters ?? DEFAULT_MAX_DEAD_LETTERS);
  }

  static async open(opts: IndexedDbOutboxOptions = {}): Promise<IndexedDbOutbox> {
    const factory = opts.indexedDB ?? globalThis.indexedDB;
    if (!factory) throw new Error('IndexedDB is not available');
    const open = factory.open(opts.name ?? 'wecare.rt.driver.outbox.v1', 1);
    open.onupgradeneeded = () => {
      const db = open.result;
      // `n` (auto-increment) is the local recording order.
      const pending = db.createObjectStore(PENDING, { keyPath: 'n', autoIncrement: true });
      pending.createIndex(BY_ID, 'fix.id', { unique: true });
      db.createObjectStore(DEAD, { keyPath: 'n', autoIncrement: true });
      db.createObjectStore(META);
    };
    const db = await req(open);
    return new IndexedDbOutbox(db, opts);
  }

  close(): void {
    this.db.close();
  }

  private tx(stores: string[], mode: IDBTransactionMode): IDBTransaction {
    // `strict`: the commit is flushed to disk before `complete` fires.
    return mode === 'readwrite' ? this.db.transaction(stores, mode, { durability: 'strict' }) : this.db.transaction(stores, mode);
  }

  async add(fix: NewFix): Promise<LocationFix> {
    const f = withId(fix);
    const tx = this.tx([PENDING, META], 'readwrite');
    const finished = done(tx);
    const pending = tx.objectStore(PENDING);
    const meta = tx.objectStore(META);
    pending.add({ fix: f } satisfies PendingRow);
    const count = await req(pending.count());
    if (count > this.maxItems) {
      let excess = count - this.maxItems;
      const cur = pending.openCursor();
      await new Promise<void>((resolve, reject) => {
        cur.onerror = () => reject(cur.error);
        cur.onsuccess = () => {
          const c = cur.result;
          if (!c || excess <= 0) return resolve();
          c.delete();
          excess -= 1;
          c.continue();
        };
      });
      const before = ((await req(meta.get('dropped'))) as number | undefined) ?? 0;
      meta.put(before + (count - this.maxItems), 'dropped');
    }
    await finished;
    return f;
  }

  async peek(max: number): Promise<LocationFix[]> {
    if (max <= 0) return [];
    const tx = this.tx([PENDING], 'readonly');
    const pending = tx.objectStore(PENDING);
    const last = await req(pending.openCursor(null, 'prev'));
    if (!last) return [];
    const newest = (last.value as PendingRow).fix;
    const lastKey = last.key as number;
    const rest = (await req(pending.getAll(IDBKeyRange.upperBound(lastKey, true), max - 1))) as PendingRow[];
    return [newest, ...rest.map((r) => r.fix)];
  }

  async remove(ids: readonly string[]): Promise<void> {
    if (ids.length === 0) return;
    const tx = this.tx([PENDING], 'readwrite');
    const finished = done(tx);
    const pending = tx.objectStore(PENDING);
    const index = pending.index(BY_ID);
    for (const id of ids) {
      const key = await req(index.getKey(id));
      if (key !== undefined) pending.delete(key);
    }
    await finished;
  }

  async deadLetter(id: string, code: string, message: string): Promise<void> {
    const tx = this.tx([PENDING, DEAD], 'readwrite');
    const finished = done(tx);
    const pending = tx.objectStore(PENDING);
    const dead = tx.objectStore(DEAD);
    const key = await req(pending.index(BY_ID).getKey(id));
    if (key !== undefined) {
      const row = (await req(pending.get(key))) as PendingRow;
      pending.delete(key);
      dead.add({ fix: row.fix, code, message, at: Date.now() });
      const n = await req(dead.count());
      if (n > this.maxDead) {
        const keys = await req(dead.getAllKeys(null, n - this.maxDead));
        for (const k of keys) dead.delete(k);
      }
    }
    await finished;
  }

  async deadLetters(): Promise<DeadLetter[]> {
    const tx = this.tx([DEAD], 'readonly');
    const rows = (await req(tx.objectStore(DEAD).getAll())) as (DeadLetter & { n: number })[];
    return rows.map(({ fix, code, message, at }) => ({ fix, code, message, at }));
  }

  async clearDeadLetters(): Promise<void> {
    const tx = this.tx([DEAD], 'readwrite');
    const finished = done(tx);
    tx.objectStore(DEAD).clear();
    await finished;
  }

  async count(): Promise<number> {
    const tx = this.tx([PENDING], 'readonly');
    return req(tx.objectStore(PENDING).count());
  }

  async dropped(): Promise<number> {
    const tx = this.tx([META], 'readonly');
    return ((await req(tx.objectStore(META).get('dropped'))) as number | undefined) ?? 0;
  }
}
