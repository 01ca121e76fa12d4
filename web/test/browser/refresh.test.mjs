// (d) Token near expiry: the server warns (auth:expiring) 1.5 s before exp,
// the page asks its token provider for a fresh token and refreshes in band
// (auth:refresh) — no reconnect, no gap, still live after the old exp.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Server, Driver, makeFix, launchBrowser, openPage, bannerIs, trailHas, screenshot, LOCALES } from './lib/harness.mjs';

for (const { locale, lang } of LOCALES) {
  describe(locale, () => {
    let server;
    let browser;
    let driver;

    before(async () => {
      server = await new Server({ env: { AUTH_EXPIRY_WARNING_MS: '1500' } }).start();
      browser = await launchBrowser({ locale });
    });

    after(async () => {
      driver?.close();
      await browser?.close();
      await server?.dispose();
    });

    test('a token near expiry is refreshed in place: no reconnect, no gap', { timeout: 60_000 }, async () => {
      const shortExp = Math.floor(Date.now() / 1000) + 3;
      const shortToken = server.officerToken({ exp: shortExp });
      const minted = [];
      const page = await openPage(browser, server, shortToken, {
        beforeLoad: async (p) => {
          // The page's token provider: the short-lived token first, then fresh ones
          // (as an embedding app that can mint tokens would do).
          await p.exposeFunction('__mintToken', () => {
            const t = minted.length === 0 ? shortToken : server.officerToken({ ttlSeconds: 600 });
            minted.push(t);
            return t;
          });
          await p.addInitScript(() => {
            window.__wecareInit = { tokenProvider: () => window.__mintToken() };
          });
        },
      });
      await bannerIs(page, 'live');
      driver = new Driver(server, 'amb-31');
      await driver.connected();
      await driver.send(makeFix('amb-31', 13.7, 100.5));
      await trailHas(page, 'amb-31', 1, 2000);

      await page.waitForFunction(() => window.__wecare.stats().refreshOk >= 1, null, { timeout: 5000 });
      // Past the first token's exp (plus a margin for the server's expiry timer).
      await page.waitForFunction((expMs) => Date.now() > expMs + 1000, shortExp * 1000, { timeout: 6000 });
      await driver.send(makeFix('amb-31', 13.71, 100.51));
      await trailHas(page, 'amb-31', 2, 2000);

      const stats = await page.evaluate(() => window.__wecare.stats());
      assert.equal(stats.socketConnects, 1, 'never reconnected');
      assert.equal(stats.socketDisconnects, 0);
      assert.equal(stats.refreshFailed, 0);
      assert.equal(stats.resyncs, 0);
      assert.equal((await page.evaluate(() => window.__wecare.banner())).kind, 'live');
      const history = await page.evaluate(() => window.__wecare.bannerHistory());
      assert.ok(!history.includes('reconnecting') && !history.includes('auth-failed'), history.join(' → '));
      assert.ok(minted.length >= 2, 'the provider was asked for a fresh token');
      // The fresh token is kept for this tab.
      assert.equal(await page.evaluate(() => sessionStorage.getItem('wecare.rt.token')), minted[minted.length - 1]);
      await screenshot(page, `refresh-live-${lang}`);
    });
  });
}
