// (e) The server closes the page's session itself — here because the same
// officer opened one socket more than MAX_CONNECTIONS_PER_USER allows, the
// oldest (the page's) is closed. socket.io-client does not retry a
// server-side DISCONNECT; the page reconnects by itself with a fresh token,
// resumes from its last seq, and misses nothing sent meanwhile.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { io } from 'socket.io-client';
import { Server, Driver, makeFix, launchBrowser, openPage, bannerIs, trailHas, withTimeout, DEFAULT_WAIT_MS, LOCALES } from './lib/harness.mjs';

for (const { locale } of LOCALES) {
  describe(locale, () => {
    let server;
    let browser;
    let driver;
    let other;

    before(async () => {
      server = await new Server({ env: { MAX_CONNECTIONS_PER_USER: '1' } }).start();
      browser = await launchBrowser({ locale });
    });

    after(async () => {
      other?.close();
      driver?.close();
      await browser?.close();
      await server?.dispose();
    });

    test('a session the server closed comes back by itself and misses nothing', { timeout: 60_000 }, async () => {
      const page = await openPage(browser, server, server.officerToken());
      await bannerIs(page, 'live');
      driver = new Driver(server, 'amb-41');
      await driver.connected();
      await driver.send(makeFix('amb-41', 13.7, 100.5));
      await trailHas(page, 'amb-41', 1);

      // The same officer elsewhere: the server closes the page's (older) socket.
      other = io(`${server.url}/locations`, { auth: { token: server.officerToken() }, transports: ['websocket'], reconnection: false });
      await withTimeout(new Promise((r) => other.once('connect', r)), DEFAULT_WAIT_MS, 'second socket connect');
      await page.waitForFunction(() => window.__wecare.stats().socketDisconnects >= 1, null, { timeout: DEFAULT_WAIT_MS });
      other.close();

      await driver.send(makeFix('amb-41', 13.71, 100.51));
      await page.waitForFunction(() => window.__wecare.stats().socketConnects >= 2, null, { timeout: 20_000 });
      await trailHas(page, 'amb-41', 2);
      await bannerIs(page, 'live');
      const stats = await page.evaluate(() => window.__wecare.stats());
      assert.equal(stats.resyncs, 0, 'resumed from its last seq, no snapshot needed');
    });
  });
}
