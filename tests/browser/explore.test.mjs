// The file view's Data and SQL tabs in headless Chromium against the real server: paging
// to far rows, sorting, facets, filters, search, the view kept in the address, SQL with
// Ctrl+Enter and its download, markup kept as text, and the server's words for errors.
// Run: npm test (after cargo build); SCREENSHOT_DIR=docs/screenshots refreshes the
// README's screenshots of the grid and the SQL tab.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Server, launchBrowser, newPage, repo, until } from './harness.mjs';

const screenshots = process.env.SCREENSHOT_DIR
  ? resolve(repo, process.env.SCREENSHOT_DIR)
  : mkdtempSync(join(tmpdir(), 'file-service-screenshots-'));
mkdirSync(screenshots, { recursive: true });

// "orders": 5,000 rows; every 13th amount missing; regions unevenly spread; two years of days.
const ROWS = 5000;
const REGIONS = ['north', 'south', 'east', 'west'];
const orders = Array.from({ length: ROWS }, (_, i) => {
  const day = new Date(Date.UTC(2023, 0, 1) + (i % 730) * 86_400_000).toISOString().slice(0, 10);
  return {
    id: i,
    customer: `cust-${String(i % 250).padStart(4, '0')}`,
    region: REGIONS[(i % 7) % 4],
    amount: i % 13 === 0 ? null : ((i * 37) % 1000) + (i % 2 ? 0.5 : 0),
    day,
    note: `order ${i} of ${REGIONS[(i % 7) % 4]}`,
  };
});
const ORDERS_CSV = 'id,customer,region,amount,day,note\n'
  + orders.map((o) => [o.id, o.customer, o.region, o.amount ?? '', o.day, o.note].join(',')).join('\n') + '\n';

const MARKUP = '<img src=x onerror="window.pwned=1">';
const LONG = 'x'.repeat(1500);
const MARKUP_CSV = `label,html\nimage,"${MARKUP.replace(/"/g, '""')}"\nbold,<b>bold</b>\nlong,${LONG}\n`;

/** A screenshot with the tabs at the top of the window. */
async function shoot(page, name) {
  await page.evaluate(() => {
    document.getElementById('toasts').replaceChildren();
    document.getElementById('file-tabs').scrollIntoView({ block: 'start' });
    document.getElementById('facets')?.scrollTo(0, 0);
  });
  await page.screenshot({ path: join(screenshots, `${name}.png`) });
}

/** The grid's header names and its cells as text, row by row. */
async function grid(page, at = '#explore-grid') {
  return page.locator(at).evaluate((box) => ({
    columns: Array.from(box.querySelectorAll('thead th[data-column]'), (th) => th.dataset.column),
    rows: Array.from(box.querySelectorAll('tbody tr'), (tr) => Array.from(tr.querySelectorAll('td'), (td) => td.textContent)),
    numbers: Array.from(box.querySelectorAll('tbody th.rownum'), (th) => Number(th.textContent)),
    nulls: Array.from(box.querySelectorAll('tbody tr'), (tr) => Array.from(tr.querySelectorAll('td'), (td) => td.classList.contains('null'))),
  }));
}

const status = (page) => page.locator('#view-status').textContent();
const fmt = (n) => new Intl.NumberFormat('en-US').format(n);

/** Waits for the Data tab to show `text` as its status. */
async function showing(page, text) {
  await until(async () => (await status(page)) === text, `the status “${text}” (it says “${await status(page)}”)`);
}

/** The status of the first page of a view of `n` rows out of the whole file. */
const matching = (n) => `Rows ${n ? 1 : 0}–${fmt(Math.min(100, n))} of ${fmt(n)} matching (of ${fmt(ROWS)})`;

/** The address's view parameters. */
async function hashParams(page) {
  return page.evaluate(() => Object.fromEntries(Array.from(new URLSearchParams(location.hash.split('?')[1] || '').entries())));
}

