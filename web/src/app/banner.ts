/** The connection banner: the client's `ConnState`, as text and as `data-state`. */
import { describe, type ConnState } from '../client/connection';

export class Banner {
  /** Every state shown, in order (consecutive repeats collapsed); read by the browser tests. */
  readonly history: ConnState['kind'][] = [];

  constructor(private readonly el: HTMLElement) {}

  show(s: ConnState): void {
    this.el.dataset.state = s.kind;
    this.el.textContent = describe(s);
    if (this.history[this.history.length - 1] !== s.kind) {
      this.history.push(s.kind);
      if (this.history.length > 200) this.history.shift();
    }
  }
}
