/** The connection banner: the client's `ConnState`, worded by i18n.ts, as text and as `data-state`. */
import type { ConnState } from '../client/connection';
import type { Texts } from './i18n';

export class Banner {
  /** Every state shown, in order (consecutive repeats collapsed); read by the browser tests. */
  readonly history: ConnState['kind'][] = [];
  /** Every distinct text shown (bounded); read by the browser tests. */
  readonly texts: string[] = [];
  private shown: { kind: ConnState['kind']; text: string } = { kind: 'connecting', text: '' };

  constructor(private readonly el: HTMLElement) {}

  /** What the officer sees now. */
  get current(): { kind: ConnState['kind']; text: string } {
    return this.shown;
  }

  show(s: ConnState, t: Texts, newestAgeMs: number | null): void {
    const text = t.banner(s, newestAgeMs);
    this.el.dataset.state = s.kind;
    if (this.el.textContent !== text) this.el.textContent = text;
    this.shown = { kind: s.kind, text };
    if (this.history[this.history.length - 1] !== s.kind) {
      this.history.push(s.kind);
      if (this.history.length > 200) this.history.shift();
    }
    if (this.texts[this.texts.length - 1] !== text) {
      this.texts.push(text);
      if (this.texts.length > 500) this.texts.shift();
    }
  }
}
