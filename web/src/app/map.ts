/**
 * The Leaflet map: one circle marker per driver (at its newest non-outdated
 * fix, coloured by freshness and presence) and one trail polyline per driver
 * (every fix, in `recordedAt` order). Works without tiles: plain background,
 * a scale and a coordinates readout.
 *
 * Framing: until the officer moves the map, it follows the fleet — it fits
 * every driver when the fleet first becomes current and again whenever a
 * marker falls outside the view. Panning or zooming by hand stops that
 * (nothing moves under the officer's hand); "Show all" fits the fleet and
 * follows it again; picking a driver brings that one into view.
 */
import * as L from 'leaflet';
import { freshness, type DriverView, type Fleet, type Freshness } from '../client/fleet';
import type { Texts } from './i18n';
import { statusLabel } from './list';

const COLOURS: Record<Freshness, string> = {
  fresh: '#1a9c3c',
  stale: '#e0a100',
  old: '#d2322d',
  offline: '#8c8c8c',
  unknown: '#5b6b7a',
};
/** Zoom for a single driver (about 500 m across the scale bar). */
const ONE_DRIVER_ZOOM = 14;
const FIT_PADDING: L.PointTuple = [40, 40];

interface DriverLayer {
  marker: L.CircleMarker | null;
  trail: L.Polyline;
  freshness: Freshness | null;
  trailLength: number;
}

export class MapView {
  readonly map: L.Map;
  private readonly layers = new Map<string, DriverLayer>();
  /** The map frames the whole fleet until the officer moves it. */
  private following = true;
  /** Whether the fleet has been framed at all (the first markers are framed, wherever they are). */
  private framed = false;
  /** Our own moves run synchronously (no animation) inside this flag, so a move outside it is the officer's. */
  private moving = false;
  private zoom: L.Control.Zoom | null = null;
  private readonly showAllButton: HTMLButtonElement;
  private readonly coords: HTMLDivElement;
  private coordsLabel: (ll: L.LatLng, cursor: boolean) => void = () => {};
  private tiles: L.TileLayer | null = null;
  private t: Texts;
  private lastFleet: Fleet | null = null;

  constructor(el: HTMLElement, tiles: string | null, t: Texts) {
    this.t = t;
    this.map = L.map(el, { center: [13.7563, 100.5018], zoom: 11, preferCanvas: true, zoomControl: false });
    if (tiles) this.tiles = L.tileLayer(tiles, { maxZoom: 19, attribution: t.osmAttribution }).addTo(this.map);
    this.map.on('movestart zoomstart', () => {
      if (!this.moving) this.following = false;
    });
    this.showAllButton = this.addShowAll();
    L.control.scale({ imperial: false }).addTo(this.map);
    this.coords = this.addCoordinates();
    this.setTexts(t);
  }

  /** Re-word every text the map shows (language switch). */
  setTexts(t: Texts): void {
    const old = this.t;
    this.t = t;
    this.zoom?.remove();
    this.zoom = L.control.zoom({ zoomInTitle: t.zoomIn, zoomOutTitle: t.zoomOut, position: 'topleft' });
    this.zoom.addTo(this.map);
    // Keep "Show all" under the zoom buttons.
    this.showAllButton.parentElement?.parentElement?.appendChild(this.showAllButton.parentElement);
    this.showAllButton.textContent = t.showAll;
    this.showAllButton.title = t.showAllTitle;
    if (this.tiles) {
      this.map.attributionControl.removeAttribution(old.osmAttribution).addAttribution(t.osmAttribution);
    }
    this.coordsLabel(this.map.getCenter(), false);
    if (this.lastFleet) for (const d of this.lastFleet.drivers.values()) this.tooltip(d);
  }

  private addShowAll(): HTMLButtonElement {
    const button = L.DomUtil.create('button', 'show-all');
    button.type = 'button';
    button.dataset.testid = 'show-all';
    const ShowAll = L.Control.extend({
      onAdd: () => {
        const box = L.DomUtil.create('div', 'leaflet-bar show-all-bar');
        box.appendChild(button);
        L.DomEvent.disableClickPropagation(box);
        L.DomEvent.on(button, 'click', () => this.showAll());
        return box;
      },
    });
    new ShowAll({ position: 'topleft' }).addTo(this.map);
    return button;
  }

  private addCoordinates(): HTMLDivElement {
    const div = L.DomUtil.create('div', 'coords-readout');
    div.dataset.testid = 'coords';
    this.coordsLabel = (ll, cursor) => {
      div.textContent = `${cursor ? this.t.cursor : this.t.centre} ${ll.lat.toFixed(5)}, ${ll.lng.toFixed(5)}`;
    };
    const Readout = L.Control.extend({
      onAdd: () => {
        this.map.on('mousemove', (e: L.LeafletMouseEvent) => this.coordsLabel(e.latlng, true));
        this.map.on('mouseout moveend', () => this.coordsLabel(this.map.getCenter(), false));
        return div;
      },
    });
    new Readout({ position: 'bottomright' }).addTo(this.map);
    return div;
  }

