// (b) The server is SIGKILLed and restarted on the same DATA_DIR while
// drivers keep sending: the banner goes reconnecting → live, and every fix
// stored meanwhile shows up on the trails — no reload, no duplicate.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { isDeepStrictEqual } from 'node:util';
import {
  Server, Driver, makeFix, launchBrowser, openPage, bannerIs, fixesPerDriver, screenshot, waitUntil, LOCALES,
} from './lib/harness.mjs';
import { WORDS } from './lib/words.mjs';

for (const { locale, lang } of LOCALES) {
  describe(locale, () => {
    const say = WORDS[lang];
    let server;
    let browser;
    const drivers = [];

    before(async () => {
      server = await new Server().start();
      browser = await launchBrowser({ locale });
    });

    after(async () => {
      for (const d of drivers) d.close();
      await browser?.close();
      await server?.dispose();
    });

    test('page recovers every fix across a server SIGKILL and restart without a reload', { timeout: 60_000 }, async (t) => {
      const page = await openPage(browser, server, server.officerToken());
      await bannerIs(page, 'live');
      await page.evaluate(() => { window.__sameDocument = true; });

      for (const id of ['amb-11', 'amb-12']) drivers.push(new Driver(server, id));
      await Promise.all(drivers.map((d) => d.connected()));
      let step = 0;
      const sendRound = async (how) => {
        step += 1;
        await Promise.all(drivers.map((d, k) => d[how](makeFix(d.driverId, 13.7 + k * 0.02 + step * 0.001, 100.5 + step * 0.001))));
      };
      for (let i = 0; i < 3; i += 1) await sendRound('send');
      await page.waitForFunction(() => window.__wecare.trailCount('amb-11') === 3 && window.__wecare.trailCount('amb-12') === 3);

      await server.kill();
      await bannerIs(page, 'reconnecting');
      await screenshot(page, `restart-reconnecting-${lang}`);

      await server.start();
      // Drivers keep sending while the page is still disconnected: over REST at once…
      for (let i = 0; i < 4; i += 1) await sendRound('post');
      // …and over their own sockets once those are back.
      await Promise.all(drivers.map((d) => d.connected()));
      for (let i = 0; i < 3; i += 1) await sendRound('send');

      await bannerIs(page, 'live', 20_000);
      const expected = fixesPerDriver(await server.allEvents());
      assert.deepEqual(expected, { 'amb-11': 10, 'amb-12': 10 });
      // Key order of `expected` follows which driver's first fix got the lower
      // seq — a race — so compare as values (this once compared JSON strings and
      // failed whenever amb-12 won, with the trails complete).
      let got;
      await waitUntil(
        async () => {
          got = await page.evaluate(() => ({ 'amb-11': window.__wecare.trailCount('amb-11'), 'amb-12': window.__wecare.trailCount('amb-12') }));
          return isDeepStrictEqual(got, expected);
        },
        { timeoutMs: 5000, what: () => `trails to hold ${JSON.stringify(expected)} (last seen ${JSON.stringify(got)})` },
      );

      const history = await page.evaluate(() => window.__wecare.bannerHistory());
      t.diagnostic(`banner: ${history.join(' → ')}`);
      const iRe = history.indexOf('reconnecting');
      assert.ok(iRe >= 0 && history.lastIndexOf('live') > iRe, `banner went reconnecting → live: ${history.join(' → ')}`);
      assert.equal(await page.evaluate(() => window.__sameDocument), true, 'no reload');
      const stats = await page.evaluate(() => window.__wecare.stats());
      assert.equal(stats.resyncs, 0, 'resumed from lastSeq, no re-snapshot');
      // Markers stand at the newest fix.
      const state = await page.evaluate(() => window.__wecare.drivers());
      assert.deepEqual(state['amb-11'].marker, [13.7 + step * 0.001, 100.5 + step * 0.001]);

      // Still live after the restart.
      await sendRound('send');
      await page.waitForFunction(() => window.__wecare.trailCount('amb-12') === 11, null, { timeout: 2000 });
      await screenshot(page, `restart-live-${lang}`);
    });

    test('a server on a wiped store (new streamId) makes the page reload the fleet and say so', { timeout: 60_000 }, async () => {
      const page = browser.context.pages()[0];
      await bannerIs(page, 'live');
      const before = await page.evaluate(() => window.__wecare.position());
      assert.ok(before.lastSeq > 0);

      await server.kill();
      await bannerIs(page, 'reconnecting');
      const { rmSync, mkdirSync } = await import('node:fs');
      rmSync(server.dataDir, { recursive: true, force: true });
      mkdirSync(server.dataDir);
      await server.start();

      await bannerIs(page, 'resynced-after-gap', 20_000);
      const after = await page.evaluate(() => window.__wecare.position());
      assert.notEqual(after.streamId, before.streamId);
      assert.ok(after.lastSeq < before.lastSeq, `position ${after.lastSeq} is in the new stream`);
      // The old stream's trails are gone (the drivers' sockets reconnecting only add presence).
      const trails = await page.evaluate(() => Object.values(window.__wecare.drivers()).map((d) => d.trail));
      assert.ok(trails.every((n) => n === 0), `trails ${trails}`);
      const d = new Driver(server, 'amb-13');
      drivers.push(d);
      await d.connected();
      await d.send(makeFix('amb-13', 13.75, 100.55));
      await page.waitForFunction(() => window.__wecare.trailCount('amb-13') === 1, null, { timeout: 2000 });
      assert.match(await page.textContent('#banner'), say.reloaded);
      await screenshot(page, `restart-new-stream-${lang}`);
    });
  });
}
