#!/usr/bin/env node
// bench_load.mjs - time to load the page in headless Chromium: navigation
// start to the load event (Navigation Timing), each run in a fresh browser
// context (empty cache), median of RUNS. The reference is the same
// measurement on /v1/health, a tiny JSON document from the same server.
// Also the page's own breakdown, medians of the same runs: time to the
// first byte, to the end of the response, to DOMContentLoaded; the
// requests started before the load event; the bytes on the wire and
// decoded.
// usage: bench_load.mjs URL [RUNS]
// prints "page_ms health_ms", then "ttfb_ms response_ms dcl_ms requests
// wire_bytes decoded_bytes"
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
async function load(path) {
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  await page.goto(url + path, { waitUntil: 'load' });
  const t = await page.evaluate(() => {
    const n = performance.getEntriesByType('navigation')[0];
    const before = performance.getEntriesByType('resource')
      .filter((r) => r.startTime < n.loadEventStart);
    return {
      load: n.loadEventEnd - n.startTime,
      ttfb: n.responseStart - n.startTime,
      response: n.responseEnd - n.startTime,
      dcl: n.domContentLoadedEventEnd - n.startTime,
      requests: 1 + before.length,
      wire: before.reduce((s, r) => s + r.transferSize, n.transferSize),
      decoded: before.reduce((s, r) => s + r.decodedBodySize, n.decodedBodySize),
    };
  });
  await ctx.close();
  return t;
}
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[s.length >> 1]; };
await load('/'); // warm the browser process itself
const page = [], ref = [];
for (let i = 0; i < runs; i++) {
  page.push(await load('/'));
  ref.push(await load('/v1/health'));
}
await browser.close();
const m = (k) => median(page.map((t) => t[k]));
console.log(m('load').toFixed(1), median(ref.map((t) => t.load)).toFixed(1));
console.log(m('ttfb').toFixed(1), m('response').toFixed(1), m('dcl').toFixed(1),
            m('requests'), m('wire'), m('decoded'));
