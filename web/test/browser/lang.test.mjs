// (g) The page speaks the browser's language (Thai or English), and the
// officer's own choice from the switch wins and is remembered across a
// reload — the page's texts, banner, list and map controls all follow it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Server, makeFix, launchBrowser, openPage, bannerIs, LOCALES } from './lib/harness.mjs';
import { WORDS } from './lib/words.mjs';

let server;
const browsers = [];

before(async () => {
  server = await new Server().start();
  await server.rest('POST', '/api/driver-locations', server.driverToken('amb-51'), makeFix('amb-51', 13.75, 100.5, { status: 'ON_TRIP' }));
});

after(async () => {
  for (const b of browsers) await b.close();
  await server?.dispose();
});

/** What the officer reads in each place the language shows. */
async function reads(page) {
  return page.evaluate(() => ({
    lang: document.documentElement.lang,
    heading: document.querySelector('h1').textContent,
    banner: document.getElementById('banner').textContent,
    status: document.querySelector('#driver-rows tr[data-driver-id="amb-51"] td.status')?.textContent,
    showAll: document.querySelector('[data-testid="show-all"]').textContent,
    signOut: document.getElementById('signout').textContent,
  }));
}

function assertSpeaks(r, lang) {
  const say = WORDS[lang];
  assert.equal(r.lang, lang);
  assert.equal(r.heading, say.heading);
  assert.match(r.banner, say.live);
  assert.equal(r.status, say.onTrip);
  assert.equal(r.showAll, say.showAll);
  assert.equal(r.signOut, say.signOut);
}

for (const { locale, lang } of LOCALES) {
  test(`a browser in ${locale} gets the page in ${lang}; the switch changes it and is remembered`, { timeout: 60_000 }, async () => {
    const browser = await launchBrowser({ locale });
    browsers.push(browser);
    const page = await openPage(browser, server, server.officerToken());
    await bannerIs(page, 'live');
    await page.waitForSelector('#driver-rows tr[data-driver-id="amb-51"]');
    assertSpeaks(await reads(page), lang);

    const other = lang === 'th' ? 'en' : 'th';
    await page.evaluate(() => { window.__sameDocument = true; });
    await page.selectOption('#lang', other);
    await page.waitForFunction((l) => document.documentElement.lang === l, other);
    // The banner and the list are redrawn in the next pass.
    await page.waitForFunction((src) => new RegExp(src).test(document.getElementById('banner').textContent), WORDS[other].live.source);
    assertSpeaks(await reads(page), other);
    assert.equal(await page.evaluate(() => window.__sameDocument), true, 'switched without a reload');

    await page.reload();
    await page.waitForFunction(() => !!window.__wecare);
    await bannerIs(page, 'live');
    await page.waitForSelector('#driver-rows tr[data-driver-id="amb-51"]');
    assertSpeaks(await reads(page), other);
    assert.equal(await page.inputValue('#lang'), other, 'the switch shows the remembered choice');
  });
}
