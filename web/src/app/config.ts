/** Page settings from the URL (`?server=`, `?tiles=`, `?token=`). */
export const DEFAULT_TILES = 'https://{s}.tile.openstreetmap.org/{z}/{x}/{y}.png';

export interface PageConfig {
  /** Origin of the realtime server; the page's own origin unless `?server=`. */
  serverUrl: string;
  /** Leaflet tile URL template, or `null` for no tile layer (`?tiles=none`). */
  tiles: string | null;
  /** A token handed over in the URL (removed from the address bar at once). */
  urlToken: string | null;
}

export function readConfig(loc: Location = window.location): PageConfig {
  const q = new URLSearchParams(loc.search);
  const server = q.get('server');
  const tiles = q.get('tiles');
  return {
    serverUrl: (server && server.trim() ? server.trim() : loc.origin).replace(/\/+$/, ''),
    tiles: tiles === null || tiles.trim() === '' ? DEFAULT_TILES : tiles.trim() === 'none' ? null : tiles.trim(),
    urlToken: q.get('token'),
  };
}

/** Drop `?token=` from the address bar and history, keep the other settings. */
export function stripTokenFromUrl(): void {
  const url = new URL(window.location.href);
  if (!url.searchParams.has('token')) return;
  url.searchParams.delete('token');
  window.history.replaceState(null, '', url.toString());
}
