// Uploads through the page's tus client (tus-js-client, window.tus) against the real
// server: a committed upload, a reload mid-upload then resume, Cancel, a refusal at
// creation shown in the server's words, and a Cancel before the creation is answered (the
// name held by that unfinished upload, discarded from the page). Uploads are slowed with
// Chromium's own network emulation (DevTools protocol), so "mid-upload" is a real moment,
// not a guess.
// Run: CARGO_TARGET_DIR=… node --test upload.test.mjs (after cargo build).

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Server, launchBrowser, newPage, until } from './harness.mjs';

const LABELS = Array.from({ length: 64 }, (_, i) => `label ${i} ${'lorem ipsum dolor sit amet '.repeat(1 + (i % 3)).trim()}`);

/** A CSV of about `bytes` bytes (three columns), different for each `seed`. */
function csvOf(bytes, seed = 0) {
  const rows = ['id,value,label'];
  let length = rows[0].length + 1;
  for (let i = 0; length < bytes; i += 1) {
    const row = `${i},${(((i * 37 + seed) % 10_000) / 10).toFixed(1)},${LABELS[(i + seed) % LABELS.length]}`;
    rows.push(row);
    length += row.length + 1;
  }
  return `${rows.join('\n')}\n`;
}

const sha256 = (bytes) => createHash('sha256').update(bytes).digest('hex');

/** Slows this page's uploads to `bytesPerSecond` (-1: no limit) with Chromium's network
 *  emulation, answers reaching the page `latency` ms late; downloads (the page, the API's
 *  answers) are not slowed. */
async function throttleUploads(page, bytesPerSecond, latency = 0) {
  page.cdp ??= await page.context().newCDPSession(page);
  await page.cdp.send('Network.enable');
  await page.cdp.send('Network.emulateNetworkConditions', {
    offline: false,
    latency,
    downloadThroughput: -1,
    uploadThroughput: bytesPerSecond,
  });
}

/** The tus upload ids tus-js-client keeps in localStorage (`tus::<fingerprint>::<n>`). */
async function storedUploads(page) {
  const entries = await page.evaluate(() =>
    Object.keys(localStorage)
      .filter((key) => key.startsWith('tus::'))
      .map((key) => [key, localStorage.getItem(key)]),
  );
  return entries.map(([key, value]) => {
    const url = JSON.parse(value).uploadUrl;
    return { key, url, id: url ? new URL(url, 'http://x').pathname.split('/').pop() : null };
  });
}

/** Records the page's tus requests: creations (POST to the base), PATCHes with their
 *  Upload-Offset and body size, and the ids the server's 201s name. */
function watchTus(page) {
  const log = { creations: [], patches: [], created: [] };
  page.on('request', (request) => {
    const path = new URL(request.url()).pathname;
    if (!path.startsWith('/api/v1/uploads')) return;
    const headers = request.headers();
    if (request.method() === 'POST' && /^\/api\/v1\/uploads\/?$/.test(path)) log.creations.push(request);
    if (request.method() === 'PATCH' || headers['x-http-method-override'] === 'PATCH') {
      log.patches.push({ request, offset: Number(headers['upload-offset']), at: Date.now() });
    }
  });
  page.on('response', async (response) => {
    const request = response.request();
    if (request.method() === 'POST' && /\/api\/v1\/uploads\/?$/.test(new URL(request.url()).pathname) && response.status() === 201) {
      const location = await response.headerValue('location');
      log.created.push(location.split('/').pop());
    }
  });
  return log;
}

/** The size of a request's body as sent (its Content-Length). */
async function bodyBytes(request) {
  const length = (await request.allHeaders())['content-length'];
  return length === undefined ? (await request.sizes()).requestBodySize : Number(length);
}

/** Hidden files (temporary uploads, stored parts) in the storage folder: name → size. */
function hiddenInStorage(server) {
  const found = {};
  for (const name of readdirSync(server.storage)) {
    if (!name.startsWith('.')) continue;
    try {
      found[name] = statSync(join(server.storage, name)).size;
    } catch {
      // removed meanwhile
    }
  }
  return found;
}

/** A UUID without its hyphens, lower case, to compare the spellings the API uses. */
const bare = (id) => id.toLowerCase().replace(/-/g, '');

