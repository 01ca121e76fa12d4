// Watcher client rules (docs/protocol.md §9): dedup by seq, re-snapshot on a
// hole or a new stream, trails in recordedAt order, markers only moved by
// non-outdated fixes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { StreamSync } from '../../src/client/sync';
import { insertTrailPoint, freshness, type TrailPoint } from '../../src/client/fleet';
import { ServerEvent, type StreamEvent, type DriversSnapshot } from '../../src/client/events';
import { backoffDelay } from '../../src/client/backoff';
import * as persist from '../../src/client/persist';

const T0 = Date.parse('2026-01-16T08:30:00.000Z');
const iso = (ms: number) => new Date(ms).toISOString();

/** `status: null` leaves the key out, as the server does for a driver that has reported none (contract v1.3 §4). */
function fix(
  seq: number,
  driverId: string,
  lat: number,
  lng: number,
  recordedAtMs: number,
  outdated = false,
  status: string | null = 'ON_TRIP',
): StreamEvent {
  return {
    type: ServerEvent.LocationUpdated,
    seq,
    id: `fix-${seq}`,
    driverId,
    lat,
    lng,
    latitude: lat,
    longitude: lng,
    recordedAt: iso(recordedAtMs),
    lastUpdated: iso(recordedAtMs),
    timestamp: iso(T0 + seq),
    outdated,
    ...(status === null ? {} : { status }),
  };
}

/** A fix without a status. */
const bareFix = (seq: number, driverId: string, outdated = false) => fix(seq, driverId, 1, 1, T0 + seq, outdated, null);

function snapshot(streamId: string, seq: number, drivers: DriversSnapshot['drivers'] = []): DriversSnapshot {
  return { streamId, seq, drivers };
}

test('events with seq <= lastSeq are dropped, the next one is applied', () => {
  const s = new StreamSync();
  s.applySnapshot(snapshot('A', 10));
  assert.deepEqual(s.applyEvent(fix(11, 'd1', 1, 1, T0)), { kind: 'applied' });
  assert.deepEqual(s.applyEvent(fix(11, 'd1', 1, 1, T0)), { kind: 'dropped' });
  assert.deepEqual(s.applyEvent(fix(9, 'd1', 2, 2, T0 + 1)), { kind: 'dropped' });
  assert.equal(s.lastSeq, 11);
  assert.equal(s.fleet.drivers.get('d1')!.trail.length, 1);
  assert.equal(s.stats.dropped, 2);
});

test('a hole in seq asks for a re-snapshot and changes nothing', () => {
  const s = new StreamSync();
  s.applySnapshot(snapshot('A', 10));
  const o = s.applyEvent(fix(12, 'd1', 1, 1, T0));
  assert.deepEqual(o, { kind: 'resync', reason: 'gap' });
  assert.equal(s.lastSeq, 10);
  assert.equal(s.fleet.drivers.size, 0);
});

test('a stream event before any position asks for a snapshot', () => {
  const s = new StreamSync();
  assert.deepEqual(s.applyEvent(fix(1, 'd1', 1, 1, T0)), { kind: 'resync', reason: 'no-position' });
});

test('an events page with gap:true or another streamId asks for a re-snapshot', () => {
  const s = new StreamSync();
  s.applySnapshot(snapshot('A', 3));
  assert.deepEqual(s.applyPage({ status: 'ok', streamId: 'A', events: [], lastSeq: 3, gap: true }), { kind: 'resync', reason: 'gap' });
  assert.deepEqual(s.applyPage({ status: 'ok', streamId: 'B', events: [fix(4, 'd', 0, 0, T0)], lastSeq: 4, gap: false }), {
    kind: 'resync',
    reason: 'new-stream',
  });
  assert.equal(s.lastSeq, 3);
  assert.deepEqual(s.applyPage({ status: 'ok', streamId: 'A', events: [fix(3, 'd', 0, 0, T0), fix(4, 'd', 0, 0, T0)], lastSeq: 4, gap: false }), {
    kind: 'applied',
  });
  assert.equal(s.lastSeq, 4);
});

test('sync:complete with a foreign streamId asks for a re-snapshot', () => {
  const s = new StreamSync();
  s.applySnapshot(snapshot('A', 3));
  assert.equal(s.applySyncComplete({ streamId: 'B', fromSeq: 3, toSeq: 3, replayed: 0 }).kind, 'resync');
  assert.equal(s.applySyncComplete({ streamId: 'A', fromSeq: 3, toSeq: 3, replayed: 0 }).kind, 'applied');
});

