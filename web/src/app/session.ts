/**
 * The officer's access token: pasted (or given as `?token=`) and kept in
 * sessionStorage for this tab. The token provider handed to the client reads
 * it on every connect attempt and REST call; a custom provider (test hook,
 * or an embedding app that can mint fresh tokens) replaces it and its tokens
 * are stored too.
 */
const TOKEN_KEY = 'wecare.rt.token';

export type TokenSource = () => Promise<string>;

export interface TokenInfo {
  subject: string | null;
  role: string | null;
  email: string | null;
  /** epoch ms */
  expiresAt: number | null;
}

export class Session {
  private custom: TokenSource | null = null;

  get token(): string | null {
    try {
      return sessionStorage.getItem(TOKEN_KEY);
    } catch {
      return null;
    }
  }

  set token(t: string | null) {
    try {
      if (t) sessionStorage.setItem(TOKEN_KEY, t);
      else sessionStorage.removeItem(TOKEN_KEY);
    } catch {
      /* storage disabled: the token lives only as long as the provider */
    }
  }

  setProvider(p: TokenSource | null): void {
    this.custom = p;
  }

  /** The provider handed to the watcher client. */
  readonly provider = async (): Promise<string> => {
    if (this.custom) {
      const t = await this.custom();
      if (t) this.token = t;
      return t;
    }
    const t = this.token;
    if (!t) throw new Error('not signed in');
    return t;
  };
}

/** Claims shown on the page (not verified here: the server verifies). */
export function tokenInfo(token: string | null): TokenInfo | null {
  if (!token) return null;
  const part = token.split('.')[1];
  if (!part) return null;
  try {
    const json = atob(part.replace(/-/g, '+').replace(/_/g, '/'));
    const c = JSON.parse(json) as Record<string, unknown>;
    const subject = c.userId ?? c.id ?? c.user_id;
    return {
      subject: subject == null ? null : String(subject),
      role: typeof c.role === 'string' ? c.role : null,
      email: typeof c.email === 'string' ? c.email : null,
      expiresAt: typeof c.exp === 'number' ? c.exp * 1000 : null,
    };
  } catch {
    return null;
  }
}
