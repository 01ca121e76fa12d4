/**
 * The fleet as a watcher sees it: per driver the marker position (moved only
 * by non-`outdated` fixes), a trail of every fix in `recordedAt` order,
 * status and presence. Pure state, no I/O; the stream position lives in
 * `sync.ts`.
 */
import type { DriverPresence, DriverStatusUpdated, DriversSnapshot, LocationUpdated } from './events';

/** One fix on a driver's trail. */
export interface TrailPoint {
  seq: number;
  lat: number;
  lng: number;
  /** Device time of the fix, epoch ms. */
  recordedAt: number;
  outdated: boolean;
}

export interface MarkerFix {
  lat: number;
  lng: number;
  /** epoch ms */
  recordedAt: number;
}

export interface DriverView {
  driverId: string;
  email?: string;
  /** Where the marker stands: the newest non-outdated fix (or the snapshot's position). */
  marker: MarkerFix | null;
  trail: TrailPoint[];
  /**
   * The status the driver last reported; `null` until it reports one. Never
   * assumed (contract v1.3 §4): a default AVAILABLE would show an ambulance
   * the backend assigned as free.
   */
  status: string | null;
  online: boolean;
  /** Receive time of the last fix or status, epoch ms. */
  lastSeen: number | null;
}

/** Trails keep at most this many points per driver (oldest dropped), so memory stays bounded. */
export const MAX_TRAIL_POINTS = 5000;

const parseTime = (iso: string | null | undefined): number | null => {
  if (iso == null) return null;
  const t = Date.parse(iso);
  return Number.isFinite(t) ? t : null;
};

/** Insert keeping (`recordedAt`, `seq`) order; a point with a seq already present is ignored. */
export function insertTrailPoint(trail: TrailPoint[], p: TrailPoint, max = MAX_TRAIL_POINTS): boolean {
  // Fixes nearly always arrive in order: search from the end.
  let i = trail.length;
  while (i > 0) {
    const q = trail[i - 1]!;
    if (q.seq === p.seq) return false;
    if (q.recordedAt < p.recordedAt || (q.recordedAt === p.recordedAt && q.seq < p.seq)) break;
    i -= 1;
  }
  // A duplicate seq could sit before the insertion point only with an equal time and bigger seq; check locally.
  for (let j = i; j < trail.length && trail[j]!.recordedAt === p.recordedAt; j += 1) {
    if (trail[j]!.seq === p.seq) return false;
  }
  trail.splice(i, 0, p);
  if (trail.length > max) trail.splice(0, trail.length - max);
  return true;
}

export class Fleet {
  readonly drivers = new Map<string, DriverView>();
  /** Drivers changed since the view last drew them (the view clears it). */
  readonly dirty = new Set<string>();
  /** Drivers were removed or replaced wholesale: the view must redraw everything. */
  replaced = false;

  private driver(driverId: string): DriverView {
    let d = this.drivers.get(driverId);
    if (!d) {
      d = { driverId, marker: null, trail: [], status: null, online: false, lastSeen: null };
      this.drivers.set(driverId, d);
    }
    this.dirty.add(driverId);
    return d;
  }

  /**
   * Replace the whole state with a snapshot. Trails are history of the same
   * stream, so they are kept for drivers still present when `keepTrails`
   * (same streamId); a new stream starts with empty trails.
   */
  applySnapshot(s: DriversSnapshot, keepTrails: boolean): void {
    const old = this.drivers;
    const next = new Map<string, DriverView>();
    for (const sd of s.drivers) {
      const prev = keepTrails ? old.get(sd.driverId) : undefined;
      const recordedAt = parseTime(sd.recordedAt);
      const view: DriverView = {
        driverId: sd.driverId,
        marker: sd.lat != null && sd.lng != null ? { lat: sd.lat, lng: sd.lng, recordedAt: recordedAt ?? 0 } : null,
        trail: prev ? prev.trail : [],
        status: sd.status ?? null,
        online: sd.online,
        lastSeen: parseTime(sd.lastSeen),
      };
      if (prev?.email !== undefined) view.email = prev.email;
      next.set(sd.driverId, view);
    }
    old.clear();
    for (const [k, v] of next) old.set(k, v);
    this.replaced = true;
  }

  applyLocation(e: LocationUpdated): void {
    const d = this.driver(e.driverId);
    const recordedAt = parseTime(e.recordedAt) ?? parseTime(e.timestamp) ?? Date.now();
    insertTrailPoint(d.trail, { seq: e.seq, lat: e.lat, lng: e.lng, recordedAt, outdated: e.outdated });
    if (!e.outdated) d.marker = { lat: e.lat, lng: e.lng, recordedAt };
    // The event's status is the driver's current one, also for an outdated fix;
    // an event without one (nothing reported yet) leaves what we know alone.
    if (e.status) d.status = e.status;
    if (e.driverEmail) d.email = e.driverEmail;
    this.seen(d, e.timestamp);
  }

  applyStatus(e: DriverStatusUpdated): void {
    const d = this.driver(e.driverId);
    d.status = e.status;
    if (e.driverEmail) d.email = e.driverEmail;
    this.seen(d, e.timestamp);
  }

  applyPresence(e: DriverPresence): void {
    const d = this.driver(e.driverId);
    d.online = e.online;
    if (d.lastSeen === null) this.seen(d, e.timestamp);
  }

  clear(): void {
    this.drivers.clear();
    this.replaced = true;
  }

  private seen(d: DriverView, iso: string): void {
    const t = parseTime(iso);
    if (t !== null && (d.lastSeen === null || t > d.lastSeen)) d.lastSeen = t;
  }
}

/** Marker colour classes by the age of the last fix and presence. */
export type Freshness = 'fresh' | 'stale' | 'old' | 'offline' | 'unknown';

export const STALE_AFTER_MS = 60_000;
export const OLD_AFTER_MS = 120_000;

export function freshness(d: DriverView, now: number): Freshness {
  if (!d.online) return 'offline';
  if (!d.marker) return 'unknown';
  const age = now - Math.min(d.marker.recordedAt, now);
  if (age > OLD_AFTER_MS) return 'old';
  if (age > STALE_AFTER_MS) return 'stale';
  return 'fresh';
}

/**
 * Server time of the newest fix or status on screen (epoch ms), or `null`
 * with none: what the banner's "newest data" age is measured from while
 * the page is not live.
 */
export function newestDataAt(fleet: Fleet): number | null {
  let newest: number | null = null;
  for (const d of fleet.drivers.values()) if (d.lastSeen !== null && (newest === null || d.lastSeen > newest)) newest = d.lastSeen;
  return newest;
}
