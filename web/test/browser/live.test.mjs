// (a) Drivers' fixes appear on the Map Command page within a second; markers
// follow only non-outdated fixes; the list shows statuses (worded in the
// page's language, the code as sent kept on the row; a driver that reported
// none is "not reported", never a guessed status) and filters. Runs in
// Thai and in English, and saves a screenshot of each (map-th, map-en).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Server, Driver, makeFix, launchBrowser, openPage, bannerIs, trailHas, screenshot, LOCALES } from './lib/harness.mjs';
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

    test('drivers fixes appear on the page within a second', { timeout: 60_000 }, async () => {
      const page = await openPage(browser, server, server.officerToken());
      await bannerIs(page, 'live');
      assert.equal(await page.evaluate(() => window.__wecare.lang()), lang, `page language from the browser's ${locale}`);
      assert.equal(await page.textContent('h1'), say.heading);

      const ids = ['amb-01', 'amb-02', 'amb-03'];
      for (const id of ids) drivers.push(new Driver(server, id));
      await Promise.all(drivers.map((d) => d.connected()));

      const latencies = [];
      for (let i = 0; i < 5; i += 1) {
        for (const [k, d] of drivers.entries()) {
          const fix = makeFix(d.driverId, 13.75 + k * 0.01 + i * 0.001, 100.5 + i * 0.001, { status: k === 1 ? 'on_trip' : undefined });
          const t0 = Date.now();
          await d.send(fix);
          await trailHas(page, d.driverId, i + 1, 5000);
          latencies.push(Date.now() - t0);
        }
      }
      const worst = Math.max(...latencies);
      assert.ok(worst < 1000, `a fix took ${worst} ms to appear (latencies ${latencies.join(',')})`);

      const state = await page.evaluate(() => window.__wecare.drivers());
      for (const [k, id] of ids.entries()) {
        assert.equal(state[id].trail, 5);
        assert.deepEqual(state[id].marker, [13.75 + k * 0.01 + 4 * 0.001, 100.5 + 4 * 0.001]);
        assert.equal(state[id].online, true);
        assert.equal(state[id].freshness, 'fresh');
      }
      assert.equal(state['amb-02'].status, 'ON_TRIP', 'status stored upper case, as the server sends it');
      assert.equal(state['amb-01'].status, null, 'fixes without a status: none reported, none assumed (contract v1.3 §4)');

      // A late (older) fix goes on the trail, not on the marker.
      const d0 = drivers[0];
      const before = state[d0.driverId].marker;
      await d0.send(makeFix(d0.driverId, 13.7, 100.45, { recordedAt: Date.now() - 120_000 }));
      await trailHas(page, d0.driverId, 6, 2000);
      assert.deepEqual(await page.evaluate((id) => window.__wecare.markerPosition(id), d0.driverId), before);
      const trail = await page.evaluate((id) => window.__wecare.trail(id), d0.driverId);
      assert.deepEqual(trail[0], [13.7, 100.45], 'the late fix is first on the trail (recordedAt order)');

      // The list shows every driver, the status in the page's words; the filter narrows it
      // (by the status as worded, or as the code).
      const rows = () => page.$$eval('#driver-rows tr', (trs) => trs.map((tr) => tr.dataset.driverId));
      assert.deepEqual(await rows(), ids);
      const row2 = '#driver-rows tr[data-driver-id="amb-02"]';
      assert.equal(await page.textContent(`${row2} td.status`), say.onTrip);
      assert.equal(await page.getAttribute(row2, 'data-status'), 'ON_TRIP');
      assert.equal(await page.textContent(`${row2} td.presence`), say.online);
      // A driver that sent fixes but no status is shown as not reported, not as available.
      for (const id of ['amb-01', 'amb-03']) {
        const row = `#driver-rows tr[data-driver-id="${id}"]`;
        assert.equal(await page.textContent(`${row} td.status`), say.notReported, id);
        assert.equal(await page.getAttribute(row, 'data-status'), '', id);
      }
      await page.fill('#driver-filter', say.notReported);
      await page.waitForFunction(() => document.querySelectorAll('#driver-rows tr').length === 2);
      assert.deepEqual(await rows(), ['amb-01', 'amb-03'], 'filter by the not-reported label');
      for (const f of [say.filterOnTrip, 'on_trip']) {
        await page.fill('#driver-filter', f);
        await page.waitForFunction(() => document.querySelectorAll('#driver-rows tr').length === 1);
        assert.deepEqual(await rows(), ['amb-02'], `filter ${f}`);
      }
      await page.fill('#driver-filter', '');
      await page.waitForFunction(() => document.querySelectorAll('#driver-rows tr').length === 3);

      assert.match(await page.textContent('#banner'), say.live);
      assert.ok(await page.isVisible('.leaflet-control-scale'), 'scale shown without tiles');
      assert.match(await page.textContent('[data-testid="coords"]'), /-?\d+\.\d{5}, -?\d+\.\d{5}/);
      await screenshot(page, `map-${lang}`);
      assert.deepEqual(page.logs.filter((l) => l.startsWith('[pageerror]')), []);
    });
  });
}
