// Driver outbox and sender rules (docs/protocol.md §9 "a well-behaved driver"):
// newest fix first then the backlog oldest-first, removal only on ok/duplicate,
// non-retryable refusals parked as dead letters, retryable ones kept with
// exponential full-jitter capped backoff, bounded outbox.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryOutbox } from '../../src/client/outbox';
import { Sender } from '../../src/client/sender';
import type { ErrorCode, LocationFix, LocationResult } from '../../src/client/events';

const T0 = Date.parse('2026-01-16T08:30:00.000Z');
const fix = (i: number) => ({ lat: 13.7 + i * 0.001, lng: 100.5, recordedAt: T0 + i * 1000 });

const ok = (f: LocationFix, seq: number, duplicate = false): LocationResult => ({
  status: 'ok',
  id: f.id,
  seq,
  timestamp: new Date(T0).toISOString(),
  duplicate,
});
const err = (code: string, retryable: boolean): LocationResult => ({ status: 'error', code: code as ErrorCode, message: code.toLowerCase(), retryable });

/** A fake transport: records every batch, answers with `answer(batch, call)`. */
function fakeTransport(answer: (batch: LocationFix[], call: number) => LocationResult[] | Error) {
  const batches: LocationFix[][] = [];
  let up = true;
  return {
    batches,
    setUp(v: boolean) {
      up = v;
    },
    pick: () =>
      up
        ? {
            name: 'fake',
            send: async (b: LocationFix[]) => {
              batches.push(b.map((f) => ({ ...f })));
              const r = answer(b, batches.length);
              if (r instanceof Error) throw r;
              return r;
            },
          }
        : null,
  };
}

/** A sleep that records the delay and returns at once. */
function fakeSleep() {
  const delays: number[] = [];
  return { delays, sleep: async (ms: number) => void delays.push(ms) };
}

test('every fix gets a fresh unique id when stored; an own id is kept', async () => {
  const box = new MemoryOutbox();
  const a = await box.add(fix(1));
  const b = await box.add(fix(2));
  const c = await box.add({ ...fix(3), id: 'own-3' });
  assert.match(a.id, /^[0-9a-f-]{36}$/);
  assert.notEqual(a.id, b.id);
  assert.equal(c.id, 'own-3');
  assert.equal(await box.count(), 3);
});

test('peek: the newest pending fix first, then the backlog oldest-first', async () => {
  const box = new MemoryOutbox();
  const ids: string[] = [];
  for (let i = 1; i <= 6; i += 1) ids.push((await box.add(fix(i))).id);
  assert.deepEqual((await box.peek(100)).map((f) => f.id), [ids[5], ids[0], ids[1], ids[2], ids[3], ids[4]]);
  assert.deepEqual((await box.peek(3)).map((f) => f.id), [ids[5], ids[0], ids[1]]);
  assert.deepEqual((await box.peek(1)).map((f) => f.id), [ids[5]]);
  assert.deepEqual(await new MemoryOutbox().peek(10), []);
  // peek does not remove
  assert.equal(await box.count(), 6);
});

test('bounded by count: the oldest pending fixes are dropped, and counted', async () => {
  const box = new MemoryOutbox({ maxItems: 3 });
  const ids: string[] = [];
  for (let i = 1; i <= 5; i += 1) ids.push((await box.add(fix(i))).id);
  assert.equal(await box.count(), 3);
  assert.equal(await box.dropped(), 2);
  assert.deepEqual((await box.peek(10)).map((f) => f.id), [ids[4], ids[2], ids[3]]);
});

test('sender: drains newest first then oldest-first in one batch, removes on ok and duplicate', async () => {
  const box = new MemoryOutbox();
  const ids: string[] = [];
  for (let i = 1; i <= 4; i += 1) ids.push((await box.add(fix(i))).id);
  const t = fakeTransport((b) => b.map((f, i) => ok(f, 10 + i, i === 1)));
  const acks: string[] = [];
  const s = new Sender({ outbox: box, transport: t.pick, onAck: (a) => acks.push(a.id) });
  s.wake();
  await s.idle();
  assert.equal(t.batches.length, 1);
  assert.deepEqual(t.batches[0]?.map((f) => f.id), [ids[3], ids[0], ids[1], ids[2]]);
  assert.equal(await box.count(), 0);
  assert.deepEqual(acks, t.batches[0]?.map((f) => f.id));
});

test('sender: batches of at most batchMax, one in flight at a time, each led by the newest pending', async () => {
  const box = new MemoryOutbox();
  const ids: string[] = [];
  for (let i = 1; i <= 5; i += 1) ids.push((await box.add(fix(i))).id);
  let inFlight = 0;
  let maxInFlight = 0;
  const batches: string[][] = [];
  const s = new Sender({
    outbox: box,
    batchMax: 2,
    transport: () => ({
      name: 'fake',
      send: async (b) => {
        inFlight += 1;
        maxInFlight = Math.max(maxInFlight, inFlight);
        batches.push(b.map((f) => f.id));
        await new Promise((r) => setImmediate(r));
        inFlight -= 1;
        return b.map((f, i) => ok(f, i));
      },
    }),
  });
  s.wake();
  s.wake();
  await s.idle();
  assert.equal(maxInFlight, 1);
  assert.deepEqual(batches, [[ids[4], ids[0]], [ids[3], ids[1]], [ids[2]]]);
  assert.equal(await box.count(), 0);
});

