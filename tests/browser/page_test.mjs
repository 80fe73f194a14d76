#!/usr/bin/env node
// page_test.mjs - the web page in the system's headless Chromium (Debian
// package chromium, driven by playwright-core; never a browser download)
// against a real `semd serve` on the test fixture, read-only; then against
// a second one that trains (--train on a copy of the fixture, publishing
// every 0.2 s), through the page's training panel. Prints cmocka's summary
// lines so tests/run.sh counts its cases with the C tests.
//
// Environment: SEMD_BIN, SEMD_FIXTURE, BUILD (screenshots go to
// $BUILD/browser/). Skips, saying why, only when Chromium is not installed.
import { spawn } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync,
         writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
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
function startServer(model = fixture, extra = []) {
  return new Promise((resolve, reject) => {
    const p = spawn(bin, ['serve', model, '--listen', '127.0.0.1:0', '--threads', '2',
                          ...extra],
                    { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const timer = setTimeout(() => reject(new Error('semd serve did not start: ' + out)), 20000);
    const seen = (d) => {
      out += d;
      const m = out.match(/listening on (http:\/\/[0-9.]+:\d+)/);
      if (m) { clearTimeout(timer); resolve({ proc: p, url: m[1], log: () => out }); }
    };
    p.stdout.on('data', seen);
    p.stderr.on('data', seen);
    p.on('exit', (code) => reject(new Error(`semd serve exited (${code}): ${out}`)));
  });
}

let passed = 0;
let current = '';
const failed = [];
async function test(name, fn) {
  console.log(`[ RUN      ] ${name}`);
  current = name;
  const t0 = Date.now();
  try {
    await fn();
    passed++;
    console.log(`[       OK ] ${name} (${Date.now() - t0} ms)`);
  } catch (e) {
    failed.push(name);
    console.log(`[  ERROR   ] --- ${e.message}`);
    console.log(`[  FAILED  ] ${name}`);
  }
}
function check(cond, msg) { if (!cond) throw new Error(msg); }

// GET path with these request headers, outside the browser: status,
// headers, body bytes.
function get(base, path, headers) {
  return new Promise((resolve, reject) => {
    const r = request(base + path, { headers }, (res) => {
      const parts = [];
      res.on('data', (d) => parts.push(d));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers,
                                    body: Buffer.concat(parts) }));
    });
    r.on('error', reject);
    r.end();
  });
}

// Text that uses a word the fixture lacks in royal company, as
// tests/test_online.c does: after training it must be searchable.
const NEW_WORD = 'zorblat';
function royalText(lines) {
  const s = [
    `the king and the ${NEW_WORD} ruled the kingdom together .`,
    `the queen spoke to the ${NEW_WORD} about the throne .`,
    `the ${NEW_WORD} was crowned by the king and queen .`,
    `a prince and a ${NEW_WORD} sat on the royal throne .`,
    `the kingdom loved its queen , its king and its ${NEW_WORD} .`,
  ];
  return Array.from({ length: lines }, (_, i) => s[i % s.length]).join('\n') + '\n';
}
const TOKEN = 'page-test-write-token-0123456789';
const scale = parseFloat(process.env.SEMD_TEST_TIME_SCALE || '1') || 1;

