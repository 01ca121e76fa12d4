// Contract §9 (v1.2) — SIGTERM: the server stops taking new events, finishes
// every accepted one (stored, acked to its sender, delivered to the watchers
// connected then) and only then closes the sockets, within
// SHUTDOWN_GRACE_MS. Proven with 20 drivers in a burst, half of them sending
// no `id` like the deployed web client, half of them long-polling (an ack lost there would store the
// fix twice once the client resends it).
import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from '../lib/server.mjs';
import { connectDriver, connectWatcher, closeAll, fix, allEvents, waitUntil } from '../lib/client.mjs';

const GRACE_MS = 10_000;
const DRIVERS = 20;
const IN_FLIGHT = 4;

describe('§9 shutdown', () => {
  let server;
  after(async () => {
    closeAll();
    await server?.dispose();
  });

  test('SIGTERM during a burst: every stored fix was acked before its socket closed, watchers got them all, exit within the grace', { timeout: 90_000 }, async () => {
    server = await startServer({ env: { SHUTDOWN_GRACE_MS: GRACE_MS } });
    const watcher = await connectWatcher(server);
    // Half on websocket, half long-polling: acks queued for a poller go out
    // on its next poll, which must still be served while draining.
    const drivers = await Promise.all(Array.from({ length: DRIVERS }, (_, k) =>
      connectDriver(server, { transports: k % 4 < 2 ? ['websocket'] : ['polling'] })));
    const acked = new Set(); // seqs acked ok
    const refused = []; // error acks (retryable UNAVAILABLE while draining is allowed)
    let closedAt = null;

    // Each driver keeps IN_FLIGHT updates outstanding until its socket closes.
    const pump = (d, k) => new Promise((resolve) => {
      const withId = k % 2 === 0;
      let outstanding = 0;
      const sendOne = () => {
        if (!d.socket.connected) return;
        const f = fix(withId ? {} : { id: undefined });
        if (!withId) delete f.id;
        outstanding += 1;
        d.socket.emit('location:update', f, (ack) => {
          outstanding -= 1;
          if (ack?.status === 'ok') acked.add(ack.seq);
          else refused.push(ack);
          sendOne();
        });
      };
      d.socket.on('disconnect', () => {
        closedAt ??= Date.now();
        resolve(outstanding);
      });
      for (let i = 0; i < IN_FLIGHT; i += 1) sendOne();
    });
    const pumps = drivers.map((d, k) => pump(d, k));

    await waitUntil(() => acked.size >= 500, { timeoutMs: 20_000, what: '500 acks before SIGTERM' });
    const termAt = Date.now();
    server.stopping = true;
    server.proc.child.kill('SIGTERM');
    const exit = await server.waitExit(GRACE_MS + 5_000);
    const exitedAfter = Date.now() - termAt;
    await Promise.all(pumps);

    assert.equal(exit.code, 0, `clean exit: ${JSON.stringify(exit)}\n${server.output.slice(-2000)}`);
    assert.ok(exitedAfter <= GRACE_MS, `exited ${exitedAfter} ms after SIGTERM (grace ${GRACE_MS} ms)`);
    assert.ok(closedAt !== null && closedAt >= termAt, 'sockets were closed by the shutdown');
    for (const r of refused) {
      assert.equal(r?.code, 'UNAVAILABLE', `only "retry later" refusals while draining: ${JSON.stringify(r)}`);
      assert.equal(r.retryable, true);
    }

    await server.restart();
    const { events } = await allEvents(server);
    const stored = events.filter((e) => e.type === 'location:updated').map((e) => e.seq);
    const unacked = stored.filter((s) => !acked.has(s));
    assert.deepEqual(unacked, [], `stored but never acked (a resend would store these twice): ${unacked.slice(0, 10)}`);
    const lost = [...acked].filter((s) => !stored.includes(s));
    assert.deepEqual(lost, [], 'acked but not stored');
    const seen = new Set(watcher.all('location:updated').map((e) => e.seq));
    const undelivered = stored.filter((s) => !seen.has(s));
    assert.deepEqual(undelivered, [], 'stored but not delivered to the watcher connected at the SIGTERM');
    assert.ok(stored.length >= 500, `stored ${stored.length}`);
  });
});
