/**
 * Which language the page speaks: the officer's choice if they made one
 * (remembered in localStorage), else the first of the browser's languages
 * (`navigator.languages`) the page speaks, else English. Also writes the
 * static texts of index.html (elements marked `data-i18n*`).
 */
import { LANGS, texts, type Lang } from './i18n';

export const LANG_KEY = 'wecare.rt.lang.v1';

function asLang(v: string | null | undefined): Lang | null {
  const primary = v?.trim().toLowerCase().split(/[-_]/)[0];
  return (LANGS as readonly string[]).includes(primary ?? '') ? (primary as Lang) : null;
}

/** The language to speak, from a remembered choice and the browser's preference list. */
export function chooseLang(remembered: string | null, browser: readonly string[]): Lang {
  const chosen = asLang(remembered);
  if (chosen) return chosen;
  for (const l of browser) {
    const lang = asLang(l);
    if (lang) return lang;
  }
  return 'en';
}

export function rememberedLang(store: Pick<Storage, 'getItem'> | null): string | null {
  try {
    return store?.getItem(LANG_KEY) ?? null;
  } catch {
    return null;
  }
}

export function rememberLang(store: Pick<Storage, 'setItem'> | null, lang: Lang): void {
  try {
    store?.setItem(LANG_KEY, lang);
  } catch {
    /* storage disabled: the choice lasts until the page is closed */
  }
}

/** `a `code` b` → text and <code> nodes. */
function withCode(el: HTMLElement, text: string): void {
  el.replaceChildren(
    ...text.split('`').map((part, i) => {
      if (i % 2 === 0) return document.createTextNode(part);
      const code = document.createElement('code');
      code.textContent = part;
      return code;
    }),
  );
}

/**
 * Write every static text: `data-i18n` (text, `backticks` as code),
 * `data-i18n-placeholder`, `data-i18n-aria-label`; plus the title, `lang`
 * and the language switch.
 */
export function applyStatic(lang: Lang, doc: Document = document): void {
  const t = texts(lang);
  const get = (k: string | undefined): string | null => {
    const v = k ? (t as unknown as Record<string, unknown>)[k] : undefined;
    return typeof v === 'string' ? v : null;
  };
  doc.documentElement.lang = lang;
  doc.title = t.title;
  for (const el of doc.querySelectorAll<HTMLElement>('[data-i18n]')) {
    const v = get(el.dataset.i18n);
    if (v !== null) withCode(el, v);
  }
  for (const el of doc.querySelectorAll<HTMLInputElement | HTMLTextAreaElement>('[data-i18n-placeholder]')) {
    const v = get(el.dataset.i18nPlaceholder);
    if (v !== null) el.placeholder = v;
  }
  for (const el of doc.querySelectorAll<HTMLElement>('[data-i18n-aria-label]')) {
    const v = get(el.dataset.i18nAriaLabel);
    if (v !== null) el.setAttribute('aria-label', v);
  }
}

/** Fill the language switch (each language named in itself) and report changes. */
export function bindSwitch(select: HTMLSelectElement, current: Lang, onPick: (l: Lang) => void): void {
  select.replaceChildren(
    ...LANGS.map((l) => {
      const o = document.createElement('option');
      o.value = l;
      o.lang = l;
      o.textContent = texts(l).name;
      return o;
    }),
  );
  select.value = current;
  select.addEventListener('change', () => {
    const l = asLang(select.value);
    if (l) onPick(l);
  });
}