const first = await startServer();
const { url } = first;
let trainer = null; // the second daemon, started once the first is done with
const profile = mkdtempSync(join(tmpdir(), 'semd-chromium-'));
const work = mkdtempSync(join(tmpdir(), 'semd-page-train-'));
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
  page.setDefaultTimeout(10000 * scale);
  // the API errors the cases provoke on purpose are not problems: an
  // unknown word in a set, the new word before training, a wrong token
  const expected = (m) => {
    const u = m.location().url || '';
    return (/status of 404/.test(m.text()) &&
            (/\/v1\/similarity$/.test(u) ||
             u.includes('word=' + NEW_WORD) ||
             u.includes('/v1/words/' + NEW_WORD + '/drift'))) ||
           (/status of 401/.test(m.text()) && /\/v1\/train$/.test(u));
  };
  page.on('console', (m) => {
    if (m.type() === 'error' && !expected(m))
      problems.push('console: ' + m.text() + ' at ' + (m.location().url || '?'));
  });
  page.on('pageerror', (e) => problems.push('page error: ' + e.message));
  page.on('requestfailed', (r) => problems.push('request failed: ' + r.method() + ' ' +
                                                r.url() + ' (' + r.failure().errorText +
                                                ') in ' + current));

  console.log('[==========] Running 15 test(s).');
  await test('gzip_when_accepted_identity_otherwise', async () => {
    const plain = await get(url, '/', {});
    check(plain.status === 200 && !plain.headers['content-encoding'],
          'no Accept-Encoding: ' + plain.status + ' ' + plain.headers['content-encoding']);
    check(/<style>/.test(plain.body) && /<script>/.test(plain.body), 'not inline');
    check(plain.headers.vary === 'Accept-Encoding', 'Vary: ' + plain.headers.vary);
    for (const [ae, gz] of [['gzip', 1], ['GZIP', 1], ['deflate, gzip;q=0.5, br', 1],
                            ['x-gzip', 1], ['*', 1], ['gzip;q=0', 0], ['gzip;q=0.000', 0],
                            ['identity', 0], ['br', 0], ['*;q=0', 0], ['*, gzip;q=0', 0]]) {
      const r = await get(url, '/', { 'Accept-Encoding': ae });
      check(r.status === 200, `${ae}: status ${r.status}`);
      check((r.headers['content-encoding'] === 'gzip') === !!gz,
            `Accept-Encoding: ${ae} got Content-Encoding ${r.headers['content-encoding']}`);
      const body = gz ? gunzipSync(r.body) : r.body;
      check(body.equals(plain.body), `${ae}: not the same page`);
      check((r.headers.etag !== plain.headers.etag) === !!gz, `${ae}: ETag ${r.headers.etag}`);
    }
    const z = await get(url, '/', { 'Accept-Encoding': 'gzip' });
    check(z.body.length * 2 < plain.body.length, `gzip saves little: ${z.body.length} of ${plain.body.length}`);
    // each encoding's ETag revalidates only that encoding
    const same = await get(url, '/', { 'Accept-Encoding': 'gzip', 'If-None-Match': z.headers.etag });
    check(same.status === 304 && same.body.length === 0, 'gzip revalidation: ' + same.status);
    const other = await get(url, '/', { 'If-None-Match': z.headers.etag });
    check(other.status === 200, 'identity with the gzip ETag: ' + other.status);
    const csp = plain.headers['content-security-policy'];
    check(/script-src 'self' 'sha256-[A-Za-z0-9+/]{43}='/.test(csp), 'CSP: ' + csp);
  });

  await test('loads_and_describes_the_model', async () => {
    const res = await page.goto(url + '/', { waitUntil: 'load' });
    check(res.status() === 200, 'GET / answered ' + res.status());
    const csp = res.headers()['content-security-policy'] || '';
    check(csp.includes("default-src 'none'"), 'no strict CSP: ' + csp);
    await page.waitForFunction(() => /20,000 words/.test(document.getElementById('model').textContent));
    // the page is one response: no stylesheet or script fetched apart
    const fetched = await page.evaluate(() => performance.getEntriesByType('resource')
      .map((r) => new URL(r.name).pathname).filter((p) => !p.startsWith('/v1/')));
    check(fetched.length === 0, 'the first paint fetched ' + fetched.join(', '));
    check((res.headers()['content-encoding'] || '') === 'gzip',
          'the page was not sent gzip-compressed');
    // a read-only server: no training panel
    check(await page.locator('#train').isHidden(), 'training panel shown without --train');
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
      const page = await a.text(); // read: an unread body is aborted later
      const b = await fetch('/', { cache: 'no-store', headers: { 'If-None-Match': tag } });
      await b.text();
      return [a.status, tag, b.status, /<title>semd/.test(page)];
    });
    check(r[0] === 200 && r[1] && r[2] === 304 && r[3], 'revalidation: ' + JSON.stringify(r));
    check(problems.length === 0, 'problems in the browser:\n  ' + problems.join('\n  '));
  });

  // ------------------------------------------------- a server that trains
  const model = join(work, 'model.semd');
  copyFileSync(fixture, model);
  const tokenFile = join(work, 'token');
  writeFileSync(tokenFile, TOKEN + '\n', { mode: 0o600 });
  chmodSync(tokenFile, 0o600);
  mkdirSync(join(work, 'data'));
  trainer = await startServer(model, ['--train', '--data-dir', join(work, 'data'),
                                      '--token-file', tokenFile,
                                      '--publish-interval', '0.2', '--min-count', '5']);
  const version = async () => parseInt(await page.textContent('#tf-version'), 10);

  await test('training_panel_shows_when_the_server_trains', async () => {
    await page.setViewportSize({ width: 1280, height: 900 });
    await page.goto(trainer.url + '/', { waitUntil: 'load' });
    await page.locator('#train').waitFor({ state: 'visible' });
    await page.waitForFunction(() => /^\d+/.test(document.getElementById('tf-version').textContent));
    check(await page.getAttribute('#train-token', 'type') === 'password', 'the token box shows the token');
    check(await page.getAttribute('#train-live', 'aria-live') === 'polite', 'progress is not announced');
    // before training the new word is unknown, said in words
    await page.fill('#q', NEW_WORD);
    await page.press('#q', 'Enter');
    await page.waitForFunction((w) => document.getElementById('search-status').textContent
      .includes('not in the vocabulary: ' + w), NEW_WORD);
  });

  await test('wrong_token_is_explained', async () => {
    await page.fill('#train-text', 'the king');
    await page.fill('#train-token', 'not-the-token');
    await page.click('#train-send');
    await page.waitForFunction(() => /did not accept the write token/.test(
      document.getElementById('train-status').textContent));
    check(await page.$eval('#train-status', (e) => e.classList.contains('error')), 'error not marked');
    check(!page.url().includes('token'), 'the token went into the URL: ' + page.url());
    const stored = await page.evaluate(() => JSON.stringify(localStorage) + JSON.stringify(sessionStorage));
    check(!stored.includes('not-the-token'), 'the token was stored: ' + stored);
  });

  let v0 = 0;
  await test('pinned_words_and_posted_text_raise_the_version', async () => {
    // pin king from the search, the new word from the box (keyboard)
    await page.fill('#q', 'king');
    await page.press('#q', 'Enter');
    await page.locator('#pin-searched').waitFor({ state: 'visible' });
    await page.click('#pin-searched');
    await page.fill('#pin-word', NEW_WORD);
    await page.press('#pin-word', 'Enter');
    await page.locator('#pins tr[data-word=king] td.cos', { hasText: /^1\.000$/ }).waitFor();
    await page.locator(`#pins tr[data-word=${NEW_WORD}] td.versions`, { hasText: /not in version/ }).waitFor();
    v0 = await version();
    await page.fill('#train-text', royalText(300));
    await page.fill('#train-token', TOKEN);
    await page.click('#train-send');
    await page.waitForFunction(() => /^Accepted as post \d+/.test(
      document.getElementById('train-status').textContent));
    await page.waitForFunction((v) => parseInt(document.getElementById('tf-version').textContent, 10) > v,
                               v0, { timeout: 30000 * scale });
    const words = await page.textContent('#tf-words');
    check(parseInt(words.replace(/,/g, ''), 10) > 0, 'no words trained: ' + words);
    const live = await page.textContent('#train-live');
    check(/^Version \d+ is being served/.test(live), 'progress says: ' + live);
  });

  await test('pinned_king_shows_its_drift', async () => {
    const cos = page.locator('#pins tr[data-word=king] td.cos');
    await page.locator('#pins tr[data-word=king] td.versions', { hasText: /→/ }).waitFor();
    const c = parseFloat(await cos.textContent());
    check(c > 0 && c < 1, 'king\'s cosine across versions: ' + c);
    const from = await page.textContent('#pins tr[data-word=king] td.versions');
    check(from.startsWith(v0 + ' →'), `drift from ${v0} expected: ${from}`);
  });

  await test('the_new_word_becomes_searchable', async () => {
    // published in some version after the post: search until it is
    const deadline = Date.now() + 30000 * scale;
    for (;;) {
      await page.fill('#q', NEW_WORD);
      await page.press('#q', 'Enter');
      await page.waitForFunction(() => !/Searching/.test(document.getElementById('search-status').textContent));
      if (await page.locator('#neighbors li').count() === 10) break;
      check(Date.now() < deadline, NEW_WORD + ' never became searchable: ' +
            await page.textContent('#search-status'));
      await page.waitForTimeout(300);
    }
    // its pin now compares from the first version that has it
    await page.locator(`#pins tr[data-word=${NEW_WORD}] td.cos`, { hasText: /^[01]\.\d{3}$/ })
      .waitFor({ timeout: 15000 * scale });
    await page.screenshot({ path: join(shots, 'train.png'), fullPage: true });
    // unpin by keyboard
    await page.focus(`#pins tr[data-word=${NEW_WORD}] button.unpin`);
    await page.keyboard.press('Enter');
    await page.waitForFunction((w) => !document.querySelector(`#pins tr[data-word=${w}]`), NEW_WORD);
  });

  await test('progress_polls_only_while_open_and_visible', async () => {
    let polls = 0;
    const isPoll = (r) => r.method() === 'GET' && r.url().endsWith('/v1/train');
    const count = (r) => { if (isPoll(r)) polls++; };
    page.on('request', count);
    try {
      // a hidden tab: no polling (the page reads document.visibilityState)
      await page.evaluate(() => {
        Object.defineProperty(document, 'visibilityState', { value: 'hidden', configurable: true });
        document.dispatchEvent(new Event('visibilitychange'));
      });
      await page.waitForTimeout(300); // one already on its way may finish
      polls = 0;
      await page.waitForTimeout(1500);
      check(polls === 0, `${polls} polls while hidden`);
      const resumed = page.waitForRequest(isPoll, { timeout: 3000 * scale });
      await page.evaluate(() => {
        delete document.visibilityState; // the real getter again
        document.dispatchEvent(new Event('visibilitychange'));
      });
      await resumed;
      // a closed panel: no polling either (its summary works by keyboard)
      await page.focus('#train-panel summary');
      await page.keyboard.press('Enter');
      check(!(await page.$eval('#train-panel', (d) => d.open)), 'panel did not close');
      await page.waitForTimeout(300);
      polls = 0;
      await page.waitForTimeout(1500);
      check(polls === 0, `${polls} polls while closed`);
      await page.keyboard.press('Enter');
      await page.waitForRequest(isPoll, { timeout: 3000 * scale });
      // about once a second while open, never a burst
      polls = 0;
      const secs = 2 * Math.min(scale, 2);
      await page.waitForTimeout(secs * 1000);
      check(polls >= 1 && polls <= secs + 1, `${polls} polls in ${secs} s`);
    } finally {
      page.off('request', count);
    }
  });

  await test('training_panel_at_phone_width', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    await page.waitForTimeout(300);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    check(overflow <= 0, `the page is ${overflow}px wider than a phone`);
    await page.locator('#train').screenshot({ path: join(shots, 'train-phone.png') });
    check(problems.length === 0, 'problems in the browser:\n  ' + problems.join('\n  '));
  });
} catch (e) {
  failed.push('setup');
  console.log(`[  ERROR   ] --- ${e.stack || e.message}`);
} finally {
  if (ctx) await ctx.close().catch(() => {});
  // each daemon stops cleanly on SIGTERM (under the sanitizers: with no
  // report); the trainer persists a snapshot as it stops, so its files are
  // removed only after it
  for (const d of [first, trainer]) {
    if (!d) continue;
    const code = await new Promise((resolve) => {
      if (d.proc.exitCode !== null || d.proc.signalCode !== null) {
        resolve(d.proc.exitCode ?? d.proc.signalCode);
        return;
      }
      const t = setTimeout(() => { d.proc.kill('SIGKILL'); resolve('timeout'); }, 20000 * scale);
      d.proc.once('exit', (c, sig) => { clearTimeout(t); resolve(c ?? sig); });
      d.proc.kill('SIGTERM');
    });
    if (code !== 0) {
      failed.push('daemon_exit');
      console.log(`[  ERROR   ] --- semd serve at ${d.url} ended with ${code}:\n` +
                  d.log().split('\n').slice(-30).join('\n'));
    }
  }
  rmSync(profile, { recursive: true, force: true });
  rmSync(work, { recursive: true, force: true });
}
console.log(`[==========] ${passed + failed.length} test(s) run.`);
console.log(`[  PASSED  ] ${passed} test(s).`);
if (failed.length) {
  console.log(`[  FAILED  ] ${failed.length} test(s), listed below:`);
  for (const f of failed) console.log(`[  FAILED  ] ${f}`);
}
console.log(`screenshots: ${shots}/desktop.png, ${shots}/phone.png, ` +
            `${shots}/train.png, ${shots}/train-phone.png`);
process.exit(failed.length ? 1 : 0);
