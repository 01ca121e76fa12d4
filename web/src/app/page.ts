/**
 * The signed-in page: the watcher client feeding the map, the driver list
 * and the banner. All three are drawn in one pass, so the banner never says
 * "live" in a frame whose map still lacks events the client holds.
 */
import { newestDataAt } from '../client/fleet';
import { WatcherClient } from '../client/watcher';
import { Banner } from './banner';
import type { PageConfig } from './config';
import { texts, type Lang } from './i18n';
import { DriverList } from './list';
import { MapView } from './map';
import type { Session } from './session';

const $ = <T extends HTMLElement>(id: string): T => {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} missing from index.html`);
  return el as T;
};

export interface LivePage {
  client: WatcherClient;
  map: MapView;
  banner: Banner;
  setLang(lang: Lang): void;
}

export function startLivePage(
  config: PageConfig,
  session: Session,
  storage: Storage | null,
  lang: Lang,
  onState: (c: WatcherClient) => void,
): LivePage {
  let t = texts(lang);
  const banner = new Banner($('banner'));
  const map = new MapView($('map'), config.tiles, t);
  const client = new WatcherClient({ baseUrl: config.serverUrl, tokenProvider: session.provider, storage });
  const list = new DriverList(
    $<HTMLTableSectionElement>('driver-rows'),
    $('driver-count'),
    $<HTMLInputElement>('driver-filter'),
    (id) => map.focus(id),
    () => schedule(),
  );

  const showBanner = (now: number) => {
    const newest = newestDataAt(client.sync.fleet);
    banner.show(client.state, t, newest === null ? null : Math.max(0, now - newest));
  };

  let wasCurrent = false;
  const redraw = () => {
    scheduled = false;
    const now = Date.now();
    map.render(client.sync.fleet, now);
    list.render(client.sync.fleet, now, t);
    const kind = client.state.kind;
    const current = kind === 'live' || kind === 'resynced-after-gap';
    if (current && !wasCurrent) map.fleetCurrent();
    wasCurrent = current;
    showBanner(now);
  };
  // Coalesce redraws: a replay can deliver thousands of events at once.
  let scheduled = false;
  const schedule = () => {
    if (!scheduled) {
      scheduled = true;
      setTimeout(redraw, 0);
    }
  };
  client.onChange(schedule);
  client.onState(() => {
    schedule();
    onState(client);
  });

  // Time alone changes some texts: the age of the newest data while not live (every second),
  // marker colours and "last seen" (every 5 s).
  setInterval(() => {
    if (client.state.kind !== 'live') showBanner(Date.now());
  }, 1000);
  setInterval(() => {
    const now = Date.now();
    map.recolour(client.sync.fleet, now);
    list.render(client.sync.fleet, now, t);
  }, 5000);
  window.addEventListener('pagehide', () => client.flushSave());

  client.start();
  redraw();
  return {
    client,
    map,
    banner,
    setLang(l) {
      t = texts(l);
      map.setTexts(t);
      redraw();
    },
  };
}
