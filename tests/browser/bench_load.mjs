#!/usr/bin/env node
// bench_load.mjs - time to load the page in headless Chromium: navigation
// start to the load event (Navigation Timing), each run in a fresh browser
// context (empty cache), median of RUNS. The reference is the same
// measurement on /v1/health, a tiny JSON document from the same server.
// usage: bench_load.mjs URL [RUNS]   prints "page_ms health_ms"
import { chromium } from 'playwright-core';

const [url, runsArg] = process.argv.slice(2);
const runs = parseInt(runsArg || '15', 10);
const browser = await chromium.launch({
  executablePath: process.env.SEMD_CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
         '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync'],
});
async function loadMs(path) {
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  await page.goto(url + path, { waitUntil: 'load' });
  const ms = await page.evaluate(() => {
    const n = performance.getEntriesByType('navigation')[0];
    return n.loadEventEnd - n.startTime;
  });
  await ctx.close();
  return ms;
}
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[s.length >> 1]; };
await loadMs('/'); // warm the browser process itself
const page = [], ref = [];
for (let i = 0; i < runs; i++) {
  page.push(await loadMs('/'));
  ref.push(await loadMs('/v1/health'));
}
await browser.close();
console.log(median(page).toFixed(1), median(ref).toFixed(1));
