/**
 * Map Command: the officers' live fleet page. Sign in with a token (pasted,
 * or `?token=`), then the watcher client keeps the map, the trails, the
 * driver list and the connection banner current — without a reload, across
 * server restarts, socket outages (HTTP long-poll) and token expiry.
 */
import { WatcherClient } from '../client/watcher';
import { Banner } from './banner';
import { readConfig, stripTokenFromUrl } from './config';
import { installHooks } from './hooks';
import { DriverList } from './list';
import { MapView } from './map';
import { Session, tokenInfo } from './session';

const $ = <T extends HTMLElement>(id: string): T => {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} missing from index.html`);
  return el as T;
};

function localStore(): Storage | null {
  try {
    return window.localStorage;
  } catch {
    return null;
  }
}

function boot(): void {
  const config = readConfig();
  const session = new Session();
  if (config.urlToken) {
    session.token = config.urlToken;
    stripTokenFromUrl();
  }
  if (window.__wecareInit?.tokenProvider) session.setProvider(window.__wecareInit.tokenProvider);

  const signin = $<HTMLDivElement>('signin');
  const signinForm = $<HTMLFormElement>('signin-form');
  const signinToken = $<HTMLTextAreaElement>('signin-token');
  const signinError = $<HTMLParagraphElement>('signin-error');
  const who = $<HTMLSpanElement>('who');

  let client: WatcherClient | null = null;

  const showSignin = (message: string) => {
    signinError.textContent = message;
    signin.hidden = false;
    signinToken.focus();
  };

  const showWho = () => {
    const info = tokenInfo(session.token);
    who.textContent = info
      ? `${info.email ?? info.subject ?? '?'} (${info.role ?? '?'})${
          info.expiresAt ? ` · token until ${new Date(info.expiresAt).toLocaleTimeString()}` : ''
        }`
      : '';
  };

  signinForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const t = signinToken.value.trim();
    if (!t) return;
    session.token = t;
    signinToken.value = '';
    signin.hidden = true;
    showWho();
    if (client) client.reconnectNow();
    else start();
  });

  $<HTMLButtonElement>('signout').addEventListener('click', () => {
    session.token = null;
    client?.forget();
    client?.stop();
    window.location.reload();
  });

  const start = () => {
    const banner = new Banner($('banner'));
    const map = new MapView($('map'), config.tiles);
    const c = new WatcherClient({ baseUrl: config.serverUrl, tokenProvider: session.provider, storage: localStore() });
    client = c;
    const list = new DriverList(
      $<HTMLTableSectionElement>('driver-rows'),
      $('driver-count'),
      $<HTMLInputElement>('driver-filter'),
      (id) => map.focus(id),
      () => list.render(c.sync.fleet, Date.now()),
    );

    // Coalesce redraws: a replay can deliver thousands of events at once.
    let scheduled = false;
    const redraw = () => {
      scheduled = false;
      const now = Date.now();
      map.render(c.sync.fleet, now);
      list.render(c.sync.fleet, now);
    };
    c.onChange(() => {
      if (!scheduled) {
        scheduled = true;
        setTimeout(redraw, 0);
      }
    });
    c.onState((s) => {
      banner.show(s);
      showWho();
      if (s.kind === 'auth-failed') showSignin(`The server refused the token (${s.message}). Paste a new one.`);
    });
    banner.show(c.state);
    // Ages change with time alone: recolour markers and refresh "last seen".
    setInterval(() => {
      const now = Date.now();
      map.recolour(c.sync.fleet, now);
      list.render(c.sync.fleet, now);
    }, 5000);
    window.addEventListener('pagehide', () => c.flushSave());

    installHooks(c, map, banner, session);
    c.start();
    redraw();
  };

  showWho();
  if (session.token || window.__wecareInit?.tokenProvider) {
    signin.hidden = true;
    start();
  } else {
    showSignin('');
  }
}

boot();
