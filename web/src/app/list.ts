/** The driver list: status (as sent), presence, last seen, and a filter box. */
import { freshness, type DriverView, type Fleet } from '../client/fleet';

export function relativeTime(then: number | null, now: number): string {
  if (then === null) return '—';
  const s = Math.max(0, Math.round((now - then) / 1000));
  if (s < 60) return `${s} s ago`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ago`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h ago`;
  return new Date(then).toLocaleString();
}

export function matches(d: DriverView, filter: string): boolean {
  const f = filter.trim().toLowerCase();
  if (!f) return true;
  return [d.driverId, d.email ?? '', d.status, d.online ? 'online' : 'offline'].some((v) => v.toLowerCase().includes(f));
}

export class DriverList {
  private filter = '';

  constructor(
    private readonly body: HTMLTableSectionElement,
    private readonly count: HTMLElement,
    filterInput: HTMLInputElement,
    private readonly onPick: (driverId: string) => void,
    private readonly refresh: () => void,
  ) {
    filterInput.addEventListener('input', () => {
      this.filter = filterInput.value;
      this.refresh();
    });
    body.addEventListener('click', (ev) => {
      const row = (ev.target as HTMLElement).closest('tr');
      if (row?.dataset.driverId) this.onPick(row.dataset.driverId);
    });
  }

  render(fleet: Fleet, now: number): void {
    const all = [...fleet.drivers.values()].sort((a, b) => a.driverId.localeCompare(b.driverId));
    const shown = all.filter((d) => matches(d, this.filter));
    this.count.textContent = shown.length === all.length ? `${all.length}` : `${shown.length} / ${all.length}`;
    const rows = shown.map((d) => {
      const tr = document.createElement('tr');
      tr.dataset.driverId = d.driverId;
      tr.className = `fresh-${freshness(d, now)}`;
      const cells = [
        d.email ? `${d.driverId}\n${d.email}` : d.driverId,
        d.status,
        d.online ? 'online' : 'offline',
        relativeTime(d.lastSeen, now),
      ];
      for (const [i, text] of cells.entries()) {
        const td = document.createElement('td');
        td.textContent = text;
        if (i === 0) td.className = 'driver-id';
        if (i === 1) td.className = 'status';
        tr.appendChild(td);
      }
      return tr;
    });
    this.body.replaceChildren(...rows);
  }
}
