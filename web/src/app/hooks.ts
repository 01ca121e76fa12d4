/**
 * `window.__wecare`: a read-mostly view of the page for the browser tests
 * (and for debugging in the console). `setTokenProvider` is the one hook
 * that changes behaviour: it replaces where fresh tokens come from. A
 * provider can also be installed before the page starts, as
 * `window.__wecareInit = { tokenProvider }` (e.g. from a test's init script).
 */
import type { ConnState } from '../client/connection';
import { freshness } from '../client/fleet';
import type { Lang } from './i18n';
import type { LivePage } from './page';
import type { Session, TokenSource } from './session';

export interface DriverHook {
  trail: number;
  marker: [number, number] | null;
  /** `null`: the driver has not reported a status yet. */
  status: string | null;
  online: boolean;
  freshness: string;
  lastSeen: number | null;
}

export interface WecareHooks {
  /** The banner as shown (not the client's state a redraw may not have reached yet). */
  banner(): { kind: ConnState['kind']; text: string };
  bannerHistory(): string[];
  /** Every distinct banner text shown so far. */
  bannerTexts(): string[];
  lang(): Lang;
  eventsProcessed(): number;
  stats(): Record<string, number>;
  position(): { streamId: string | null; lastSeq: number | null };
  drivers(): Record<string, DriverHook>;
  /** Points of a driver's trail as drawn, `[lat, lng]` in order. */
  trail(driverId: string): [number, number][];
  trailCount(driverId: string): number;
  markerPosition(driverId: string): [number, number] | null;
  /** Drivers whose marker is inside the visible part of the map. */
  driversInView(): string[];
  /** Whether the map still frames the whole fleet by itself (the officer has not moved it). */
  followingFleet(): boolean;
  setTokenProvider(p: TokenSource | null): void;
}

declare global {
  interface Window {
    __wecare?: WecareHooks;
    __wecareInit?: { tokenProvider?: TokenSource };
  }
}

export function installHooks(page: LivePage, session: Session, lang: () => Lang): void {
  const { client, map, banner } = page;
  const fleet = client.sync.fleet;
  window.__wecare = {
    banner: () => ({ ...banner.current }),
    bannerHistory: () => [...banner.history],
    bannerTexts: () => [...banner.texts],
    lang,
    eventsProcessed: () => client.sync.stats.applied,
    stats: () => ({ ...client.stats, ...client.sync.stats }),
    position: () => client.sync.position(),
    drivers: () => {
      const now = Date.now();
      const out: Record<string, DriverHook> = {};
      for (const d of fleet.drivers.values()) {
        out[d.driverId] = {
          trail: map.trailPoints(d.driverId),
          marker: map.markerPosition(d.driverId),
          status: d.status,
          online: d.online,
          freshness: freshness(d, now),
          lastSeen: d.lastSeen,
        };
      }
      return out;
    },
    trail: (id) => (fleet.drivers.get(id)?.trail ?? []).map((p) => [p.lat, p.lng]),
    trailCount: (id) => map.trailPoints(id),
    markerPosition: (id) => map.markerPosition(id),
    driversInView: () => map.driversInView(),
    followingFleet: () => map.isFollowing(),
    setTokenProvider: (p) => session.setProvider(p),
  };
}
