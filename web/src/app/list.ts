/**
 * The driver list: status, presence, last seen, and a filter box. Rows are
 * kept per driver and updated in place: a busy fleet redraws the list many
 * times a second, and a row replaced between the officer's mouse-down and
 * mouse-up loses the click.
 */
import { freshness, type DriverView, type Fleet } from '../client/fleet';
import type { Texts } from './i18n';

const TWO_DAYS_MS = 48 * 3600_000;

export function relativeTime(then: number | null, now: number, t: Texts): string {
  if (then === null) return '—';
  const age = Math.max(0, now - then);
  return age < TWO_DAYS_MS ? t.ago(age) : t.dateTime(then);
}

/**
 * A status as the officer reads it: worded when known, else as the server
 * sent it; `null` (none reported yet) says so rather than guess one.
 */
export function statusLabel(status: string | null, t: Texts): string {
  if (status === null) return t.statusNotReported;
  return t.status[status] ?? status;
}

/**
 * The row's `data-status`: the code as sent, or "" while none is reported
 * (no status code is empty, so the two never mix).
 */
export function statusCode(status: string | null): string {
  return status ?? '';
}

export function matches(d: DriverView, filter: string, t: Texts): boolean {
  const f = filter.trim().toLowerCase();
  if (!f) return true;
  const presence = d.online ? t.online : t.offline;
  return [d.driverId, d.email ?? '', statusCode(d.status), statusLabel(d.status, t), presence].some((v) =>
    v.toLowerCase().includes(f),
  );
}

export class DriverList {
  private filter = '';
  private readonly rows = new Map<string, HTMLTableRowElement>();
  private picked: string | null = null;

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
      const id = row?.dataset.driverId;
      if (!id || !row) return;
      // Shown as selected at once, not at the next (scheduled) redraw: the
      // map moves on this click, and the row must agree with it.
      const previous = this.picked === null ? undefined : this.rows.get(this.picked);
      previous?.setAttribute('aria-selected', 'false');
      previous?.classList.remove('picked');
      row.setAttribute('aria-selected', 'true');
      row.classList.add('picked');
      this.picked = id;
      this.onPick(id);
      this.refresh();
    });
  }

  render(fleet: Fleet, now: number, t: Texts): void {
    const all = [...fleet.drivers.values()].sort((a, b) => a.driverId.localeCompare(b.driverId));
    const shown = all.filter((d) => matches(d, this.filter, t));
    this.count.textContent = shown.length === all.length ? `${all.length}` : `${shown.length} / ${all.length}`;
    for (const [id, tr] of this.rows) {
      if (!fleet.drivers.has(id)) {
        tr.remove();
        this.rows.delete(id);
      }
    }
    // Walk in display order, moving a row only when it is out of place.
    let at: ChildNode | null = this.body.firstChild;
    const visible = new Set<string>();
    for (const d of shown) {
      const tr = this.row(d.driverId);
      this.fill(tr, d, now, t);
      visible.add(d.driverId);
      if (tr !== at) this.body.insertBefore(tr, at);
      else at = at.nextSibling;
    }
    for (const [id, tr] of this.rows) if (!visible.has(id) && tr.parentNode) tr.remove();
  }

  private row(driverId: string): HTMLTableRowElement {
    let tr = this.rows.get(driverId);
    if (!tr) {
      tr = document.createElement('tr');
      tr.dataset.driverId = driverId;
      for (const cls of ['driver-id', 'status', 'presence', 'last-seen']) {
        const td = document.createElement('td');
        td.className = cls;
        tr.appendChild(td);
      }
      this.rows.set(driverId, tr);
    }
    return tr;
  }

  private fill(tr: HTMLTableRowElement, d: DriverView, now: number, t: Texts): void {
    const cls = `fresh-${freshness(d, now)}${d.driverId === this.picked ? ' picked' : ''}`;
    if (tr.className !== cls) tr.className = cls;
    tr.setAttribute('aria-selected', String(d.driverId === this.picked));
    tr.title = d.marker ? '' : t.noPosition;
    tr.dataset.status = statusCode(d.status);
    const cells = [
      d.email ? `${d.driverId}\n${d.email}` : d.driverId,
      statusLabel(d.status, t),
      d.online ? t.online : t.offline,
      relativeTime(d.lastSeen, now, t),
    ];
    for (const [i, text] of cells.entries()) {
      const td = tr.children[i]!;
      // Unchanged text is left alone: no DOM churn under the pointer.
      if (td.textContent !== text) td.textContent = text;
    }
  }
}
