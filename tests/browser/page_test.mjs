#!/usr/bin/env node
// page_test.mjs - the web page in the system's headless Chromium (Debian
// package chromium, driven by playwright-core; never a browser download)
// against a real `semd serve` on the test fixture. Prints cmocka's summary
// lines so tests/run.sh counts its cases with the C tests.
//
// Environment: SEMD_BIN, SEMD_FIXTURE, BUILD (screenshots go to
// $BUILD/browser/). Skips, saying why, only when Chromium is not installed.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const CHROMIUM = process.env.SEMD_CHROMIUM || '/usr/bin/chromium';
const build = process.env.BUILD || 'build';
const bin = process.env.SEMD_BIN || join(build, 'semd');
const fixture = process.env.SEMD_FIXTURE || join(build, 'glove-20k.semd');
const shots = join(build, 'browser');

if (!existsSync(CHROMIUM)) {
  console.log(`[ SKIPPED  ] browser test: ${CHROMIUM} is not installed ` +
              '(deploy/setup.sh --with-browser installs the Debian package chromium)');
  console.log('[  PASSED  ] 0 test(s).');
  process.exit(0);
}
mkdirSync(shots, { recursive: true });

// The daemon on a free port: it prints "semd: listening on http://HOST:PORT".
function startServer() {
  return new Promise((resolve, reject) => {
    const p = spawn(bin, ['serve', fixture, '--listen', '127.0.0.1:0', '--threads', '2'],
                    { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const timer = setTimeout(() => reject(new Error('semd serve did not start: ' + out)), 20000);
    const seen = (d) => {
      out += d;
      const m = out.match(/listening on (http:\/\/[0-9.]+:\d+)/);
      if (m) { clearTimeout(timer); resolve({ proc: p, url: m[1] }); }
    };
    p.stdout.on('data', seen);
    p.stderr.on('data', seen);
    p.on('exit', (code) => reject(new Error(`semd serve exited (${code}): ${out}`)));
  });
}

let passed = 0;
const failed = [];
async function test(name, fn) {
  console.log(`[ RUN      ] ${name}`);
  try {
    await fn();
    passed++;
    console.log(`[       OK ] ${name}`);
  } catch (e) {
    failed.push(name);
    console.log(`[  ERROR   ] --- ${e.message}`);
    console.log(`[  FAILED  ] ${name}`);
  }
}
function check(cond, msg) { if (!cond) throw new Error(msg); }

const { proc, url } = await startServer();
const profile = mkdtempSync(join(tmpdir(), 'semd-chromium-'));
let ctx;
const problems = []; // console errors, page errors, failed requests
try {
  ctx = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
           '--no-first-run', '--disable-background-networking',
           '--disable-component-update', '--disable-sync'],
    viewport: { width: 1280, height: 900 },
  });
  const page = ctx.pages()[0] || await ctx.newPage();
  page.setDefaultTimeout(10000);
  // the one API error the cases provoke on purpose is not a problem
  const expected = (m) => /status of 404/.test(m.text()) &&
    /\/v1\/similarity$/.test(m.location().url || '');
  page.on('console', (m) => {
    if (m.type() === 'error' && !expected(m))
      problems.push('console: ' + m.text() + ' at ' + (m.location().url || '?'));
  });
  page.on('pageerror', (e) => problems.push('page error: ' + e.message));
  page.on('requestfailed', (r) => problems.push('request failed: ' + r.url()));

  console.log('[==========] Running 7 test(s).');
  await test('loads_and_describes_the_model', async () => {
    const res = await page.goto(url + '/', { waitUntil: 'load' });
    check(res.status() === 200, 'GET / answered ' + res.status());
    const csp = res.headers()['content-security-policy'] || '';
    check(csp.includes("default-src 'none'"), 'no strict CSP: ' + csp);
    await page.waitForFunction(() => /20,000 words/.test(document.getElementById('model').textContent));
  });

  await test('search_king_lists_queen', async () => {
    await page.fill('#q', 'king');
    await page.press('#q', 'Enter');
    const item = page.locator('#neighbors li', { hasText: /^queen/ });
    await item.first().waitFor();
    const n = await page.locator('#neighbors li').count();
    check(n === 10, `expected 10 neighbours, got ${n}`);
    const status = await page.textContent('#search-status');
    check(/10 neighbours of king/.test(status), 'status says: ' + status);
  });

  await test('map_shows_labelled_points', async () => {
    await page.waitForFunction(() => document.querySelectorAll('#plot .pt text').length >= 10);
    const labels = await page.$$eval('#plot .pt text', (ts) => ts.map((t) => t.textContent));
    check(labels.length >= 10, `only ${labels.length} points`);
    check(labels[0] === 'king' && labels.includes('queen'), 'labels: ' + labels.join(' '));
    // points are spread out, not piled on one spot
    const boxes = await page.$$eval('#plot .pt circle', (cs) => cs.map((c) => {
      const b = c.getBoundingClientRect(); return [Math.round(b.x), Math.round(b.y)];
    }));
    check(new Set(boxes.map(String)).size >= 10, 'points overlap: ' + JSON.stringify(boxes));
    await page.screenshot({ path: join(shots, 'desktop.png'), fullPage: true });
  });

  await test('click_a_point_searches_it', async () => {
    await page.locator('#plot .pt', { hasText: /^queen$/ }).click();
    await page.waitForFunction(() => /neighbours of queen/.test(document.getElementById('search-status').textContent));
    check((await page.inputValue('#q')) === 'queen', 'search box not set to queen');
  });

  await test('analogy_man_king_woman_is_queen', async () => {
    await page.fill('#an-a', 'man');
    await page.fill('#an-b', 'king');
    await page.fill('#an-c', 'woman');
    await page.click('#analogy-form button[type=submit]');
    await page.waitForFunction(() => document.querySelectorAll('#analogy-out .method').length === 2);
    const answers = await page.$$eval('#analogy-out .answer', (as) => as.map((a) => a.textContent));
    check(answers[0] === 'queen', 'answers: ' + answers.join(', '));
    const explain = await page.textContent('#analogy-out .explain');
    check(/margin/.test(explain), 'no explanation shown');
  });

  await test('errors_are_shown_in_words_and_keyboard_completion', async () => {
    await page.fill('#set-a', 'cat qqzzxyw');
    await page.fill('#set-b', 'dog');
    await page.press('#set-b', 'Enter');
    await page.waitForFunction(() => /not in the vocabulary: qqzzxyw/.test(
      document.getElementById('sets-status').textContent));
    check(await page.$eval('#sets-status', (e) => e.classList.contains('error')), 'error not marked');
    await page.fill('#set-a', 'cat dog');
    await page.press('#set-a', 'Enter');
    await page.waitForFunction(() => /^0\.\d+/.test(document.getElementById('sets-out').textContent));
    // completion by keyboard alone: type, arrow down, Enter
    await page.fill('#q', '');
    await page.focus('#q');
    await page.keyboard.type('princ');
    await page.locator('#complete li').first().waitFor();
    await page.keyboard.press('ArrowDown');
    const chosen = await page.textContent('#complete li[aria-selected=true]');
    await page.keyboard.press('Enter');
    await page.waitForFunction((w) => document.getElementById('search-status').textContent
      .includes('neighbours of ' + w), chosen);
    check(chosen.startsWith('princ'), 'completion gave ' + chosen);
    // an expression is searched as one
    await page.fill('#q', 'paris - france + italy');
    await page.press('#q', 'Enter');
    await page.locator('#neighbors li', { hasText: /^rome/ }).first().waitFor();
  });

  await test('phone_layout_and_revalidation', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    await page.goto(url + '/', { waitUntil: 'load' });
    await page.fill('#q', 'king');
    await page.press('#q', 'Enter');
    await page.waitForFunction(() => document.querySelectorAll('#plot .pt').length >= 10);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    check(overflow <= 0, `the page is ${overflow}px wider than a phone`);
    await page.screenshot({ path: join(shots, 'phone.png'), fullPage: true });
    // an unchanged page revalidates to 304 with its ETag
    const r = await page.evaluate(async () => {
      const a = await fetch('/', { cache: 'no-store' });
      const tag = a.headers.get('etag');
      const b = await fetch('/', { cache: 'no-store', headers: { 'If-None-Match': tag } });
      return [a.status, tag, b.status];
    });
    check(r[0] === 200 && r[1] && r[2] === 304, 'revalidation: ' + JSON.stringify(r));
    check(problems.length === 0, 'problems in the browser:\n  ' + problems.join('\n  '));
  });
} catch (e) {
  failed.push('setup');
  console.log(`[  ERROR   ] --- ${e.stack || e.message}`);
} finally {
  if (ctx) await ctx.close().catch(() => {});
  proc.kill('SIGTERM');
  rmSync(profile, { recursive: true, force: true });
}
console.log(`[==========] ${passed + failed.length} test(s) run.`);
console.log(`[  PASSED  ] ${passed} test(s).`);
if (failed.length) {
  console.log(`[  FAILED  ] ${failed.length} test(s), listed below:`);
  for (const f of failed) console.log(`[  FAILED  ] ${f}`);
}
console.log(`screenshots: ${shots}/desktop.png, ${shots}/phone.png`);
process.exit(failed.length ? 1 : 0);
