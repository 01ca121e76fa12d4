/**
 * What the connection banner shows. Every state is derived from something
 * observed (a socket event, an HTTP result), never assumed.
 */
import type { ResyncReason } from './sync';

export type ConnState =
  /** First connect (or a re-snapshot) in progress; nothing received yet. */
  | { kind: 'connecting' }
  /** Socket connected and current. */
  | { kind: 'live' }
  /** Socket connected, replaying what was missed (`events` so far). */
  | { kind: 'catching-up'; events: number }
  /** Socket connected; the state was rebuilt from a snapshot after a gap or a new stream. */
  | { kind: 'resynced-after-gap'; reason: ResyncReason }
  /** Socket down and the HTTP fallback is not getting through either. */
  | { kind: 'reconnecting'; attempt: number; error?: string }
  /** Socket down, the long-poll fallback is current. */
  | { kind: 'http-fallback'; attempt: number }
  /** The server refused the token; waiting for a fresh one. */
  | { kind: 'auth-failed'; message: string; retrying: boolean }
  | { kind: 'stopped' };

export type ConnKind = ConnState['kind'];

export function describe(s: ConnState): string {
  switch (s.kind) {
    case 'connecting':
      return 'Connecting…';
    case 'live':
      return 'Live';
    case 'catching-up':
      return `Catching up (${s.events} events)`;
    case 'resynced-after-gap':
      return s.reason === 'new-stream'
        ? 'Live — reloaded the fleet (the server has a new event stream)'
        : 'Live — reloaded the fleet after missing events';
    case 'reconnecting':
      return `Connection lost — reconnecting (attempt ${s.attempt})${s.error ? `: ${s.error}` : ''}`;
    case 'http-fallback':
      return `Live over HTTP fallback (socket reconnect attempt ${s.attempt})`;
    case 'auth-failed':
      return `Sign-in refused: ${s.message}${s.retrying ? ' — retrying with a fresh token' : ''}`;
    case 'stopped':
      return 'Disconnected';
  }
}