describe('exploring a file in the page', () => {
  let server;
  let browser;
  let page;

  before(async () => {
    server = await Server.start();
    browser = await launchBrowser();
    page = await newPage(browser, { locale: 'en-US' });
    await server.upload('orders', ORDERS_CSV);
    await server.upload('markup', MARKUP_CSV);
    const url = (await server.cli('open', '--no-browser', '--ttl', '30m')).trim();
    await page.goto(url);
    await page.locator('#list-view').waitFor();
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  it('pages to a far row of the whole file and shows its values', async () => {
    await page.goto(`${server.base}/#/file/orders?tab=data`);
    await showing(page, `Rows 1–100 of ${fmt(ROWS)}`);
    assert.deepEqual((await grid(page)).columns, ['id', 'customer', 'region', 'amount', 'day', 'note']);
    assert.equal(await page.locator('#page-prev').isDisabled(), true);

    await page.fill('#goto-row', '4321');
    await page.press('#goto-row', 'Enter');
    await showing(page, `Rows 4,321–4,420 of ${fmt(ROWS)}`);
    const shown = await grid(page);
    assert.equal(shown.numbers[0], 4321);
    const expected = orders[4320];
    const [id, customer, region, amount, day, note] = shown.rows[0];
    assert.deepEqual([Number(id), customer, region, Number(amount), note], [expected.id, expected.customer, expected.region, expected.amount, expected.note]);
    assert.ok(day.startsWith(expected.day), day);
    // The same cells the API gives for that row.
    const api = await server.api('GET', '/files/orders/rows?offset=4320&limit=1');
    assert.deepEqual(shown.rows[0], api.body.rows[0].map((v) => (v === null ? '' : String(v))));
    assert.equal((await hashParams(page)).offset, '4320');

    await page.click('#page-last');
    await showing(page, `Rows 4,901–5,000 of ${fmt(ROWS)}`);
    assert.equal((await grid(page)).rows.at(-1)[0], String(ROWS - 1));
    assert.equal(await page.locator('#page-next').isDisabled(), true);
    await page.click('#page-prev');
    await showing(page, `Rows 4,801–4,900 of ${fmt(ROWS)}`);
    await page.click('#page-first');
    await showing(page, `Rows 1–100 of ${fmt(ROWS)}`);
  });

  it('sorts by a header: ascending, descending (missing values last), none, and a second key', async () => {
    const byAmount = orders.filter((o) => o.amount !== null).sort((a, b) => a.amount - b.amount || a.id - b.id);
    const missing = orders.filter((o) => o.amount === null);
    const amountHeader = page.locator('#explore-grid th[data-column="amount"] .col-sort');

    await amountHeader.click();
    await until(async () => (await hashParams(page)).orderby === '"amount" ASC', 'orderby in the address');
    await until(async () => (await grid(page)).rows[0][0] === String(byAmount[0].id), 'the smallest amount first');
    let shown = await grid(page);
    assert.deepEqual(shown.rows.map((r) => Number(r[0])), byAmount.slice(0, 100).map((o) => o.id));
    assert.equal(await page.locator('#explore-grid th[data-column="amount"]').getAttribute('aria-sort'), 'ascending');
    // Missing amounts come last.
    await page.click('#page-last');
    await showing(page, `Rows 4,901–5,000 of ${fmt(ROWS)}`);
    shown = await grid(page);
    assert.deepEqual(shown.rows.map((r) => Number(r[0])), missing.slice(-100).map((o) => o.id));
    assert.ok(shown.nulls.every((cells) => cells[3]), 'the last page holds the missing amounts');

    // Again: descending, from the first page; missing values still last.
    await page.locator('#explore-grid th[data-column="amount"] .col-sort').click();
    await until(async () => (await hashParams(page)).orderby === '"amount" DESC', 'descending');
    await showing(page, `Rows 1–100 of ${fmt(ROWS)}`);
    const descending = [...byAmount].sort((a, b) => b.amount - a.amount || a.id - b.id);
    shown = await grid(page);
    assert.deepEqual(shown.rows.map((r) => Number(r[3])), descending.slice(0, 100).map((o) => o.amount));
    await page.fill('#goto-row', String(ROWS - missing.length + 1));
    await page.press('#goto-row', 'Enter');
    await until(async () => (await grid(page)).numbers[0] === ROWS - missing.length + 1, 'the first missing amount');
    shown = await grid(page);
    assert.equal(shown.nulls[0][3], true);
    assert.equal(shown.rows[0][0], String(missing[0].id));
    assert.equal(await page.locator('#explore-grid tbody tr').first().locator('td').nth(3).textContent(), '');

    // A third click: the file's order.
    await page.locator('#explore-grid th[data-column="amount"] .col-sort').click();
    await until(async () => (await hashParams(page)).orderby === undefined, 'no orderby');
    await until(async () => (await grid(page)).rows[0]?.[0] === '0', 'the file order');
    assert.equal(await page.locator('#explore-grid th[data-column="amount"]').getAttribute('aria-sort'), 'none');

    // Shift-click adds a second key.
    await page.locator('#explore-grid th[data-column="region"] .col-sort').click();
    await until(async () => (await hashParams(page)).orderby === '"region" ASC', 'region ascending');
    await page.locator('#explore-grid th[data-column="amount"] .col-sort').click({ modifiers: ['Shift'] });
    await until(async () => (await hashParams(page)).orderby === '"region" ASC, "amount" ASC', 'two keys');
    const both = [...orders].sort((a, b) => a.region.localeCompare(b.region)
      || (a.amount === null) - (b.amount === null) || (a.amount ?? 0) - (b.amount ?? 0) || a.id - b.id);
    await until(async () => (await grid(page)).rows[0][0] === String(both[0].id), 'region then amount');
    shown = await grid(page);
    assert.deepEqual(shown.rows.map((r) => Number(r[0])), both.slice(0, 100).map((o) => o.id));
    assert.deepEqual(await page.locator('#explore-grid .sort-mark').allTextContents(), ['↑1', '↑2']);
    // Back to the file's order for the next tests.
    await page.locator('#explore-grid th[data-column="region"] .col-sort').click();
    await until(async () => (await hashParams(page)).orderby === '"region" ASC', 'one key');
    await page.locator('#explore-grid th[data-column="region"] .col-sort').click();
    await page.locator('#explore-grid th[data-column="region"] .col-sort').click();
    await until(async () => (await hashParams(page)).orderby === undefined, 'no sort');
  });

  it('filters by a facet value and from a column menu, and searches', async () => {
    const north = orders.filter((o) => o.region === 'north');
    // Facets of the view: region's most common values with their counts.
    const facet = page.locator('#facets .facet[data-column="region"]');
    await facet.waitFor();
    const counts = Object.fromEntries(REGIONS.map((r) => [r, orders.filter((o) => o.region === r).length]));
    await until(async () => (await facet.locator('.facet-value[data-value="north"] .facet-count').textContent()) === fmt(counts.north), 'the north count');
    await facet.locator('.facet-value[data-value="north"]').click();
    await showing(page, matching(north.length));
    assert.deepEqual(await page.locator('#filters code').allTextContents(), [`"region" = 'north'`]);
    assert.ok((await grid(page)).rows.every((r) => r[2] === 'north'));
    const api = await server.api('GET', `/files/orders/rows?limit=1&where=${encodeURIComponent(`"region" = 'north'`)}`);
    assert.equal(api.body.total_rows, north.length);
    // The facets follow the filter.
    await until(async () => (await facet.locator('.facet-value').count()) === 1, 'one region left');

    // The amount column's menu: >= 900 on top of the region.
    await page.locator('#explore-grid th[data-column="amount"] .col-menu').click();
    await page.selectOption('#filter-op', '>=');
    await page.fill('#filter-value', '990');
    await page.press('#filter-value', 'Enter');
    const big = north.filter((o) => o.amount !== null && o.amount >= 990);
    assert.ok(big.length > 0 && big.length < 100);
    await showing(page, matching(big.length));
    assert.deepEqual((await grid(page)).rows.map((r) => Number(r[0])), big.map((o) => o.id));

    // IS NULL takes no value.
    await page.locator('#filters .chip-remove').nth(1).click();
    await page.locator('#explore-grid th[data-column="amount"] .col-menu').click();
    await page.selectOption('#filter-op', 'IS NULL');
    await page.click('#filter-menu button[type=submit]');
    const northMissing = north.filter((o) => o.amount === null);
    await showing(page, matching(northMissing.length));
    assert.ok((await grid(page)).nulls.every((cells) => cells[3]));
    await page.locator('#filters .chip-remove').nth(1).click();
    await showing(page, matching(north.length));

    // The search box (debounced) looks in text columns, ignoring case, within the filter.
    const searched = north.filter((o) => o.customer === 'cust-0042');
    assert.ok(searched.length > 0);
    await page.fill('#view-search', 'CUST-0042');
    await showing(page, matching(searched.length));
    assert.deepEqual((await grid(page)).rows.map((r) => Number(r[0])), searched.map((o) => o.id));
    await page.fill('#view-search', 'cust-00');
    const wider = north.filter((o) => o.customer.startsWith('cust-00'));
    assert.ok(wider.length > 200);
    await showing(page, matching(wider.length));
    await page.locator('#explore-grid th[data-column="day"] .col-sort').click();
    await until(async () => (await hashParams(page)).orderby === '"day" ASC', 'sorted by day');
  });

  it('keeps the view in the address: a reload or a shared link shows the same rows', async () => {
    // Narrow to three columns with the chooser.
    await page.click('#column-chooser summary');
    await page.locator('#column-chooser label', { hasText: 'note' }).locator('input').uncheck();
    await until(async () => (await grid(page)).columns.length === 5, 'five columns');
    await page.locator('#column-chooser label', { hasText: 'day' }).locator('input').uncheck();
    await until(async () => (await grid(page)).columns.join() === 'id,customer,region,amount', 'four columns');
    await page.click('#column-chooser summary');
    await page.click('#page-next');
    await until(async () => (await grid(page)).numbers[0] === 101, 'the second page');
    const before = { status: await status(page), grid: await grid(page), params: await hashParams(page) };
    assert.deepEqual(before.params, {
      tab: 'data', offset: '100', where: `"region" = 'north'`, orderby: '"day" ASC', q: 'cust-00', columns: 'id,customer,region,amount',
    });
    await shoot(page, 'explore-grid');

    await page.reload();
    await showing(page, before.status);
    assert.deepEqual(await grid(page), before.grid);
    assert.equal(await page.inputValue('#view-search'), 'cust-00');
    assert.deepEqual(await page.locator('#filters code').allTextContents(), [`"region" = 'north'`]);
    assert.equal(await page.getAttribute('#tab-data', 'aria-selected'), 'true');

    // The same address in another tab (a shared link; the token is per tab).
    const other = await newPage(browser, { locale: 'en-US' });
    const url = (await server.cli('open', '--no-browser', '--ttl', '30m')).trim();
    await other.goto(url);
    await other.locator('#list-view').waitFor();
    await other.goto(`${server.base}/${await page.evaluate(() => location.hash)}`);
    await until(async () => (await other.locator('#view-status').textContent()) === before.status, 'the shared view');
    assert.deepEqual(await grid(other), before.grid);
    assert.deepEqual(other.problems, []);
    await other.context().close();

    // The whole view (every matching row, its columns, its order) as a download.
    await page.selectOption('#view-format', 'csv');
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#view-download')]);
    const text = readFileSync(await download.path(), 'utf8');
    const query = new URLSearchParams({ where: before.params.where, orderby: before.params.orderby, q: before.params.q, columns: before.params.columns, format: 'csv' });
    assert.equal(text, (await server.api('GET', `/files/orders/rows?${query}`)).body);
    const lines = text.trim().split('\n');
    assert.equal(lines[0], 'id,customer,region,amount');
    const expected = orders.filter((o) => o.region === 'north' && o.customer.startsWith('cust-00'))
      .sort((a, b) => a.day.localeCompare(b.day) || a.id - b.id);
    assert.deepEqual(lines.slice(1).map((l) => Number(l.split(',')[0])), expected.map((o) => o.id));

    // Back to the whole file.
    await page.goto(`${server.base}/#/file/orders?tab=data`);
    await showing(page, `Rows 1–100 of ${fmt(ROWS)}`);
    assert.equal((await grid(page)).columns.length, 6);
  });

  it('shows the server’s words for a condition it refuses', async () => {
    const bad = 'nope > 1';
    const api = await server.api('GET', `/files/orders/rows?where=${encodeURIComponent(bad)}`);
    assert.equal(api.status, 422);
    await page.fill('#where-input', bad);
    await page.press('#where-input', 'Enter');
    await until(async () => page.locator('#view-error').isVisible(), 'the error');
    assert.equal(await page.locator('#view-error').textContent(), api.body.detail);
    assert.match(api.body.detail, /nope/);
    // Removing the condition brings the rows back and the error goes.
    await page.locator('#filters .chip-remove').click();
    await showing(page, `Rows 1–100 of ${fmt(ROWS)}`);
    assert.equal(await page.locator('#view-error').isVisible(), false);
  });

  it('runs SQL with Ctrl+Enter, shows the result, downloads it and remembers it', async () => {
    await page.click('#tab-sql');
    await page.locator('#sql-columns .column-chip').first().waitFor();
    assert.deepEqual(await page.locator('#sql-columns .column-chip').evaluateAll((b) => b.map((x) => x.dataset.column)),
      ['id', 'customer', 'region', 'amount', 'day', 'note']);
    await page.fill('#sql-editor', 'SELECT ');
    await page.locator('#sql-editor').press('End');
    await page.click('#sql-columns .column-chip[data-column="region"]');
    await page.locator('#sql-editor').press('End');
    await page.keyboard.type(', COUNT(*) AS n, SUM(amount) AS total FROM data GROUP BY region ORDER BY region');
    const sql = 'SELECT region, COUNT(*) AS n, SUM(amount) AS total FROM data GROUP BY region ORDER BY region';
    assert.equal(await page.inputValue('#sql-editor'), sql);
    await page.press('#sql-editor', 'Control+Enter');
    await page.locator('#sql-result tbody tr').first().waitFor();
    const expected = [...REGIONS].sort().map((r) => {
      const rows = orders.filter((o) => o.region === r);
      return [r, rows.length, rows.reduce((s, o) => s + (o.amount ?? 0), 0)];
    });
    const shown = await grid(page, '#sql-result');
    assert.deepEqual(shown.columns, ['region', 'n', 'total']);
    assert.deepEqual(shown.rows.map(([r, n, t]) => [r, Number(n), Number(t)]), expected);
    assert.match(await page.textContent('#sql-status'), /^4 rows · [\d,]+ ms$/);
    assert.equal((await hashParams(page)).tab, 'sql');
    assert.equal((await hashParams(page)).sql, sql);
    await shoot(page, 'explore-sql');

    // The whole result as CSV, through the query route's format parameter.
    await page.selectOption('#sql-format', 'csv');
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#sql-download')]);
    assert.equal(download.suggestedFilename().endsWith('.csv'), true, download.suggestedFilename());
    const text = readFileSync(await download.path(), 'utf8');
    const api = await server.api('POST', '/files/orders/query?format=csv', { json: { sql } });
    assert.equal(text, api.body);
    const lines = text.trim().split('\n');
    assert.equal(lines[0], 'region,n,total');
    assert.deepEqual(lines.slice(1).map((l) => l.split(',')).map(([r, n, t]) => [r, Number(n), Number(t)]), expected);

    // A refused query: the server's words.
    await page.fill('#sql-editor', 'DELETE FROM data');
    await page.click('#sql-run');
    const refused = await server.api('POST', '/files/orders/query', { json: { sql: 'DELETE FROM data' } });
    assert.equal(refused.status, 422);
    await until(async () => page.locator('#sql-error').isVisible(), 'the SQL error');
    assert.equal(await page.textContent('#sql-error'), refused.body.detail);

    // Remembered in this browser: after a reload, one click brings it back.
    await page.reload();
    await page.locator('#sql-recent .recent-query').first().waitFor();
    assert.deepEqual(await page.locator('#sql-recent .recent-query').allTextContents(), [sql]);
    await page.fill('#sql-editor', '');
    await page.click('#sql-recent .recent-query');
    assert.equal(await page.inputValue('#sql-editor'), sql);
  });

  it('pages through a long SQL result with Next and Previous', async () => {
    await page.goto(`${server.base}/#/file/orders?tab=sql`);
    const sql = 'SELECT id, region FROM data ORDER BY id DESC';
    await page.fill('#sql-editor', sql);
    await page.press('#sql-editor', 'Control+Enter');
    const byId = [...orders].sort((a, b) => b.id - a.id);
    const sqlStatus = () => page.textContent('#sql-status');
    await until(async () => /^rows 1–1,000 \(more follow/.test(await sqlStatus()), 'the first page of the result');
    let shown = await grid(page, '#sql-result');
    assert.equal(shown.rows.length, 1000);
    assert.deepEqual(shown.rows.map(([id]) => Number(id)), byId.slice(0, 1000).map((o) => o.id));
    assert.equal(await page.isDisabled('#sql-previous'), true);

    // The last page: Next four times, each a page further; then Next is off.
    for (let k = 1; k < ROWS / 1000; k += 1) {
      await page.click('#sql-next');
      await until(async () => (await sqlStatus()).startsWith(`rows ${fmt(k * 1000 + 1)}–`), `page ${k + 1}`);
    }
    assert.match(await sqlStatus(), new RegExp(`^rows 4,001–${fmt(ROWS)} \\(the last\\)`));
    shown = await grid(page, '#sql-result');
    assert.deepEqual(shown.rows.map(([id]) => Number(id)), byId.slice(4000).map((o) => o.id));
    assert.equal(shown.numbers[0], 4001);
    assert.equal(await page.isDisabled('#sql-next'), true);
    // Back one page: the rows before, as the API gives them with an offset.
    await page.click('#sql-previous');
    await until(async () => (await sqlStatus()).startsWith('rows 3,001–4,000'), 'the page before');
    const api = await server.api('POST', '/files/orders/query', { json: { sql, limit: 1000, offset: 3000 } });
    assert.equal(api.status, 200);
    assert.equal(api.body.truncated, true);
    assert.deepEqual((await grid(page, '#sql-result')).rows.map(([id, region]) => [Number(id), region]),
      api.body.rows.map(([id, region]) => [id, region]));
  });

  it('shows markup in cells as text, runs none of it, and marks cut cells', async () => {
    await page.goto(`${server.base}/#/file/markup?tab=data`);
    await showing(page, 'Rows 1–3 of 3');
    const shown = await grid(page);
    assert.deepEqual(shown.rows.slice(0, 2), [['image', MARKUP], ['bold', '<b>bold</b>']]);
    // The long cell: its first 1,000 characters, marked as cut.
    const cut = page.locator('#explore-grid td.cut');
    assert.equal(await cut.count(), 1);
    assert.equal((await cut.textContent()).length, 1000);
    assert.match(await cut.getAttribute('title'), /first 1,000 characters/);
    const labels = page.locator('#facets .facet[data-column="html"] .facet-label');
    await until(async () => (await labels.count()) === 3, 'the facet of html');
    assert.ok((await labels.allTextContents()).includes(MARKUP));
    await page.click('#tab-sql');
    await page.fill('#sql-editor', 'SELECT html FROM data WHERE label = \'bold\'');
    await page.press('#sql-editor', 'Control+Enter');
    await until(async () => (await grid(page, '#sql-result')).rows.length === 1, 'the query result');
    assert.deepEqual((await grid(page, '#sql-result')).rows, [['<b>bold</b>']]);
    assert.equal(await page.evaluate(() => window.pwned), undefined);
    assert.equal(await page.locator('main img, main b').count(), 0);
  });

  it('had no script errors or CSP violations', () => {
    assert.deepEqual(page.problems, []);
  });
});