test('a snapshot of the same stream keeps trails; a new stream starts over', () => {
  const s = new StreamSync();
  s.applySnapshot(snapshot('A', 0));
  s.applyEvent(fix(1, 'd1', 1, 1, T0));
  s.applyEvent(fix(2, 'd1', 2, 2, T0 + 1000));
  const drivers = [
    { driverId: 'd1', lat: 2, lng: 2, recordedAt: iso(T0 + 1000), status: 'BUSY', online: true, lastSeen: iso(T0) },
  ];
  s.applySnapshot(snapshot('A', 50, drivers));
  assert.equal(s.fleet.drivers.get('d1')!.trail.length, 2);
  assert.equal(s.fleet.drivers.get('d1')!.status, 'BUSY');
  assert.equal(s.lastSeq, 50);
  s.applySnapshot(snapshot('B', 5, drivers));
  assert.equal(s.fleet.drivers.get('d1')!.trail.length, 0);
  assert.equal(s.streamId, 'B');
  assert.equal(s.lastSeq, 5);
  assert.deepEqual(s.fleet.drivers.get('d1')!.marker, { lat: 2, lng: 2, recordedAt: T0 + 1000 });
  s.applySnapshot(snapshot('B', 6, []));
  assert.equal(s.fleet.drivers.size, 0, 'drivers missing from a snapshot are removed');
});

test('trail is ordered by recordedAt whatever the arrival order, marker only follows non-outdated fixes', () => {
  const s = new StreamSync();
  s.applySnapshot(snapshot('A', 0));
  s.applyEvent(fix(1, 'd1', 10, 10, T0 + 10_000));
  s.applyEvent(fix(2, 'd1', 30, 30, T0 + 30_000));
  // A backlog flushed late: older fixes, marked outdated by the server.
  s.applyEvent(fix(3, 'd1', 20, 20, T0 + 20_000, true));
  s.applyEvent(fix(4, 'd1', 5, 5, T0 + 5_000, true));
  const d = s.fleet.drivers.get('d1')!;
  assert.deepEqual(
    d.trail.map((p) => p.lat),
    [5, 10, 20, 30],
  );
  assert.deepEqual(d.marker, { lat: 30, lng: 30, recordedAt: T0 + 30_000 });
  s.applyEvent(fix(5, 'd1', 40, 40, T0 + 40_000));
  assert.deepEqual([d.marker!.lat, d.marker!.lng], [40, 40]);
});

test('status and presence events update the driver', () => {
  const s = new StreamSync();
  s.applySnapshot(snapshot('A', 0));
  s.applyEvent({ type: ServerEvent.DriverPresence, seq: 1, driverId: 'd', online: true, timestamp: iso(T0) });
  s.applyEvent({ type: ServerEvent.DriverStatusUpdated, seq: 2, driverId: 'd', status: 'BUSY', timestamp: iso(T0 + 5) });
  const d = s.fleet.drivers.get('d')!;
  assert.equal(d.online, true);
  assert.equal(d.status, 'BUSY');
  assert.equal(d.lastSeen, T0 + 5);
});

test('a driver that has reported no status has none: fixes without one never invent or change it', () => {
  const s = new StreamSync();
  s.applySnapshot(snapshot('A', 0));
  s.applyEvent(bareFix(1, 'd'));
  const d = s.fleet.drivers.get('d')!;
  assert.equal(d.status, null, 'unknown, not AVAILABLE');
  assert.equal(d.trail.length, 1);
  s.applyEvent(bareFix(2, 'd'));
  assert.equal(d.status, null);
  s.applyEvent({ type: ServerEvent.DriverStatusUpdated, seq: 3, driverId: 'd', status: 'ON_DUTY', timestamp: iso(T0 + 3) });
  assert.equal(d.status, 'ON_DUTY');
  s.applyEvent(bareFix(4, 'd'));
  s.applyEvent(bareFix(5, 'd', true));
  assert.equal(d.status, 'ON_DUTY', 'a fix without a status keeps the known one');
  s.applyEvent(fix(6, 'd', 1, 1, T0, true, 'BUSY'));
  assert.equal(d.status, 'BUSY', "a fix's status applies, outdated or not");
});

