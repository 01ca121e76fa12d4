/**
 * The Leaflet map: one circle marker per driver (at its newest non-outdated
 * fix, coloured by freshness and presence) and one trail polyline per driver
 * (every fix, in `recordedAt` order). Works without tiles: plain background,
 * a scale and a coordinates readout.
 */
import * as L from 'leaflet';
import { freshness, type DriverView, type Fleet, type Freshness } from '../client/fleet';

const COLOURS: Record<Freshness, string> = {
  fresh: '#1a9c3c',
  stale: '#e0a100',
  old: '#d2322d',
  offline: '#8c8c8c',
  unknown: '#5b6b7a',
};

interface DriverLayer {
  marker: L.CircleMarker | null;
  trail: L.Polyline;
  freshness: Freshness | null;
  trailLength: number;
}

export class MapView {
  readonly map: L.Map;
  private readonly layers = new Map<string, DriverLayer>();
  private fitted = false;

  constructor(el: HTMLElement, tiles: string | null) {
    this.map = L.map(el, { center: [13.7563, 100.5018], zoom: 11, preferCanvas: true });
    if (tiles) {
      L.tileLayer(tiles, {
        maxZoom: 19,
        attribution: '&copy; <a href="https://www.openstreetmap.org/copyright">OpenStreetMap</a> contributors',
      }).addTo(this.map);
    }
    L.control.scale({ imperial: false }).addTo(this.map);
    this.addCoordinates();
  }

  private addCoordinates(): void {
    const Readout = L.Control.extend({
      onAdd: () => {
        const div = L.DomUtil.create('div', 'coords-readout');
        div.dataset.testid = 'coords';
        const show = (ll: L.LatLng, what: string) => {
          div.textContent = `${what} ${ll.lat.toFixed(5)}, ${ll.lng.toFixed(5)}`;
        };
        show(this.map.getCenter(), 'centre');
        this.map.on('mousemove', (e: L.LeafletMouseEvent) => show(e.latlng, 'cursor'));
        this.map.on('mouseout moveend', () => show(this.map.getCenter(), 'centre'));
        return div;
      },
    });
    new Readout({ position: 'bottomright' }).addTo(this.map);
  }

  /** Draw what changed since the last call (or everything after a snapshot). */
  render(fleet: Fleet, now: number): void {
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
    if (!this.fitted) this.fitOnce(fleet);
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

  focus(driverId: string): void {
    const m = this.layers.get(driverId)?.marker;
    if (m) this.map.setView(m.getLatLng(), Math.max(this.map.getZoom(), 14));
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

  markerColour(driverId: string): Freshness | null {
    return this.layers.get(driverId)?.freshness ?? null;
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
        layer.marker = L.circleMarker(ll, {
          radius: 8,
          weight: 2,
          color: '#fff',
          fillOpacity: 0.95,
          fillColor: COLOURS[f],
        })
          .bindTooltip(d.driverId, { direction: 'top', offset: [0, -8] })
          .addTo(this.map);
      } else {
        layer.marker.setLatLng(ll);
      }
      layer.marker.setTooltipContent(`${d.driverId} · ${d.status}${d.online ? '' : ' · offline'}`);
      layer.freshness = f;
      layer.marker.setStyle({ fillColor: COLOURS[f], color: f === 'offline' ? '#666' : '#fff' });
    } else if (layer.marker) {
      layer.marker.remove();
      layer.marker = null;
      layer.freshness = null;
    }
  }

  private fitOnce(fleet: Fleet): void {
    const pts: L.LatLngTuple[] = [];
    for (const d of fleet.drivers.values()) if (d.marker) pts.push([d.marker.lat, d.marker.lng]);
    if (pts.length === 0) return;
    this.fitted = true;
    if (pts.length === 1) this.map.setView(pts[0]!, 14);
    else this.map.fitBounds(L.latLngBounds(pts), { padding: [40, 40], maxZoom: 15 });
  }
}