/** How many tus creations the server has answered with `status`, from its /metrics. */
async function creationsAnswered(server, status) {
  const text = await (await fetch(`${server.base}/metrics`)).text();
  const line = text
    .split('\n')
    .find((l) => l.startsWith('file_service_http_requests_total{') && l.includes('method="POST"') && l.includes('route="/api/v1/uploads/"') && l.includes(`status="${status}"`));
  return line ? Number(line.split(' ').pop()) : 0;
}

/** A UUID in both spellings, to find it in stored names. */
const spellings = (id) => [id.toLowerCase(), id.toLowerCase().replace(/-/g, '')];

describe('uploads through tus in the web page', () => {
  let server;
  let browser;
  let files;

  before(async () => {
    server = await Server.start();
    browser = await launchBrowser();
    files = mkdtempSync(join(tmpdir(), 'file-service-upload-files-'));
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
    if (files) rmSync(files, { recursive: true, force: true });
  });

  /** A new tab (fresh storage) signed in through `file-service open`, on the list. */
  async function signedIn() {
    const page = await newPage(browser);
    const url = (await server.cli('open', '--no-browser', '--ttl', '30m')).trim();
    await page.goto(url);
    await page.locator('#list-view').waitFor();
    return page;
  }

  const uploadStatus = (id) => server.api('GET', `/uploads/${id}`);

  it('commits a dropped CSV: listed, same SHA-256, upload done under the record id', { timeout: 120_000 }, async () => {
    const page = await signedIn();
    const tus = watchTus(page);
    const csv = csvOf(3_000_000, 1);
    // A real drop: a DataTransfer holding a File, dropped on the drop zone.
    const transfer = await page.evaluateHandle((text) => {
      const data = new DataTransfer();
      data.items.add(new File([text], 'dropped sales.csv', { type: 'text/csv' }));
      return data;
    }, csv);
    await page.dispatchEvent('#dropzone', 'dragenter', { dataTransfer: transfer });
    await page.dispatchEvent('#dropzone', 'dragover', { dataTransfer: transfer });
    await page.dispatchEvent('#dropzone', 'drop', { dataTransfer: transfer });
    const item = page.locator('#queue-items > li').last();
    assert.equal(await item.getByLabel('Name').inputValue(), 'dropped sales');
    await item.locator('button', { hasText: 'Upload' }).click();
    await until(async () => /^(Uploaded as|[A-Z][a-z ]+: )/.test(await item.locator('.message').textContent()), 'the upload to end', 90_000);
    assert.match(await item.locator('.message').textContent(), /^Uploaded as dropped sales · \d[\d,]* × 3 · active in this session$/);
    assert.equal(await item.locator('progress').evaluate((p) => p.value), 100);

    // It went through tus: one creation, and the file's record id is that upload's id.
    assert.equal(tus.creations.length, 1, 'one tus creation');
    assert.ok(tus.patches.length >= 1, 'bytes sent with PATCH');
    assert.equal(tus.created.length, 1);
    const [uploadId] = tus.created;

    await page.locator('#files tbody td.name a', { hasText: /^dropped sales$/ }).waitFor({ timeout: 15_000 });
    const record = await server.api('GET', `/files/${encodeURIComponent('dropped sales')}`);
    assert.equal(record.status, 200);
    assert.equal(record.body.sha256, sha256(Buffer.from(csv)));
    assert.equal(record.body.size_bytes, Buffer.byteLength(csv));
    assert.equal(record.body.id.replace(/-/g, ''), uploadId.toLowerCase().replace(/-/g, ''));
    const status = await uploadStatus(record.body.id);
    assert.equal(status.status, 200, JSON.stringify(status.body));
    assert.equal(status.body.state, 'done');
    assert.equal(status.body.offset, Buffer.byteLength(csv));
    assert.equal(status.body.length, Buffer.byteLength(csv));
    assert.equal(status.body.file.id, record.body.id);
    // Nothing of the upload is left in the storage folder but the file.
    const left = Object.keys(hiddenInStorage(server)).filter((n) => spellings(record.body.id).some((s) => n.includes(s)));
    assert.deepEqual(left, []);
    // A finished upload is not offered for resuming.
    assert.deepEqual(await storedUploads(page), []);
    assert.deepEqual(page.problems, []);
    await page.context().close();
  });

  it('resumes after a reload mid-upload from the server offset and ends byte-identical', { timeout: 240_000 }, async (t) => {
    const path = join(files, 'big measurements.csv');
    const csv = csvOf(24_000_000, 2);
    writeFileSync(path, csv);
    const size = Buffer.byteLength(csv);
    const page = await signedIn();
    const session = await page.inputValue('#session');
    const tus = watchTus(page);
    const hiddenBefore = hiddenInStorage(server);
    // 1 MB/s: 24 MB would take about 24 s.
    await throttleUploads(page, 1_000_000);
    await page.setInputFiles('#file-input', path);
    const item = page.locator('#queue-items > li').last();
    assert.equal(await item.getByLabel('Name').inputValue(), 'big measurements');
    const started = Date.now();
    await item.locator('button', { hasText: 'Upload' }).click();

    // Some progress in the bar, a PATCH under way, and bytes arriving on the server.
    await until(async () => (await item.locator('progress').evaluate((p) => p.value)) > 0, 'some progress', 30_000);
    await until(async () => tus.patches.length > 0, 'a PATCH');
    const [stored] = await until(async () => {
      const uploads = await storedUploads(page);
      return uploads.length && uploads[0].id ? uploads : null;
    }, 'the upload in localStorage');
    const id = stored.id;
    assert.ok(stored.key.startsWith(`tus::file-service/big measurements.csv/${size}/`), stored.key);
    const arriving = () =>
      Object.entries(hiddenInStorage(server))
        .filter(([name]) => !(name in hiddenBefore))
        .reduce((sum, [, bytes]) => sum + bytes, 0);
    await until(() => arriving() >= 1_000_000, 'a megabyte on the server', 30_000);
    const progressBefore = await item.locator('progress').evaluate((p) => p.value);
    // The throttle holds: the upload is far from over.
    assert.ok(progressBefore < 60, `progress ${progressBefore}% after ${Date.now() - started} ms: uploads are not slowed`);
    const during = await uploadStatus(id);
    assert.equal(during.body.state, 'receiving');

    await page.reload();
    await page.locator('#list-view').waitFor();
    // The cut PATCH kept what arrived: the server's offset moved on from 0.
    const offsetBefore = await until(async () => {
      const status = await uploadStatus(id);
      assert.equal(status.status, 200, JSON.stringify(status.body));
      return status.body.offset > 0 ? status.body.offset : 0;
    }, 'the server to record the bytes of the cut request', 30_000);
    assert.ok(offsetBefore < size, `offset ${offsetBefore} of ${size}`);
    assert.equal((await uploadStatus(id)).body.state, 'receiving');
    assert.equal(await page.inputValue('#session'), session, 'the session survives the reload');
    assert.equal((await storedUploads(page)).length, 1, 'the upload is still offered for resuming');

    // The same file again, same name and session: the page resumes the upload.
    await throttleUploads(page, -1);
    const creationsBefore = tus.creations.length;
    const patchesBefore = tus.patches.length;
    await page.setInputFiles('#file-input', path);
    const again = page.locator('#queue-items > li').last();
    assert.equal(await again.getByLabel('Name').inputValue(), 'big measurements');
    await again.locator('button', { hasText: 'Upload' }).click();
    await until(async () => /^(Uploaded as|[A-Z][a-z ]+: )/.test(await again.locator('.message').textContent()), 'the resumed upload to end', 180_000);
    assert.match(await again.locator('.message').textContent(), /^Uploaded as big measurements · /);

    // No new upload was created; the PATCHes after the reload started at the server's
    // offset and carried only the rest of the file.
    assert.equal(tus.creations.length, creationsBefore, 'no new tus creation after the reload');
    const resumed = tus.patches.slice(patchesBefore);
    assert.ok(resumed.length >= 1, 'a PATCH after the reload');
    assert.equal(resumed[0].offset, offsetBefore, 'the first PATCH after the reload starts at the server offset');
    let sentAfter = 0;
    for (const { request } of resumed) {
      const response = await request.response();
      if (!response || response.status() !== 204) continue;
      sentAfter += await bodyBytes(request);
    }
    t.diagnostic(`reload at ${progressBefore}% (server offset ${offsetBefore} of ${size}); ${resumed.length} PATCH(es) after it sent ${sentAfter} bytes`);
    assert.equal(sentAfter, size - offsetBefore, 'bytes sent after the reload: the rest of the file only');

    const record = await server.api('GET', `/files/${encodeURIComponent('big measurements')}`);
    assert.equal(record.status, 200);
    assert.equal(record.body.id.replace(/-/g, ''), id.toLowerCase().replace(/-/g, ''), 'the file is the resumed upload');
    assert.equal(record.body.size_bytes, size);
    assert.equal(record.body.sha256, sha256(readFileSync(path)));
    const status = await uploadStatus(id);
    assert.equal(status.body.state, 'done');
    assert.equal(status.body.offset, size);
    // Byte-identical: the stored bytes, downloaded.
    const download = await fetch(`${server.base}/api/v1/files/${encodeURIComponent('big measurements')}/content`, {
      headers: { Authorization: `Bearer ${await server.token()}` },
    });
    assert.equal(download.status, 200);
    assert.equal(sha256(Buffer.from(await download.arrayBuffer())), sha256(Buffer.from(csv)));
    assert.deepEqual(await storedUploads(page), [], 'a finished upload is forgotten');
    await page.locator('#files tbody td.name a', { hasText: /^big measurements$/ }).waitFor({ timeout: 15_000 });
    assert.deepEqual(page.problems, []);
    await page.context().close();
  });

  it('cancels a slow upload: Cancelled, nothing left on the server, the name free', { timeout: 120_000 }, async () => {
    const path = join(files, 'to cancel.csv');
    const csv = csvOf(4_000_000, 3);
    writeFileSync(path, csv);
    const page = await signedIn();
    const tus = watchTus(page);
    await throttleUploads(page, 200_000);
    await page.setInputFiles('#file-input', path);
    const item = page.locator('#queue-items > li').last();
    await item.locator('button', { hasText: 'Upload' }).click();
    await until(async () => (await item.locator('progress').evaluate((p) => p.value)) > 0, 'some progress', 30_000);
    const [id] = await until(async () => (tus.created.length ? tus.created : null), 'the created upload');
    assert.equal((await uploadStatus(id)).body.state, 'receiving');
    const cancel = item.getByRole('button', { name: 'Cancel the upload of to cancel.csv' });
    await cancel.click();
    await until(async () => /^Cancelled: /.test(await item.locator('.message').textContent()), 'the Cancelled message', 15_000);
    assert.equal(await item.locator('progress').evaluate((p) => p.value), 0);
    assert.equal(await cancel.count(), 0, 'the Cancel button is gone');

    // The server forgot the upload and every byte of it.
    await until(async () => (await uploadStatus(id)).status === 404, 'the upload to be gone (404)', 15_000);
    await until(
      () => !Object.keys(hiddenInStorage(server)).some((n) => spellings(id).some((s) => n.includes(s))),
      'no stored part of the upload',
      15_000,
    );
    assert.equal((await server.api('GET', `/files/${encodeURIComponent('to cancel')}`)).status, 404);
    assert.deepEqual(await storedUploads(page), [], 'a cancelled upload is not offered for resuming');

    // The name is free: the same item, tried again at full speed, is committed.
    await throttleUploads(page, -1);
    await item.locator('button', { hasText: 'Try again' }).click();
    await until(async () => /^(Uploaded as|[A-Z][a-z ]+: )/.test(await item.locator('.message').textContent()), 'the second upload to end', 90_000);
    assert.match(await item.locator('.message').textContent(), /^Uploaded as to cancel · /);
    const record = await server.api('GET', `/files/${encodeURIComponent('to cancel')}`);
    assert.equal(record.status, 200);
    assert.equal(record.body.sha256, sha256(Buffer.from(csv)));
    assert.notEqual(record.body.id.replace(/-/g, ''), id.toLowerCase().replace(/-/g, ''), 'a new upload, not the cancelled one');
    assert.deepEqual(page.problems, []);
    await page.context().close();
  });

  it('shows the server\'s words when the name is taken at creation', { timeout: 60_000 }, async () => {
    await server.upload('taken', 'a,b\n1,2\n');
    const page = await signedIn();
    const tus = watchTus(page);
    await page.setInputFiles('#file-input', [{ name: 'taken.csv', mimeType: 'text/csv', buffer: Buffer.from('a,b\n3,4\n') }]);
    const item = page.locator('#queue-items > li').last();
    assert.equal(await item.getByLabel('Name').inputValue(), 'taken');
    await item.locator('button', { hasText: 'Upload' }).click();
    await until(async () => /^[A-Z][a-z ]+: /.test(await item.locator('.message').textContent()), 'the refusal', 30_000);
    const message = await item.locator('.message').textContent();
    assert.match(message, /^Name taken: .*already exists/);
    // Word for word what the server answers a tus creation of that name.
    const b64 = (s) => Buffer.from(s).toString('base64');
    const refusal = await fetch(`${server.base}/api/v1/uploads/`, {
      method: 'POST',
      headers: {
        Authorization: `Bearer ${await server.token()}`,
        'Tus-Resumable': '1.0.0',
        'Upload-Length': '8',
        'Upload-Metadata': `file_name ${b64('taken')},session_id ${b64(await page.inputValue('#session'))},description ${b64('')},filename ${b64('taken.csv')}`,
      },
    });
    assert.equal(refusal.status, 409);
    assert.equal(message, `Name taken: ${(await refusal.json()).detail}`);
    // Refused before any byte: one creation, no PATCH, nothing to resume; the file is untouched.
    assert.equal(tus.creations.length, 1);
    assert.equal(tus.patches.length, 0);
    assert.deepEqual(await storedUploads(page), []);
    assert.equal((await server.api('GET', '/files/taken')).body.size_bytes, 8);
    assert.equal(await item.locator('button', { hasText: 'Try again' }).isEnabled(), true);
    assert.deepEqual(page.problems, []);
    await page.context().close();
  });

  it('a Cancel before the creation is answered leaves the name held; the page discards that upload and sends the file', { timeout: 90_000 }, async () => {
    const csv = csvOf(200_000, 5);
    const page = await signedIn();
    const session = await page.inputValue('#session');
    const tus = watchTus(page);
    const failed = [];
    const deletes = [];
    page.on('requestfailed', (request) => {
      if (request.method() === 'POST' && /^\/api\/v1\/uploads\/?$/.test(new URL(request.url()).pathname)) failed.push(request.failure()?.errorText);
    });
    page.on('response', (response) => {
      if (response.request().method() === 'DELETE' && new URL(response.url()).pathname.startsWith('/api/v1/uploads/')) {
        deletes.push({ id: new URL(response.url()).pathname.split('/').pop(), status: response.status() });
      }
    });
    await page.setInputFiles('#file-input', [{ name: 'early.csv', mimeType: 'text/csv', buffer: Buffer.from(csv) }]);
    const item = page.locator('#queue-items > li').last();
    assert.equal(await item.getByLabel('Name').inputValue(), 'early');
    const message = item.locator('.message');

    // Answers reach the page 6 s late: the server creates the upload at once, the page
    // hears of it 6 s later, and the Cancel lands in between.
    const answeredBefore = await creationsAnswered(server, 201);
    await throttleUploads(page, -1, 6_000);
    const clicked = Date.now();
    await item.locator('button', { hasText: 'Upload' }).click();
    await until(async () => (await creationsAnswered(server, 201)) > answeredBefore, 'the server to answer the creation', 5_000);
    assert.ok(Date.now() - clicked < 5_000, 'the creation was answered before the emulated latency ran out');
    assert.equal(tus.creations.length, 1, 'one tus creation');
    assert.deepEqual(tus.created, [], 'the page has not heard the answer yet');
    assert.equal(await message.textContent(), 'Uploading…');
    await item.getByRole('button', { name: 'Cancel the upload of early.csv' }).click();
    await until(async () => /^Cancelled: /.test(await message.textContent()), 'the Cancelled message', 15_000);
    await throttleUploads(page, -1, 0);
    await until(async () => failed.length > 0, 'the creation request to be given up', 5_000);
    assert.deepEqual(failed, ['net::ERR_ABORTED']);
    assert.deepEqual(tus.created, [], 'the page never got the creation\'s answer');
    assert.equal(tus.patches.length, 0, 'no byte sent');
    assert.deepEqual(await storedUploads(page), [], 'nothing to resume: the page never learnt the upload\'s address');

    // The server holds an unfinished upload of that name: a tus creation of it is refused
    // with the address of the held upload, which is there, empty and still receiving.
    const b64 = (text) => Buffer.from(text).toString('base64');
    const size = Buffer.byteLength(csv);
    const raw = await fetch(`${server.base}/api/v1/uploads/`, {
      method: 'POST',
      headers: {
        Authorization: `Bearer ${await server.token()}`,
        'Tus-Resumable': '1.0.0',
        'Upload-Length': String(size),
        'Upload-Metadata': `file_name ${b64('early')},session_id ${b64(session)},description ${b64('')},filename ${b64('early.csv')}`,
      },
    });
    const refusal = await raw.json();
    assert.equal(raw.status, 409, JSON.stringify(refusal));
    assert.equal(raw.headers.get('location'), null, 'no Location: a tus client would write into it');
    assert.equal(refusal.code, 'upload_in_progress');
    assert.match(refusal.upload, /^\/api\/v1\/uploads\/[0-9a-f-]{32,36}$/);
    const heldId = refusal.upload.split('/').pop();
    const held = await uploadStatus(heldId);
    assert.equal(held.status, 200, JSON.stringify(held.body));
    assert.equal(held.body.state, 'receiving');
    assert.equal(held.body.offset, 0);
    assert.equal(held.body.length, size);
    assert.equal(held.body.file_name, 'early');
    assert.equal((await server.api('GET', '/files/early')).status, 404);

    // Try again: refused in the server's words, with the offer to discard the held upload.
    await item.locator('button', { hasText: 'Try again' }).click();
    await until(async () => /^[A-Z][a-z ]+: /.test(await message.textContent()), 'the refusal', 30_000);
    const discard = message.getByRole('button', { name: 'Discard the unfinished upload and send this file' });
    await discard.waitFor({ timeout: 5_000 });
    assert.equal(await message.evaluate((m) => m.firstChild.textContent), `Unfinished upload: ${refusal.detail}`);
    assert.ok(refusal.detail.includes(heldId.replace(/^(.{8})(.{4})(.{4})(.{4})(.{12})$/, '$1-$2-$3-$4-$5')), refusal.detail);
    assert.equal(tus.creations.length, 2, 'the second try made a creation');
    assert.deepEqual(tus.created, []);
    assert.equal(tus.patches.length, 0);
    assert.equal(await item.locator('button', { hasText: 'Try again' }).isEnabled(), true);

    // Discard: the held upload is terminated and the file sent as a new upload.
    await discard.click();
    // The refusal stays shown while the held upload is terminated: wait past it.
    const ended = (text) => /^(Uploaded as|[A-Z][a-z ]+: )/.test(text) && !text.startsWith('Unfinished upload: ');
    await until(async () => ended(await message.textContent()), 'the upload after the discard to end', 60_000);
    assert.match(await message.textContent(), /^Uploaded as early · \d[\d,]* × 3 · active in this session$/);
    assert.deepEqual(deletes, [{ id: heldId, status: 204 }]);
    assert.equal(tus.creations.length, 3);
    assert.equal(tus.created.length, 1);
    const [newId] = tus.created;
    assert.notEqual(bare(newId), bare(heldId), 'a new upload, not the held one');
    const record = await server.api('GET', '/files/early');
    assert.equal(record.status, 200, JSON.stringify(record.body));
    assert.equal(record.body.sha256, sha256(Buffer.from(csv)));
    assert.equal(record.body.size_bytes, size);
    assert.equal(bare(record.body.id), bare(newId), 'the file is the new upload');
    assert.equal((await uploadStatus(heldId)).status, 404, 'the held upload is gone');
    assert.equal((await uploadStatus(newId)).body.state, 'done');
    assert.ok(
      !Object.keys(hiddenInStorage(server)).some((n) => spellings(heldId).some((s) => n.includes(s))),
      'no stored part of the held upload',
    );
    assert.deepEqual(await storedUploads(page), []);
    await page.locator('#files tbody td.name a', { hasText: /^early$/ }).waitFor({ timeout: 15_000 });
    assert.deepEqual(page.problems, []);
    await page.context().close();
  });
});
