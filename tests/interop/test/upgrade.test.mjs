// The stock client's default transports: HTTP long-polling first, then the
// upgrade to websocket while the namespace CONNECT and the first emits are
// in flight over polling (contract §1: the official client works unchanged).
// This is what an app gets when it sets no `transports` option at all.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from '../lib/server.mjs';
import { connect, connectDriver, connectWatcher, connectError, closeAll, fix, assertOk, waitUntil } from '../lib/client.mjs';

const DEFAULT_TRANSPORTS = ['polling', 'websocket'];

describe('§1 default transports (polling, then upgrade to websocket)', () => {
  let server;
  before(async () => { server = await startServer(); });
  after(async () => { closeAll(); await server?.stop(); });

  test('connects every time and upgrades to websocket', async () => {
    for (let i = 0; i < 20; i += 1) {
      const peer = await connect(server, { token: server.watcherToken(), transports: DEFAULT_TRANSPORTS });
      await waitUntil(() => peer.socket.io.engine.transport.name === 'websocket', { what: `upgrade ${i}` });
      peer.close();
    }
  });

  test('an emit made right at connect, over polling during the upgrade, is acked; the fix reaches a watcher', async () => {
    const watcher = await connectWatcher(server, { transports: DEFAULT_TRANSPORTS });
    for (let i = 0; i < 10; i += 1) {
      const d = await connectDriver(server, { transports: DEFAULT_TRANSPORTS });
      const f = fix();
      const ack = await d.emitAck('location:update', f);
      assertOk(ack, f);
      const ev = await watcher.waitFor('location:updated', (e) => e.id === f.id);
      assert.equal(ev.seq, ack.seq);
      d.close();
    }
  });

  test('refusals keep their exact messages', async () => {
    const err = await connectError(server, { token: 'not-a-token', transports: DEFAULT_TRANSPORTS });
    assert.equal(err.message, 'Invalid token');
    const none = await connectError(server, { transports: DEFAULT_TRANSPORTS });
    assert.equal(none.message, 'Authentication required');
  });
});
