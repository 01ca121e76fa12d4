/**
 * Keeps the watcher's position (`streamId`, `lastSeq`) in localStorage
 * together with the fleet it describes, so a reload resumes from `lastSeq`
 * instead of starting over. The two are saved as one value: a position is
 * useless without its state, so if the state cannot be saved neither is.
 */
import type { DriverView } from './fleet';
import type { StreamSync } from './sync';

export interface KeyValueStore {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

export const STORAGE_KEY = 'wecare.rt.watcher.v2';
/**
 * Fleets saved before contract v1.3 hold an AVAILABLE the client invented for
 * every driver that never reported a status, indistinguishable from a real
 * one, and a resume replays only newer events (no snapshot) — so the old
 * value would stick. It is dropped: that tab starts from a snapshot once.
 */
const OLD_STORAGE_KEYS = ['wecare.rt.watcher.v1'];
/** Trail points per driver kept across a reload (the live trail may hold more). */
const PERSISTED_TRAIL_POINTS = 500;

interface Saved {
  v: 2;
  streamId: string | null;
  lastSeq: number | null;
  drivers: DriverView[];
}

export function load(store: KeyValueStore | null, sync: StreamSync): boolean {
  if (!store) return false;
  try {
    for (const k of OLD_STORAGE_KEYS) store.removeItem(k);
    const raw = store.getItem(STORAGE_KEY);
    if (!raw) return false;
    const saved = JSON.parse(raw) as Saved;
    if (saved.v !== 2 || !Array.isArray(saved.drivers)) return false;
    sync.fleet.clear();
    for (const d of saved.drivers) sync.fleet.drivers.set(d.driverId, d);
    sync.restore({ streamId: saved.streamId, lastSeq: saved.lastSeq });
    return true;
  } catch {
    store.removeItem(STORAGE_KEY);
    return false;
  }
}

export function save(store: KeyValueStore | null, sync: StreamSync): void {
  if (!store) return;
  const saved: Saved = {
    v: 2,
    streamId: sync.streamId,
    lastSeq: sync.lastSeq,
    drivers: [...sync.fleet.drivers.values()].map((d) => ({ ...d, trail: d.trail.slice(-PERSISTED_TRAIL_POINTS) })),
  };
  try {
    store.setItem(STORAGE_KEY, JSON.stringify(saved));
  } catch {
    // Quota exceeded or storage disabled: better no position than a position without its state.
    try {
      store.removeItem(STORAGE_KEY);
    } catch {
      /* storage unusable */
    }
  }
}

export function clear(store: KeyValueStore | null): void {
  try {
    for (const k of [STORAGE_KEY, ...OLD_STORAGE_KEYS]) store?.removeItem(k);
  } catch {
    /* storage unusable */
  }
}
