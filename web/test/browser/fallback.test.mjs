// (c) Socket.io blocked (its polling requests aborted, its websockets closed):
// the page falls back to long-polling GET /api/realtime/events and stays
// current; when the socket gets through again it takes over with no duplicate.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Server, Driver, makeFix, launchBrowser, openPage, bannerIs, trailHas, screenshot, LOCALES } from './lib/harness.mjs';
import { WORDS, RAW_ERRORS } from './lib/words.mjs';

const SOCKET_IO = /\/socket\.io\//;

for (const { locale, lang } of LOCALES) {
  describe(locale, () => {
    const say = WORDS[lang];
    let server;
    let browser;
    let driver;

    before(async () => {
      server = await new Server().start();
      browser = await launchBrowser({ locale });
    });

    after(async () => {
      driver?.close();
      await browser?.close();
      await server?.dispose();
    });

    test('with websockets blocked the page long-polls and stays current', { timeout: 60_000 }, async (t) => {
      const page = await openPage(browser, server, server.officerToken(), {
        beforeLoad: async (p) => {
          await p.route(SOCKET_IO, (route) => route.abort('connectionrefused'));
          await p.routeWebSocket(SOCKET_IO, (ws) => ws.close());
        },
      });
      await bannerIs(page, 'http-fallback');

      driver = new Driver(server, 'amb-21');
      await driver.connected();
      const latencies = [];
      for (let i = 1; i <= 5; i += 1) {
        const t0 = Date.now();
        await driver.send(makeFix('amb-21', 13.8 + i * 0.001, 100.6));
        await trailHas(page, 'amb-21', i, 5000);
        latencies.push(Date.now() - t0);
      }
      t.diagnostic(`long-poll latencies ${latencies.join(',')} ms`);
      assert.ok(Math.max(...latencies) < 1500, `fallback too slow: ${latencies.join(',')}`);
      let stats = await page.evaluate(() => window.__wecare.stats());
      assert.equal(stats.socketConnects, 0, 'the socket never got through');
      assert.ok(stats.httpPages >= 5, `pages ${stats.httpPages}`);
      assert.equal((await page.evaluate(() => window.__wecare.banner())).kind, 'http-fallback');
      const text = await page.textContent('#banner');
      assert.match(text, say.httpFallback);
      assert.doesNotMatch(text, RAW_ERRORS);
      await screenshot(page, `fallback-http-${lang}`);

      // Unblock: the socket reconnects (resuming from the long-poll's lastSeq) and takes over.
      await page.unroute(SOCKET_IO);
      // routeWebSocket has no unroute: let new websockets through to the server.
      await page.routeWebSocket(SOCKET_IO, (ws) => ws.connectToServer());
      await bannerIs(page, 'live', 15_000);
      await driver.send(makeFix('amb-21', 13.9, 100.6));
      await trailHas(page, 'amb-21', 6, 2000);
      stats = await page.evaluate(() => window.__wecare.stats());
      assert.equal(stats.socketConnects, 1);
      assert.equal(stats.resyncs, 0);
      assert.equal(await page.evaluate(() => window.__wecare.trailCount('amb-21')), 6, 'no duplicate after the hand-over');
    });
  });
}
