// Measures how fast the page appears from localhost: the real server (release build
// preferred: FILE_SERVICE_BIN), headless Chromium, a fresh browser context per load (no
// cache), signed in through `file-service open`, with N files in the catalog.
// Usage: node first-paint.mjs [loads=20] [files=1000]
// Cold loads, then reloads in one context. Prints the median and worst of: first contentful paint, DOMContentLoaded, and the first
// listing on screen (the page's `file-service:listed` mark), all from navigation start.

import { Server, launchBrowser } from './harness.mjs';

const loads = Number(process.argv[2] || 20);
const fileCount = Number(process.argv[3] || 1000);

const server = await Server.start();
const browser = await launchBrowser();
try {
  const csv = 'a,b\n1,2\n';
  for (let i = 0; i < fileCount; i += 1) await server.upload(`file ${String(i).padStart(5, '0')}`, csv);
  const url = (await server.cli('open', '--no-browser')).trim();
  const samples = [];
  for (let i = 0; i < loads; i += 1) {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await context.newPage();
    await page.goto(url);
    await page.waitForFunction(() => performance.getEntriesByName('file-service:listed').length > 0);
    samples.push(
      await page.evaluate(() => ({
        fcp: performance.getEntriesByName('first-contentful-paint')[0]?.startTime,
        dcl: performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd,
        listed: performance.getEntriesByName('file-service:listed')[0].startTime,
      })),
    );
    await context.close();
  }
  // The same again in one context (HTTP cache warm: the assets revalidate to 304s).
  const warm = [];
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  await page.goto(url);
  for (let i = 0; i < loads; i += 1) {
    await page.reload();
    await page.waitForFunction(() => performance.getEntriesByName('file-service:listed').length > 0);
    warm.push(
      await page.evaluate(() => ({
        fcp: performance.getEntriesByName('first-contentful-paint')[0]?.startTime,
        dcl: performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd,
        listed: performance.getEntriesByName('file-service:listed')[0].startTime,
      })),
    );
  }
  await context.close();
  const stat = (key, set = samples) => {
    const values = set.map((s) => s[key]).sort((a, b) => a - b);
    return `median ${values[Math.floor(values.length / 2)].toFixed(1)} ms, worst ${values[values.length - 1].toFixed(1)} ms`;
  };
  console.log(`${loads} cold loads, ${fileCount} files in the catalog, ${server.base}`);
  console.log(`first contentful paint: ${stat('fcp')}`);
  console.log(`DOMContentLoaded:       ${stat('dcl')}`);
  console.log(`first listing shown:    ${stat('listed')}`);
  console.log(`reloads in one context (sign-in kept in sessionStorage):`);
  console.log(`first contentful paint: ${stat('fcp', warm)}`);
  console.log(`first listing shown:    ${stat('listed', warm)}`);
} finally {
  await browser.close();
  await server.stop();
}
