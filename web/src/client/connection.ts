/**
 * What the connection banner shows. Every state is derived from something
 * observed (a socket event, an HTTP result), never assumed. States carry
 * codes, not text: the page words them (src/app/i18n.ts), and a raw browser
 * or socket.io error string never reaches the officer.
 */
import type { HandshakeRefusal } from './events';
import type { ResyncReason } from './sync';

/** Why the connection is down, in terms an officer can act on. */
export type Problem =
  /** Nothing answers at the server's address (server down, network gone). */
  | 'unreachable'
  /** An open connection was cut (server restart, network drop). */
  | 'cut'
  /** The server stopped answering in time. */
  | 'timeout'
  /** The server answered with an internal error (HTTP 5xx). */
  | 'server-error'
  /** The server refused the request (HTTP 4xx, e.g. a token it no longer accepts). */
  | 'refused'
  /** The server closed the session itself (token expired, too many sockets). */
  | 'closed-by-server';

export type ConnState =
  /** First connect (or a re-snapshot) in progress; nothing received yet. */
  | { kind: 'connecting' }
  /** Socket connected and current. */
  | { kind: 'live' }
  /** Socket connected, replaying what was missed (`events` so far). */
  | { kind: 'catching-up'; events: number }
  /** Socket connected; the state was rebuilt from a snapshot after a gap or a new stream. */
  | { kind: 'resynced-after-gap'; reason: ResyncReason }
  /** Socket down and the HTTP fallback is not getting through either. `attempt` counts from 1. */
  | { kind: 'reconnecting'; attempt: number; problem: Problem }
  /**
   * Socket down, the long-poll fallback gets through. `behind`: the last
   * page was full, so more events are waiting — not current yet.
   */
  | { kind: 'http-fallback'; attempt: number; behind: boolean }
  /** The server refused the token; waiting for a fresh one. */
  | { kind: 'auth-failed'; refusal: HandshakeRefusal; retrying: boolean }
  | { kind: 'stopped' };

export type ConnKind = ConnState['kind'];

/** socket.io-client's disconnect reasons and transport `connect_error` messages, as a `Problem`. */
export function socketProblem(reason: string): Problem {
  switch (reason) {
    case 'io server disconnect':
      return 'closed-by-server';
    case 'ping timeout':
    case 'timeout':
      return 'timeout';
    case 'transport close':
    case 'transport error':
    case 'parse error':
      return 'cut';
    default:
      // 'websocket error', 'xhr poll error', …: the server could not be reached.
      return 'unreachable';
  }
}

/** An HTTP status of a failed REST request, as a `Problem`. */
export function httpProblem(status: number): Problem {
  if (status === 408 || status === 504) return 'timeout';
  if (status >= 500) return 'server-error';
  return 'refused';
}
