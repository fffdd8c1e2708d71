// The web page in headless Chromium against the real server: sign-in, uploads, the list,
// a file's view, rename, active file, delete, live updates and user text kept as text.
// Run: npm test (after cargo build); SCREENSHOT_DIR=docs/screenshots (from the repo root,
// absolute or relative to it) refreshes the README's screenshots.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { mkdirSync, mkdtempSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Server, SECRET, launchBrowser, newPage, repo, until } from './harness.mjs';

const SALES = 'date,product,sales\n2024-01-01,apple,1.5\n2024-01-02,pear,2\n2024-01-03,apple,3.25\n2024-01-04,plum,\n';
const screenshots = process.env.SCREENSHOT_DIR
  ? resolve(repo, process.env.SCREENSHOT_DIR)
  : mkdtempSync(join(tmpdir(), 'file-service-screenshots-'));
mkdirSync(screenshots, { recursive: true });

/** An HS256 JWT signed with the test secret, for tokens `file-service` would not mint. */
function jwt(claims, secret = SECRET) {
  const part = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const body = `${part({ alg: 'HS256', typ: 'JWT' })}.${part(claims)}`;
  return `${body}.${createHmac('sha256', secret).update(body).digest('base64url')}`;
}

async function shoot(page, name) {
  await page.evaluate(() => document.getElementById('toasts').replaceChildren());
  await page.screenshot({ path: join(screenshots, `${name}.png`) });
}

/** The names in the list table, in order. */
async function listedNames(page) {
  return page.locator('#files tbody td.name a').allTextContents();
}

