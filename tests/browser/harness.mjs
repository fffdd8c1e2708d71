// Starts the real file-service binary on a fresh data folder and a headless Chromium
// (Debian's /usr/bin/chromium driven by playwright-core; Playwright's own browsers are never
// downloaded).

import { spawn, execFile } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
export const repo = resolve(here, '../..');
export const SECRET = 'browser-test-secret-0123456789abcdef';

/** The binary under test: $FILE_SERVICE_BIN, else the debug build in $CARGO_TARGET_DIR
 *  (or ./target). */
export function binary() {
  const path = process.env.FILE_SERVICE_BIN || join(process.env.CARGO_TARGET_DIR || join(repo, 'target'), 'debug', 'file-service');
  if (!existsSync(path)) throw new Error(`no file-service binary at ${path}: run cargo build, or set FILE_SERVICE_BIN`);
  return path;
}

/** Polls `check` until it returns a truthy value or `ms` pass. */
export async function until(check, what, ms = 15_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export class Server {
  /** A server on 127.0.0.1 (a port the OS picks), SQLite and a storage folder in a new
   *  temporary folder, no configuration inherited from the environment. */
  static async start() {
    const server = new Server();
    server.dir = mkdtempSync(join(tmpdir(), 'file-service-browser-'));
    server.storage = join(server.dir, 'data', 'storage');
    server.env = {
      PATH: process.env.PATH,
      HOME: server.dir,
      DATA_DIR: join(server.dir, 'data'),
      BIND_ADDR: '127.0.0.1:0',
      SECRET_KEY: SECRET,
      WATCH_SETTLE_MS: '200',
      RUST_LOG: 'info',
    };
    server.logs = [];
    server.child = spawn(binary(), ['serve'], { cwd: server.dir, env: server.env, stdio: ['ignore', 'ignore', 'pipe'] });
    const address = new Promise((resolveAddress, reject) => {
      let buffered = '';
      server.child.stderr.on('data', (chunk) => {
        buffered += chunk;
        const lines = buffered.split('\n');
        buffered = lines.pop();
        for (const line of lines) {
          server.logs.push(line);
          const match = /listening on http:\/\/(\S+)/.exec(line);
          if (match) resolveAddress(match[1]);
        }
      });
      server.child.on('exit', (code) => reject(new Error(`file-service exited (${code}):\n${server.logs.join('\n')}`)));
    });
    const timeout = new Promise((_, reject) => setTimeout(() => reject(new Error('file-service did not start in 30 s')), 30_000));
    server.address = await Promise.race([address, timeout]);
    server.env.BIND_ADDR = server.address;
    server.base = `http://${server.address}`;
    return server;
  }

  /** Runs `file-service <args>` with this server's configuration; resolves its stdout. */
  async cli(...args) {
    const { stdout } = await promisify(execFile)(binary(), args, { cwd: this.dir, env: this.env });
    return stdout;
  }

  /** A token for `user` from `file-service token` (minted once per user). */
  async token(user = 1) {
    this.tokens ??= new Map();
    if (!this.tokens.has(user)) this.tokens.set(user, (await this.cli('token', '--user', String(user))).trim());
    return this.tokens.get(user);
  }

  /** A call to the API as `user`; resolves {status, body}. */
  async api(method, path, { user = 1, json, form } = {}) {
    const headers = { Authorization: `Bearer ${await this.token(user)}` };
    let body;
    if (json !== undefined) {
      headers['Content-Type'] = 'application/json';
      body = JSON.stringify(json);
    } else if (form) body = form;
    const response = await fetch(`${this.base}/api/v1${path}`, { method, headers, body });
    const text = await response.text();
    let parsed = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      // not JSON
    }
    return { status: response.status, headers: response.headers, body: parsed };
  }

  async upload(name, csv, { user = 1, description = '', session = '00000000-0000-4000-8000-000000000000' } = {}) {
    const form = new FormData();
    form.append('file_name', name);
    form.append('session_id', session);
    form.append('description', description);
    form.append('file', new Blob([csv]), `${name}.csv`);
    const result = await this.api('POST', '/files/', { user, form });
    if (result.status !== 201) throw new Error(`upload ${name}: ${result.status} ${JSON.stringify(result.body)}`);
    return result.body;
  }

  async stop() {
    if (this.child && this.child.exitCode === null) {
      const exited = new Promise((r) => this.child.once('exit', r));
      this.child.kill('SIGTERM');
      await exited;
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Headless Chromium with a fresh profile, no network besides the page's own. */
export async function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--no-first-run',
      '--disable-quic',
      '--disable-sync',
    ],
  });
}

/** A page that fails the test on any script error or CSP violation. */
export async function newPage(browser, options = {}) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, acceptDownloads: true, ...options });
  const page = await context.newPage();
  if (process.env.WEB_FROM_SOURCE) {
    const { readFileSync } = await import('node:fs');
    await page.route(/\/ui\/[\w.-]+\.(js|css)$/, (route) => {
      const name = new URL(route.request().url()).pathname.slice(4);
      // Vendored scripts (tus-js-client) are served at /ui/ from src/web/vendor/.
      const source = existsSync(join(repo, 'src/web', name)) ? join(repo, 'src/web', name) : join(repo, 'src/web/vendor', name);
      route.fulfill({ body: readFileSync(source, 'utf8'), contentType: name.endsWith('.css') ? 'text/css' : 'text/javascript' });
    });
  }
  page.problems = [];
  page.on('pageerror', (error) => page.problems.push(`page error: ${error.message}`));
  // Statuses the page answers on purpose are not problems; 503 busy is one (the Data and SQL
  // tabs try again while the server's query slots are taken).
  page.on('console', (message) => {
    if (message.type() === 'error' && !/Failed to load resource: the server responded with a status of (401|404|409|413|422|503)/.test(message.text())) {
      page.problems.push(`console error: ${message.text()}`);
    }
  });
  return page;
}