test('sender: non-retryable refusals become dead letters (with the reason), never resent; the rest is removed', async () => {
  const box = new MemoryOutbox();
  const a = await box.add(fix(1));
  const bad = await box.add({ lat: 200, lng: 100.5, recordedAt: T0 + 1500 });
  const c = await box.add(fix(3));
  const t = fakeTransport((b) => b.map((f, i) => (f.id === bad.id ? err('INVALID_COORDINATES', false) : ok(f, i))));
  const dead: string[] = [];
  const s = new Sender({ outbox: box, transport: t.pick, onDeadLetter: (f, code) => dead.push(`${f.id}:${code}`) });
  s.wake();
  await s.idle();
  assert.equal(t.batches.length, 1, 'not resent');
  assert.deepEqual(t.batches[0]?.map((f) => f.id), [c.id, a.id, bad.id]);
  assert.equal(await box.count(), 0);
  assert.deepEqual(dead, [`${bad.id}:INVALID_COORDINATES`]);
  const letters = await box.deadLetters();
  assert.equal(letters.length, 1);
  assert.equal(letters[0]?.fix.id, bad.id);
  assert.equal(letters[0]?.fix.lat, 200);
  assert.equal(letters[0]?.code, 'INVALID_COORDINATES');
  assert.equal(letters[0]?.message, 'invalid_coordinates');
});

test('sender: retryable items are kept and resent with the same id after an exponential, jittered, capped backoff', async () => {
  const box = new MemoryOutbox();
  const a = await box.add(fix(1));
  const b = await box.add(fix(2));
  // Call 1: b ok, a RATE_LIMITED; calls 2–5: UNAVAILABLE; call 6: ok.
  const t = fakeTransport((batch, call) => {
    if (call === 1) return batch.map((f) => (f.id === a.id ? err('RATE_LIMITED', true) : ok(f, 1)));
    if (call <= 5) return batch.map(() => err('UNAVAILABLE', true));
    return batch.map((f) => ok(f, 2));
  });
  const z = fakeSleep();
  const s = new Sender({ outbox: box, transport: t.pick, sleep: z.sleep, random: () => 0.999999, backoff: { baseMs: 1000, capMs: 5000 } });
  s.wake();
  await s.idle();
  assert.deepEqual(t.batches.map((x) => x.map((f) => f.id)), [[b.id, a.id], [a.id], [a.id], [a.id], [a.id], [a.id]]);
  assert.deepEqual(z.delays, [999, 1999, 3999, 4999, 4999], 'base·2^n, capped');
  assert.equal(await box.count(), 0);
  assert.equal(s.failures, 0, 'reset after a success');
  assert.deepEqual(await box.deadLetters(), []);
});

test('sender: full jitter — the delay is random in 0…min(cap, base·2^n)', async () => {
  const box = new MemoryOutbox();
  await box.add(fix(1));
  const t = fakeTransport((batch, call) => (call < 4 ? batch.map(() => err('RATE_LIMITED', true)) : batch.map((f) => ok(f, 1))));
  const z = fakeSleep();
  const s = new Sender({ outbox: box, transport: t.pick, sleep: z.sleep, random: () => 0.5, backoff: { baseMs: 1000, capMs: 30_000 } });
  s.wake();
  await s.idle();
  assert.deepEqual(z.delays, [500, 1000, 2000]);
});

test('sender: no answer (timeout, disconnect) keeps the whole batch; nothing is sent while no transport is up', async () => {
  const box = new MemoryOutbox();
  const a = await box.add(fix(1));
  const t = fakeTransport((batch, call) => (call === 1 ? new Error('operation has timed out') : batch.map((f) => ok(f, 1))));
  const z = fakeSleep();
  const s = new Sender({ outbox: box, transport: t.pick, sleep: z.sleep, random: () => 0 });
  t.setUp(false);
  s.wake();
  await s.idle();
  assert.equal(t.batches.length, 0);
  t.setUp(true);
  s.wake();
  await s.idle();
  assert.deepEqual(t.batches.map((x) => x.map((f) => f.id)), [[a.id], [a.id]]);
  assert.equal(z.delays.length, 1);
  assert.equal(await box.count(), 0);
});

test('sender: a fix recorded while a batch is in flight is sent right after', async () => {
  const box = new MemoryOutbox();
  await box.add(fix(1));
  let late: LocationFix | null = null;
  const t = fakeTransport((batch, call) => batch.map((f, i) => ok(f, call * 10 + i)));
  const s = new Sender({
    outbox: box,
    transport: () => {
      const p = t.pick();
      if (!p) return null;
      return {
        name: 'fake',
        send: async (b) => {
          if (!late) {
            late = await box.add(fix(2));
            s.wake();
          }
          return p.send(b);
        },
      };
    },
  });
  s.wake();
  await s.idle();
  assert.equal(t.batches.length, 2);
  assert.equal(t.batches[1]?.[0]?.id, (late as LocationFix | null)?.id);
  assert.equal(await box.count(), 0);
});