test('a snapshot entry without a status gives an unknown status', () => {
  const s = new StreamSync();
  s.applySnapshot(
    snapshot('A', 7, [
      { driverId: 'd1', lat: 1, lng: 1, recordedAt: iso(T0), online: true, lastSeen: iso(T0) },
      { driverId: 'd2', lat: null, lng: null, recordedAt: null, status: 'ON_DUTY', online: false, lastSeen: iso(T0) },
    ]),
  );
  assert.equal(s.fleet.drivers.get('d1')!.status, null);
  assert.equal(s.fleet.drivers.get('d2')!.status, 'ON_DUTY');
  s.applyEvent(bareFix(8, 'd1'));
  s.applyEvent(bareFix(9, 'd2'));
  assert.equal(s.fleet.drivers.get('d1')!.status, null);
  assert.equal(s.fleet.drivers.get('d2')!.status, 'ON_DUTY');
});

test('insertTrailPoint ignores a seq already on the trail and bounds the length', () => {
  const trail: TrailPoint[] = [];
  const p = (seq: number, t: number): TrailPoint => ({ seq, lat: seq, lng: seq, recordedAt: t, outdated: false });
  assert.equal(insertTrailPoint(trail, p(1, 100), 3), true);
  assert.equal(insertTrailPoint(trail, p(1, 100), 3), false);
  insertTrailPoint(trail, p(2, 100), 3);
  insertTrailPoint(trail, p(3, 50), 3);
  insertTrailPoint(trail, p(4, 200), 3);
  assert.deepEqual(trail.map((q) => q.seq), [1, 2, 4]);
});

test('freshness by the age of the last fix and presence', () => {
  const base = { driverId: 'd', trail: [], status: null, lastSeen: null };
  const at = (age: number) => ({ lat: 0, lng: 0, recordedAt: T0 - age });
  assert.equal(freshness({ ...base, online: true, marker: at(1000) }, T0), 'fresh');
  assert.equal(freshness({ ...base, online: true, marker: at(61_000) }, T0), 'stale');
  assert.equal(freshness({ ...base, online: true, marker: at(121_000) }, T0), 'old');
  assert.equal(freshness({ ...base, online: false, marker: at(1000) }, T0), 'offline');
});

test('backoff is capped and jittered', () => {
  assert.equal(backoffDelay(1, { baseMs: 500, capMs: 10_000 }, () => 0.999), 499);
  assert.equal(backoffDelay(50, { baseMs: 500, capMs: 10_000 }, () => 0.999), 9990);
  assert.equal(backoffDelay(3, { baseMs: 500, capMs: 10_000 }, () => 0), 0);
});

test('position and fleet survive a reload together', () => {
  const mem = new Map<string, string>();
  const store = { getItem: (k: string) => mem.get(k) ?? null, setItem: (k: string, v: string) => void mem.set(k, v), removeItem: (k: string) => void mem.delete(k) };
  const a = new StreamSync();
  a.applySnapshot(snapshot('A', 0));
  a.applyEvent(fix(1, 'd1', 1, 2, T0));
  persist.save(store, a);
  const b = new StreamSync();
  assert.equal(persist.load(store, b), true);
  assert.deepEqual(b.position(), { streamId: 'A', lastSeq: 1 });
  assert.equal(b.fleet.drivers.get('d1')!.trail.length, 1);
  assert.deepEqual(b.applyEvent(fix(1, 'd1', 1, 2, T0)), { kind: 'dropped' });
});

test('an unknown status survives a reload as unknown; a fleet saved before v1.3 is not resumed', () => {
  const mem = new Map<string, string>();
  const store = { getItem: (k: string) => mem.get(k) ?? null, setItem: (k: string, v: string) => void mem.set(k, v), removeItem: (k: string) => void mem.delete(k) };
  const a = new StreamSync();
  a.applySnapshot(snapshot('A', 0));
  a.applyEvent(bareFix(1, 'd1'));
  persist.save(store, a);
  const b = new StreamSync();
  assert.equal(persist.load(store, b), true);
  assert.equal(b.fleet.drivers.get('d1')!.status, null);

  // The old format's AVAILABLE may have been invented by the client: start from a snapshot instead.
  mem.clear();
  const old = { v: 1, streamId: 'A', lastSeq: 1, drivers: [{ driverId: 'd1', marker: null, trail: [], status: 'AVAILABLE', online: true, lastSeen: T0 }] };
  mem.set('wecare.rt.watcher.v1', JSON.stringify(old));
  const c = new StreamSync();
  assert.equal(persist.load(store, c), false);
  assert.equal(c.fleet.drivers.size, 0);
  assert.deepEqual(c.position(), { streamId: null, lastSeq: null });
  assert.equal(mem.size, 0, 'the old entry is removed');
});
