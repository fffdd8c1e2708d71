// A file's share links in the page, in headless Chromium against the real server: make a
// link with an expiry and a download limit, copy its address, download with it without a
// token, see it listed with its downloads, revoke it, and find the address refused.
// Run: npm test (after cargo build).

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Server, launchBrowser, newPage, until } from './harness.mjs';

const SALES = 'date,product,sales\n2024-01-01,apple,1.5\n2024-01-02,pear,2\n';

describe('sharing a file from the page', () => {
  let server;
  let browser;
  let page;

  before(async () => {
    server = await Server.start();
    browser = await launchBrowser();
    page = await newPage(browser, { permissions: ['clipboard-read', 'clipboard-write'] });
    await server.upload('sales', SALES);
    const url = (await server.cli('open', '--no-browser', '--ttl', '30m')).trim();
    await page.goto(url);
    await page.locator('#list-view').waitFor();
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  it('makes, copies, lists and revokes a link that downloads without a token', async () => {
    await page.goto(`${server.base}/#/file/sales`);
    await page.click('#share');
    await page.locator('#share-panel').waitFor();
    assert.equal(await page.getAttribute('#share', 'aria-expanded'), 'true');
    assert.equal(await page.locator('#share-links').textContent(), 'No links yet.');

    await page.selectOption('#share-expiry', '3600');
    await page.fill('#share-limit', '2');
    await page.click('#share-make');
    const address = await until(async () => page.inputValue('#share-url'), 'the new link');
    assert.match(address, new RegExp(`^${server.base}/api/v1/links/[\\w-]{43}$`));
    await page.click('#share-copy');
    await until(async () => (await page.evaluate(() => navigator.clipboard.readText())) === address, 'the copied link');

    // Anyone with the address gets the bytes, without a token.
    const shared = await fetch(address);
    assert.equal(shared.status, 200);
    assert.equal(await shared.text(), SALES);
    assert.match(shared.headers.get('content-disposition'), /sales\.csv/);

    // Listed (after a reload of the panel) with its download and limit, never its address.
    await page.click('#share-panel button:text("Close")');
    await page.click('#share');
    const row = page.locator('#share-table tbody tr');
    await until(async () => (await row.count()) === 1, 'the link in the list');
    assert.equal(await row.locator('td.num').textContent(), '1 of 2');
    assert.equal(await row.locator('td.link-state').textContent(), 'Active');
    assert.ok(!(await page.locator('#share-panel').textContent()).includes(address.split('/').pop()));

    // Revoked: gone from the list, and the address is refused.
    await row.locator('button.revoke').click();
    await until(async () => (await page.locator('#share-links').textContent()) === 'No links yet.', 'the empty list');
    const refused = await fetch(address);
    assert.equal(refused.status, 404);
    assert.equal((await refused.json()).code, 'not_found');
    assert.deepEqual(page.problems, []);
  });
});
