// (e) The officer's first look at a 12-driver fleet: the map frames the
// whole fleet when it becomes current — also when the page reopens on a
// remembered fleet of 2 that has since grown to 12; "Show all" frames it
// again after the officer zoomed in; a click on a driver's row brings that
// driver into view, also while the list is redrawn many times a second.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Server, Driver, makeFix, launchBrowser, openPage, bannerIs, screenshot, zoomIn, LOCALES } from './lib/harness.mjs';
import { WORDS } from './lib/words.mjs';

const CENTRE = [13.7563, 100.5018];
/** Two drivers 150 m apart in the centre, then ten on a ring about 13 km out. */
const FLEET = [
  ['amb-01', CENTRE[0], CENTRE[1]],
  ['amb-02', CENTRE[0] + 0.001, CENTRE[1] + 0.001],
  ...Array.from({ length: 10 }, (_, k) => {
    const a = (2 * Math.PI * k) / 10;
    return [`amb-${String(k + 3).padStart(2, '0')}`, CENTRE[0] + 0.12 * Math.sin(a), CENTRE[1] + 0.12 * Math.cos(a)];
  }),
];
const ALL = FLEET.map(([id]) => id).sort();

const inView = (page) => page.evaluate(() => window.__wecare.driversInView());

for (const { locale, lang } of LOCALES) {
  describe(locale, () => {
    const say = WORDS[lang];
    let server;
    let browser;
    let page;
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

    const post = (id, lat, lng) => server.rest('POST', '/api/driver-locations', server.driverToken(id), makeFix(id, lat, lng));

    test('reopened on a fleet grown from 2 to 12, the map shows all 12', { timeout: 60_000 }, async () => {
      for (const [id, lat, lng] of FLEET.slice(0, 2)) await post(id, lat, lng);
      page = await openPage(browser, server, server.officerToken());
      await bannerIs(page, 'live');
      assert.deepEqual(await inView(page), ['amb-01', 'amb-02']);
      // Away from the page (it keeps the fleet it saw), the fleet grows to 12.
      await page.goto('about:blank');
      for (const [id, lat, lng] of FLEET.slice(2)) await post(id, lat, lng);

      page = await openPage(browser, server, server.officerToken());
      await bannerIs(page, 'live');
      assert.equal((await page.evaluate(() => window.__wecare.position())).lastSeq, 12, 'resumed and caught up');
      assert.deepEqual(await inView(page), ALL, 'every driver visible at first look');
      await screenshot(page, `first-look-${lang}`);
    });

    test('"show all" frames the fleet again after the officer zoomed in', { timeout: 60_000 }, async () => {
      await zoomIn(page, 3);
      await page.waitForFunction((n) => window.__wecare.driversInView().length < n, ALL.length);
      assert.equal(await page.evaluate(() => window.__wecare.followingFleet()), false, 'the officer took over the map');
      // New fixes do not move the map under the officer's hand…
      const far = FLEET[7];
      await post(far[0], far[1] + 0.01, far[2]);
      await page.waitForFunction(() => window.__wecare.position().lastSeq === 13);
      assert.ok(!(await inView(page)).includes(far[0]), 'map left where the officer put it');

      // …until "show all".
      const button = page.locator('[data-testid="show-all"]');
      assert.equal(await button.textContent(), say.showAll);
      await button.click();
      await page.waitForFunction((n) => window.__wecare.driversInView().length === n, ALL.length);
      assert.equal(await page.evaluate(() => window.__wecare.followingFleet()), true);
    });

    test('a click on a row brings that driver into view, also while the list keeps redrawing', { timeout: 60_000 }, async () => {
      // Zoom in on the centre pair: the ring is out of view.
      await page.click('#driver-rows tr[data-driver-id="amb-01"]');
      await zoomIn(page, 2);
      await page.waitForFunction(() => window.__wecare.driversInView().length <= 2);

      // A driver streaming fixes as fast as they are acked redraws the list all the time.
      const busy = new Driver(server, 'amb-01');
      drivers.push(busy);
      await busy.connected();
      let streaming = true;
      const stream = (async () => {
        for (let i = 0; streaming; i += 1) await busy.send(makeFix('amb-01', CENTRE[0] + (i % 10) * 1e-5, CENTRE[1]));
      })();
      try {
        for (const id of ['amb-03', 'amb-06', 'amb-09', 'amb-12', 'amb-05']) {
          assert.ok(!(await inView(page)).includes(id), `${id} starts out of view`);
          await page.click(`#driver-rows tr[data-driver-id="${id}"]`);
          await page.waitForFunction((d) => window.__wecare.driversInView().includes(d), id, { timeout: 3000 });
          assert.equal(await page.getAttribute(`#driver-rows tr[data-driver-id="${id}"]`, 'aria-selected'), 'true');
        }
      } finally {
        streaming = false;
        await stream;
      }
      await screenshot(page, `row-focus-${lang}`);
    });
  });
}
