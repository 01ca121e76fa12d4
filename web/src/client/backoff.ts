/** Exponential backoff with full jitter and a cap (docs/protocol.md §9). Pure. */
export interface BackoffOptions {
  baseMs: number;
  capMs: number;
}

/** Delay before retry number `attempt` (1-based): random 0…min(cap, base·2^(attempt-1)). */
export function backoffDelay(attempt: number, { baseMs, capMs }: BackoffOptions, random: () => number = Math.random): number {
  const exp = Math.min(capMs, baseMs * 2 ** Math.max(0, Math.min(30, attempt - 1)));
  return Math.floor(random() * exp);
}
