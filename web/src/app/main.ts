/**
 * Map Command: the officers' live fleet page. Sign in with a token (pasted,
 * or `?token=`), then the watcher client keeps the map, the trails, the
 * driver list and the connection banner current — without a reload, across
 * server restarts, socket outages (HTTP long-poll) and token expiry. Speaks
 * Thai or English (lang.ts chooses, i18n.ts holds every text).
 */
import type { HandshakeRefusal } from '../client/events';
import { readConfig, stripTokenFromUrl } from './config';
import { installHooks } from './hooks';
import { texts, type Lang } from './i18n';
import { applyStatic, bindSwitch, chooseLang, rememberLang, rememberedLang } from './lang';
import { startLivePage, type LivePage } from './page';
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
  const store = localStore();
  const session = new Session();
  if (config.urlToken) {
    session.token = config.urlToken;
    stripTokenFromUrl();
  }
  if (window.__wecareInit?.tokenProvider) session.setProvider(window.__wecareInit.tokenProvider);

  let lang: Lang = chooseLang(rememberedLang(store), navigator.languages ?? [navigator.language]);
  const signin = $<HTMLDivElement>('signin');
  const signinForm = $<HTMLFormElement>('signin-form');
  const signinToken = $<HTMLTextAreaElement>('signin-token');
  const signinError = $<HTMLParagraphElement>('signin-error');
  const who = $<HTMLSpanElement>('who');

  let page: LivePage | null = null;
  /** Why the sign-in box is open (re-worded on a language switch). */
  let refused: HandshakeRefusal | null = null;

  const showSignin = () => {
    signinError.textContent = refused ? texts(lang).signinRefused(refused) : '';
    signin.hidden = false;
    signinToken.focus();
  };

  const showWho = () => {
    const t = texts(lang);
    const info = tokenInfo(session.token);
    who.textContent = info
      ? t.who(info.email ?? info.subject ?? '?', info.role ? (t.role[info.role] ?? info.role) : null, info.expiresAt)
      : '';
  };

  const setLang = (l: Lang) => {
    lang = l;
    rememberLang(store, l);
    applyStatic(l);
    showWho();
    if (!signin.hidden) showSignin();
    page?.setLang(l);
  };
  applyStatic(lang);
  bindSwitch($<HTMLSelectElement>('lang'), lang, setLang);

  signinForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const token = signinToken.value.trim();
    if (!token) return;
    session.token = token;
    signinToken.value = '';
    signin.hidden = true;
    refused = null;
    showWho();
    if (page) page.client.reconnectNow();
    else start();
  });

  $<HTMLButtonElement>('signout').addEventListener('click', () => {
    session.token = null;
    page?.client.forget();
    page?.client.stop();
    window.location.reload();
  });

  const start = () => {
    page = startLivePage(config, session, store, lang, (client) => {
      showWho();
      const s = client.state;
      if (s.kind === 'auth-failed') {
        refused = s.refusal;
        showSignin();
      }
    });
    installHooks(page, session, () => lang);
  };

  showWho();
  if (session.token || window.__wecareInit?.tokenProvider) {
    signin.hidden = true;
    start();
  } else {
    showSignin();
  }
}

boot();