describe('the web page', () => {
  let server;
  let browser;
  let page;
  let session;

  before(async () => {
    server = await Server.start();
    browser = await launchBrowser();
    page = await newPage(browser);
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  it('asks for a token when there is none, an expired one or a forged one', async () => {
    const other = await newPage(browser);
    await other.goto(server.base);
    await other.locator('#signin').waitFor();
    assert.match(await other.locator('#signin-message').textContent(), /not signed in/);
    assert.match(await other.locator('#signin').textContent(), /file-service open/);
    await shoot(other, 'signin');

    const expired = jwt({ sub: '1', exp: Math.floor(Date.now() / 1000) - 60 });
    await other.fill('#token-input', expired);
    await other.press('#token-input', 'Enter');
    await until(async () => /expired/.test(await other.locator('#signin-message').textContent()), 'the expiry message');

    // Well-formed and unexpired, but not signed with the server's secret: the server says no.
    const forged = jwt({ sub: '1', exp: Math.floor(Date.now() / 1000) + 600 }, 'not-the-secret');
    await other.fill('#token-input', forged);
    await other.click('#signin-form button[type=submit]');
    await until(async () => /refused the token.*signature/.test(await other.locator('#signin-message').textContent()), 'the refusal');
    assert.equal(await other.evaluate(() => sessionStorage.length), 0, 'a refused token is not kept');
    assert.deepEqual(other.problems, []);
    await other.context().close();
  });

  it('signs in from the address file-service open prints', async () => {
    const url = (await server.cli('open', '--no-browser', '--ttl', '30m')).trim();
    assert.match(url, new RegExp(`^${server.base}/#token=[\\w-]+\\.[\\w-]+\\.[\\w-]+$`));
    const requests = [];
    page.on('request', (request) => requests.push(request));
    await page.goto(url);
    await page.locator('#list-view').waitFor();
    const token = url.split('#token=')[1];
    // The fragment is cleared; the token lives in this tab's sessionStorage only.
    assert.equal(await page.evaluate(() => location.hash), '');
    assert.equal(await page.evaluate(() => sessionStorage.getItem('file-service.token')), token);
    assert.match(await page.locator('#user-label').textContent(), /^User 1 · until /);
    await until(async () => /No files yet/.test(await page.locator('#empty').textContent()), 'the empty list');
    // The token travels in the Authorization header and nowhere else.
    await until(() => requests.some((r) => r.url().includes('/api/v1/')), 'an API request');
    for (const request of requests) {
      assert.ok(!request.url().includes(token), request.url());
      // headers(): as sent (allHeaders() would wait for the long-poll's response).
      const headers = request.headers();
      const carrying = Object.entries(headers).filter(([, v]) => v.includes(token)).map(([k]) => k);
      assert.deepEqual(carrying, request.url().includes('/api/v1/') ? ['authorization'] : [], request.url());
    }
    session = await page.inputValue('#session');
    assert.match(session, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.match(await page.locator('#active-info').textContent(), /No active file/);
  });

  it('uploads picked files with progress and shows why one is refused', async () => {
    // Record what the queue shows while uploads run.
    await page.evaluate(() => {
      window.seen = [];
      new MutationObserver(() => {
        for (const m of document.querySelectorAll('#queue-items .message')) window.seen.push(m.textContent);
      }).observe(document.getElementById('queue-items'), { subtree: true, childList: true, characterData: true, attributes: true });
    });
    const big = 'id,value,label\n' + Array.from({ length: 60_000 }, (_, i) => `${i},${(i * 0.37).toFixed(2)},row ${i % 97}`).join('\n') + '\n';
    await page.setInputFiles('#file-input', [
      { name: 'sales.csv', mimeType: 'text/csv', buffer: Buffer.from(SALES) },
      { name: 'measurements.csv', mimeType: 'text/csv', buffer: Buffer.from(big) },
      { name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('just some notes\n') },
    ]);
    const items = page.locator('#queue-items > li');
    assert.equal(await items.count(), 3);
    // Names are suggested from the file names; a description can be added.
    assert.equal(await items.nth(0).locator('input').first().inputValue(), 'sales');
    await items.nth(0).getByLabel('Description').fill('Daily sales by product');
    await page.click('#upload-all');
    await until(async () => (await page.locator('#queue-items > li.done, #queue-items > li.failed').count()) === 3, 'three finished uploads');

    assert.match(await items.nth(0).locator('.message').textContent(), /Uploaded as sales · 4 × 3 · active in this session/);
    assert.equal(await items.nth(0).locator('progress').evaluate((p) => p.value), 100);
    assert.match(await items.nth(1).locator('.message').textContent(), /Uploaded as measurements · 60,000 × 3/);
    const seen = await page.evaluate(() => window.seen);
    assert.ok(seen.some((text) => text.startsWith('Sent; the server is summarizing')), `progress reported: ${seen.join(' | ')}`);
    // The refused file says why, in the server's words.
    const refused = await items.nth(2).locator('.message').textContent();
    assert.match(refused, /^Refused: .*(extension|\.txt)/i);

    // The same name again: 409, shown with the server's detail.
    await page.setInputFiles('#file-input', [{ name: 'sales.csv', mimeType: 'text/csv', buffer: Buffer.from(SALES) }]);
    await page.locator('#queue-items > li').nth(3).locator('button', { hasText: 'Upload' }).click();
    await until(async () => /^Name taken: /.test(await items.nth(3).locator('.message').textContent()), 'the 409 message');
    await shoot(page, 'upload');

    // The last successful upload is the session's active file, and the list shows both.
    await until(async () => (await listedNames(page)).length === 2, 'two listed files');
    assert.deepEqual(await listedNames(page), ['sales', 'measurements']);
    assert.equal(await page.locator('#active-name').textContent(), 'measurements');
    const row = page.locator('#files tbody tr', { hasText: 'sales' }).first();
    assert.deepEqual(await row.locator('td').allTextContents().then((cells) => cells.slice(1, 5)), ['csv', `${SALES.length} B`, '4 × 3', 'Daily sales by product']);
  });

  it('shows a file dropped into the storage folder without a reload', async () => {
    await page.click('#clear-queue');
    const temporary = join(server.dir, 'arriving.tmp');
    writeFileSync(temporary, 'city,population\nLyon,522250\nNantes,320732\n');
    renameSync(temporary, join(server.storage, '1_cities.csv'));
    await page.locator('#files tbody td.name a', { hasText: 'cities' }).waitFor({ timeout: 20_000 });
    await until(async () => /New: “cities”/.test(await page.locator('#toasts').textContent()), 'the arrival notice');
  });

  it('lists, filters and pages through files', async () => {
    await server.upload('alpha', 'a,b\n1,2\n', { description: 'first letters' });
    await server.upload('alpine', 'a,b\n3,4\n');
    await server.upload('beta', 'a,b\n5,6\n');
    for (let i = 1; i <= 50; i += 1) await server.upload(`bulk ${String(i).padStart(3, '0')}`, `n\n${i}\n`);
    await page.reload();
    await page.locator('#files tbody tr').first().waitFor();
    await until(async () => (await page.locator('#page-info').textContent()) === '1–50 of 56', 'the first page');
    await page.click('#next');
    await until(async () => (await page.locator('#page-info').textContent()) === '51–56 of 56', 'the second page');
    assert.deepEqual(await listedNames(page), ['bulk 045', 'bulk 046', 'bulk 047', 'bulk 048', 'bulk 049', 'bulk 050']);
    assert.equal(await page.locator('#next').isDisabled(), true);

    // "/" jumps to the filter; typing filters by name prefix from the first page.
    await page.locator('body').press('/');
    assert.equal(await page.evaluate(() => document.activeElement.id), 'filter');
    await page.keyboard.type('alp');
    await until(async () => (await listedNames(page)).join() === 'alpha,alpine', 'the filtered list');
    assert.match(await page.locator('#count').textContent(), /^2 matching “alp”/);
    await page.fill('#filter', 'zzz');
    await until(async () => /No file name starts with “zzz”/.test(await page.locator('#empty').textContent()), 'no match');
    await page.fill('#filter', '');
    await until(async () => (await page.locator('#page-info').textContent()) === '1–50 of 56', 'the whole list again');
    await shoot(page, 'list');
  });

  it('opens a file: summary, profile with charts, preview', async () => {
    await page.locator('#files a', { hasText: /^sales$/ }).click();
    await page.locator('#file-title').waitFor();
    assert.equal(await page.locator('#file-title').textContent(), 'sales');
    assert.equal(await page.evaluate(() => location.hash), '#/file/sales');
    assert.equal(await page.locator('#file-description').textContent(), 'Daily sales by product');
    // The summary's Markdown is rendered: bold counts, a list of columns with code dtypes.
    const summary = page.locator('#summary .markdown');
    assert.deepEqual(await summary.locator('p').first().locator('strong').allTextContents(), ['4 rows', '3 columns']);
    assert.deepEqual(await summary.locator('ul').first().locator('li code').allTextContents(), ['datetime64[ns]', 'object', 'float64']);
    // The profile: one row per column, a box plot for numbers and dates, bars for text.
    await page.locator('#profile table').waitFor();
    const rows = page.locator('#profile tbody tr');
    assert.deepEqual(await rows.locator('th').allTextContents(), ['date', 'product', 'sales']);
    assert.equal(await rows.nth(0).locator('svg rect.box').count(), 1);
    assert.equal(await rows.nth(2).locator('svg rect.box').count(), 1);
    assert.equal(await rows.nth(1).locator('svg rect.bar').count(), 3);
    assert.match(await rows.nth(1).locator('svg text').first().textContent(), /^apple · 2$/);
    assert.deepEqual(await rows.nth(2).locator('td').allTextContents().then((c) => c.slice(0, 6)), ['float64', '1', '3', '1.5', '3.25', '2.25']);
    // The preview grid: header and rows as stored.
    assert.deepEqual(await page.locator('#preview thead th').allTextContents(), ['#', 'date', 'product', 'sales']);
    assert.deepEqual(await page.locator('#preview tbody tr').nth(3).locator('td').allTextContents(), ['2024-01-04', 'plum', '']);
    await shoot(page, 'file');
    await page.locator('#profile').evaluate((section) => section.scrollIntoView());
    await shoot(page, 'profile');

    // Download: the stored bytes, through the Authorization header.
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download')]);
    assert.equal(download.suggestedFilename(), 'sales.csv');
    const { readFileSync } = await import('node:fs');
    assert.equal(readFileSync(await download.path(), 'utf8'), SALES);
  });

  it('renames and describes a file', async () => {
    await page.click('#rename');
    assert.equal(await page.evaluate(() => document.activeElement.id), 'edit-field');
    await page.fill('#edit-field', 'alpha');
    await page.press('#edit-field', 'Enter');
    await until(async () => /alpha/.test(await page.locator('#edit-message').textContent()), 'the 409 message');
    await page.fill('#edit-field', 'sales 2024');
    await page.press('#edit-field', 'Enter');
    await until(async () => (await page.locator('#file-title').textContent()) === 'sales 2024', 'the new name');
    assert.equal(await page.evaluate(() => location.hash), '#/file/sales%202024');
    assert.equal((await server.api('GET', '/files/sales%202024')).status, 200);
    assert.equal((await server.api('GET', '/files/sales')).status, 404);

    await page.click('#describe');
    await page.fill('#edit-field', 'Sales of 2024, by day');
    await page.click('#editor button[type=submit]');
    await until(async () => (await page.locator('#file-description').textContent()) === 'Sales of 2024, by day', 'the description');
    assert.equal((await server.api('GET', '/files/sales%202024')).body.description, 'Sales of 2024, by day');
  });

  it('makes a file the active one of a session', async () => {
    // Uploads made "measurements" active in the page's session; a new session has none.
    await page.click('#new-session');
    const fresh = await page.inputValue('#session');
    assert.notEqual(fresh, session);
    await until(async () => /No active file/.test(await page.locator('#active-info').textContent()), 'no active file');
    assert.equal(await page.textContent('#make-active'), 'Make active');
    await page.click('#make-active');
    await until(async () => (await page.textContent('#make-active')) === 'Active in this session ✓', 'the active button');
    assert.equal(await page.locator('#active-name').textContent(), 'sales 2024');
    assert.equal((await server.api('GET', `/files/active/${fresh}`)).body.file_name, 'sales 2024');
    assert.equal((await server.api('GET', `/files/active/${session}`)).body.file_name, 'measurements');
    // The session is remembered by the browser.
    await page.reload();
    await page.locator('#file-title').waitFor();
    assert.equal(await page.inputValue('#session'), fresh);
    await until(async () => (await page.textContent('#make-active')) === 'Active in this session ✓', 'the active file after a reload');
  });

  it('deletes a file after confirmation', async () => {
    await page.goto(`${server.base}/#/file/beta`);
    await page.locator('#file-title', { hasText: 'beta' }).waitFor();
    await page.click('#delete');
    assert.equal(await page.locator('#confirm-delete').isVisible(), true);
    assert.match(await page.textContent('#confirm-text'), /“beta”/);
    await page.keyboard.press('Escape');
    assert.equal(await page.locator('#confirm-delete').isVisible(), false);
    assert.equal((await server.api('GET', '/files/beta')).status, 200, 'cancelled: still there');
    await page.click('#delete');
    await page.click('#confirm-yes');
    await page.locator('#list-view').waitFor();
    assert.equal((await server.api('GET', '/files/beta')).status, 404);
    await page.fill('#filter', 'beta');
    await until(async () => /No file name starts with “beta”/.test(await page.locator('#empty').textContent()), 'beta gone');
    await page.fill('#filter', '');
  });

  it('shows names, descriptions and cells with markup as text, and runs none of it', async () => {
    // A name with <script> is refused by the API; its message is shown as text.
    await page.setInputFiles('#file-input', [{ name: 'evil.csv', mimeType: 'text/csv', buffer: Buffer.from('a\n1\n') }]);
    const item = page.locator('#queue-items > li').last();
    await item.getByLabel('Name').fill('<script>window.pwned=1</script>');
    await item.getByLabel('Description').fill('<img src=x onerror="window.pwned=2"><b>bold?</b>');
    await item.locator('button', { hasText: 'Upload' }).click();
    await until(async () => /^Refused: /.test(await item.locator('.message').textContent()), 'the refused name');

    // Descriptions, column names and cells may hold anything.
    const markup = '<img src=x onerror="window.pwned=3">';
    await item.getByLabel('Name').fill('markup');
    await item.locator('button', { hasText: 'Try again' }).click();
    await until(async () => /^Uploaded as markup/.test(await item.locator('.message').textContent()), 'the upload');
    await server.upload('tags', `"<script>window.pwned=4</script>",**x**\n"${markup.replace(/"/g, '""')}",<b>b</b>\n`, {
      description: '<script>window.pwned=5</script> & <i>more</i>',
    });
    await page.fill('#filter', 'tags');
    const link = page.locator('#files a', { hasText: 'tags' });
    await link.waitFor();
    assert.equal(
      await page.locator('#files tr', { hasText: 'tags' }).locator('td.description').textContent(),
      '<script>window.pwned=5</script> & <i>more</i>',
    );
    await link.click();
    await page.locator('#preview table').waitFor();
    assert.equal(await page.textContent('#file-description'), '<script>window.pwned=5</script> & <i>more</i>');
    assert.deepEqual(await page.locator('#profile tbody th').allTextContents(), ['<script>window.pwned=4</script>', '**x**']);
    assert.deepEqual(await page.locator('#preview thead th').allTextContents(), ['#', '<script>window.pwned=4</script>', '**x**']);
    assert.deepEqual(await page.locator('#preview tbody td').allTextContents(), [markup, '<b>b</b>']);
    assert.match(await page.textContent('#summary'), /<script>window\.pwned=4<\/script>/);
    // Nothing ran and no element came from user text.
    assert.equal(await page.evaluate(() => window.pwned), undefined);
    assert.equal(await page.locator('main script, main img, main b, main i').count(), 0);
    await page.click('text=← All files');
    await page.fill('#filter', '');
  });

  it('is readable on a narrow window and in dark mode', async () => {
    await page.goto(`${server.base}/#/`);
    await page.locator('#files tbody tr').first().waitFor();
    await page.emulateMedia({ colorScheme: 'dark' });
    const background = await page.evaluate(() => getComputedStyle(document.documentElement).backgroundColor);
    assert.equal(background, 'rgb(21, 25, 30)');
    await page.locator('#files a', { hasText: /^measurements$/ }).click();
    await page.locator('#profile table').waitFor();
    await shoot(page, 'file-dark');
    await page.emulateMedia({ colorScheme: 'light' });
    await page.setViewportSize({ width: 390, height: 800 });
    await page.goto(`${server.base}/#/`);
    if (await page.locator('#clear-queue').isVisible()) await page.click('#clear-queue');
    await page.locator('#files tbody tr').first().waitFor();
    // Nothing wider than the window but the scrollable tables.
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `page overflows by ${overflow}px`);
    await shoot(page, 'narrow');
    await page.setViewportSize({ width: 1280, height: 800 });
  });

  it('had no script errors or CSP violations', () => {
    assert.deepEqual(page.problems, []);
  });
});