  /** Draw what changed since the last call (or everything after a snapshot). */
  render(fleet: Fleet, now: number): void {
    this.lastFleet = fleet;
    if (fleet.replaced) {
      for (const [id, layer] of this.layers) {
        if (!fleet.drivers.has(id)) {
          layer.marker?.remove();
          layer.trail.remove();
          this.layers.delete(id);
        }
      }
      for (const id of fleet.drivers.keys()) fleet.dirty.add(id);
      fleet.replaced = false;
    }
    for (const id of fleet.dirty) {
      const d = fleet.drivers.get(id);
      if (d) this.draw(d, now);
    }
    fleet.dirty.clear();
    if (this.following && (!this.framed || this.someoneOutOfView())) this.fit();
  }

  /** The fleet became current (first snapshot or replay done): frame all of it unless the officer took over. */
  fleetCurrent(): void {
    if (this.following) this.fit();
  }

  /** "Show all": frame the whole fleet and keep following it. */
  showAll(): void {
    this.following = true;
    this.fit();
  }

  /** Bring one driver into view (a click on its row): centre on it, zoomed in at least to street level. */
  focus(driverId: string): void {
    const layer = this.layers.get(driverId);
    const ll = layer?.marker?.getLatLng() ?? layer?.trail.getLatLngs().at(-1);
    if (!ll || !(ll instanceof L.LatLng)) return;
    this.following = false;
    this.move(() => this.map.setView(ll, Math.max(this.map.getZoom(), ONE_DRIVER_ZOOM)));
    layer?.marker?.openTooltip();
  }

  /** Recolour markers as fixes age (called on a timer). */
  recolour(fleet: Fleet, now: number): void {
    for (const d of fleet.drivers.values()) {
      const layer = this.layers.get(d.driverId);
      if (!layer?.marker) continue;
      const f = freshness(d, now);
      if (f !== layer.freshness) {
        layer.freshness = f;
        layer.marker.setStyle({ fillColor: COLOURS[f], color: f === 'offline' ? '#666' : '#fff' });
      }
    }
  }

  /** Test hook: where the marker of a driver is drawn. */
  markerPosition(driverId: string): [number, number] | null {
    const m = this.layers.get(driverId)?.marker;
    if (!m) return null;
    const ll = m.getLatLng();
    return [ll.lat, ll.lng];
  }

  /** Test hook: how many points the drawn trail has. */
  trailPoints(driverId: string): number {
    return this.layers.get(driverId)?.trailLength ?? 0;
  }

  /** Test hook: drivers whose marker is inside the visible map. */
  driversInView(): string[] {
    const bounds = this.map.getBounds();
    const out: string[] = [];
    for (const [id, layer] of this.layers) if (layer.marker && bounds.contains(layer.marker.getLatLng())) out.push(id);
    return out.sort();
  }

  /** Test hook: whether the map still follows the fleet. */
  isFollowing(): boolean {
    return this.following;
  }

  markerColour(driverId: string): Freshness | null {
    return this.layers.get(driverId)?.freshness ?? null;
  }

  private move(f: () => void): void {
    this.moving = true;
    try {
      f();
    } finally {
      this.moving = false;
    }
  }

  private someoneOutOfView(): boolean {
    const bounds = this.map.getBounds();
    for (const layer of this.layers.values()) if (layer.marker && !bounds.contains(layer.marker.getLatLng())) return true;
    return false;
  }

  private fit(): void {
    const pts: L.LatLng[] = [];
    for (const layer of this.layers.values()) if (layer.marker) pts.push(layer.marker.getLatLng());
    if (pts.length === 0) return;
    this.framed = true;
    // No animation: the move starts and ends inside `move`, so it is not taken for the officer's.
    this.move(() => {
      if (pts.length === 1) this.map.setView(pts[0]!, ONE_DRIVER_ZOOM, { animate: false });
      else this.map.fitBounds(L.latLngBounds(pts), { padding: FIT_PADDING, maxZoom: 15, animate: false });
    });
  }

  private tooltip(d: DriverView): void {
    const marker = this.layers.get(d.driverId)?.marker;
    if (marker) marker.setTooltipContent(`${d.driverId} · ${statusLabel(d.status, this.t)}${d.online ? '' : ` · ${this.t.offline}`}`);
  }

  private draw(d: DriverView, now: number): void {
    let layer = this.layers.get(d.driverId);
    if (!layer) {
      layer = {
        marker: null,
        trail: L.polyline([], { color: '#2b6cb0', weight: 3, opacity: 0.6, interactive: false }).addTo(this.map),
        freshness: null,
        trailLength: 0,
      };
      this.layers.set(d.driverId, layer);
    }
    layer.trail.setLatLngs(d.trail.map((p) => [p.lat, p.lng] as L.LatLngTuple));
    layer.trailLength = d.trail.length;
    const f = freshness(d, now);
    if (d.marker) {
      const ll: L.LatLngTuple = [d.marker.lat, d.marker.lng];
      if (!layer.marker) {
        layer.marker = L.circleMarker(ll, { radius: 8, weight: 2, color: '#fff', fillOpacity: 0.95, fillColor: COLOURS[f] })
          .bindTooltip(d.driverId, { direction: 'top', offset: [0, -8] })
          .addTo(this.map);
      } else {
        layer.marker.setLatLng(ll);
      }
      this.tooltip(d);
      layer.freshness = f;
      layer.marker.setStyle({ fillColor: COLOURS[f], color: f === 'offline' ? '#666' : '#fff' });
    } else if (layer.marker) {
      layer.marker.remove();
      layer.marker = null;
      layer.freshness = null;
    }
  }
}
