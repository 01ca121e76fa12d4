// (f) With the server gone, the banner tells the officer what is wrong in
// plain words — never a raw browser or socket error — counts reconnect
// attempts from 1, and says how old the newest data on screen is (the age
// grows while the outage lasts); back to plain "live" once reconnected.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Server, makeFix, launchBrowser, openPage, bannerIs, screenshot, LOCALES } from './lib/harness.mjs';
import { WORDS, RAW_ERRORS } from './lib/words.mjs';

for (const { locale, lang } of LOCALES) {
  describe(locale, () => {
    const say = WORDS[lang];
    let server;
    let browser;

    before(async () => {
      server = await new Server().start();
      browser = await launchBrowser({ locale });
    });

    after(async () => {
      await browser?.close();
      await server?.dispose();
    });

    test('server gone: plain words, attempts from 1, the age of the newest data', { timeout: 60_000 }, async () => {
      const page = await openPage(browser, server, server.officerToken());
      await bannerIs(page, 'live');
      await server.rest('POST', '/api/driver-locations', server.driverToken('amb-41'), makeFix('amb-41', 13.75, 100.5));
      await page.waitForFunction(() => window.__wecare.trailCount('amb-41') === 1);

      await server.kill();
      await bannerIs(page, 'reconnecting');
      // The age ticks while the outage lasts: wait until it reads 2 s or more.
      await page.waitForFunction(
        (src) => {
          const m = new RegExp(src).exec(document.getElementById('banner').textContent);
          return m && Number(m[1]) >= 2;
        },
        say.newestAge.source,
        { timeout: 10_000 },
      );
      const text = await page.textContent('#banner');
      assert.match(text, say.lost, 'says what is wrong in plain words');
      assert.match(text, say.newestAge, 'says how old the newest data on screen is');
      await screenshot(page, `outage-${lang}`);

      const shown = await page.evaluate(() => window.__wecare.bannerTexts());
      const outage = shown.slice(shown.findIndex((s) => say.lost.test(s)));
      for (const s of outage) {
        assert.doesNotMatch(s, RAW_ERRORS, `raw error shown: ${s}`);
        if (!say.lost.test(s)) continue;
        const attempt = Number(say.attempt.exec(s)?.[1]);
        assert.ok(attempt >= 1, `attempts count from 1: ${s}`);
        assert.match(s, say.newestAge, `every outage text says how old the data is: ${s}`);
      }
      assert.equal(Number(say.attempt.exec(outage[0])[1]), 1, `the first attempt is 1: ${outage[0]}`);

      await server.start();
      await bannerIs(page, 'live', 20_000);
      assert.match(await page.textContent('#banner'), say.live, 'live again, with no age');
    });
  });
}
