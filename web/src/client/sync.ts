/**
 * The watcher's stream position and the rules of docs/protocol.md §9
 * ("a well-behaved watcher"): drop anything `<= lastSeq`, apply the next
 * event, ask for a re-snapshot on a hole, a `gap` or a new `streamId`.
 * Transport-agnostic: the socket and the long-poll fallback both feed it.
 */
import { Fleet } from './fleet';
import type { DriversSnapshot, EventsPage, StreamEvent, SyncComplete } from './events';
import { ServerEvent } from './events';

/** Why the state must be rebuilt from a snapshot. */
export type ResyncReason = 'gap' | 'new-stream' | 'no-position';

export type Outcome = { kind: 'applied' } | { kind: 'dropped' } | { kind: 'resync'; reason: ResyncReason };

export interface Position {
  streamId: string | null;
  lastSeq: number | null;
}

export interface SyncStats {
  /** Stream events applied to the fleet. */
  applied: number;
  /** Stream events dropped as already seen (`seq <= lastSeq`). */
  dropped: number;
  snapshots: number;
  resyncs: number;
}

export class StreamSync {
  readonly fleet = new Fleet();
  streamId: string | null = null;
  lastSeq: number | null = null;
  readonly stats: SyncStats = { applied: 0, dropped: 0, snapshots: 0, resyncs: 0 };
  /** Called after every state change (batched by the caller if needed). */
  onChange: () => void = () => {};

  /** Restore a persisted position (with the fleet it belongs to). */
  restore(pos: Position): void {
    this.streamId = pos.streamId;
    this.lastSeq = pos.lastSeq;
  }

  position(): Position {
    return { streamId: this.streamId, lastSeq: this.lastSeq };
  }

  /** Forget the position so that the next connect asks for a snapshot. */
  forgetPosition(): void {
    this.lastSeq = null;
  }

  /** A `drivers:snapshot` (at connect or any later time) replaces the whole state. */
  applySnapshot(s: DriversSnapshot): void {
    const sameStream = this.streamId !== null && this.streamId === s.streamId;
    this.fleet.applySnapshot(s, sameStream);
    this.streamId = s.streamId;
    this.lastSeq = s.seq;
    this.stats.snapshots += 1;
    this.onChange();
  }

  /** One stream event, from the socket or an events page. */
  applyEvent(e: StreamEvent): Outcome {
    if (this.lastSeq === null) return this.resync('no-position');
    if (e.seq <= this.lastSeq) {
      this.stats.dropped += 1;
      return { kind: 'dropped' };
    }
    if (e.seq > this.lastSeq + 1) return this.resync('gap');
    switch (e.type) {
      case ServerEvent.LocationUpdated:
        this.fleet.applyLocation(e);
        break;
      case ServerEvent.DriverStatusUpdated:
        this.fleet.applyStatus(e);
        break;
      case ServerEvent.DriverPresence:
        this.fleet.applyPresence(e);
        break;
    }
    this.lastSeq = e.seq;
    this.stats.applied += 1;
    this.onChange();
    return { kind: 'applied' };
  }

  /** End of a replay: a foreign streamId means our position is not in this stream. */
  applySyncComplete(s: SyncComplete): Outcome {
    if (this.streamId !== null && s.streamId !== this.streamId) return this.resync('new-stream');
    this.streamId = s.streamId;
    return { kind: 'applied' };
  }

  /** A page of `GET /api/realtime/events` / `events:sync`. Stops at the first resync. */
  applyPage(p: EventsPage): Outcome {
    if (this.streamId !== null && p.streamId !== this.streamId) return this.resync('new-stream');
    if (p.gap) return this.resync('gap');
    for (const e of p.events) {
      const o = this.applyEvent(e);
      if (o.kind === 'resync') return o;
    }
    return { kind: 'applied' };
  }

  private resync(reason: ResyncReason): Outcome {
    this.stats.resyncs += 1;
    return { kind: 'resync', reason };
  }
}
