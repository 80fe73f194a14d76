// app.js - the page's behaviour: every number shown comes from the semd
// API on this origin (the Content-Security-Policy allows nothing else).
// API text is put into the page with textContent only, never as HTML.
// The build inlines this file at the end of the page's body, so it runs
// once the elements exist; it asks the API nothing before the load event.
'use strict';

const $ = (id) => document.getElementById(id);
const SVGNS = 'http://www.w3.org/2000/svg';

// One API call: the "result" of the envelope, or an Error whose message
// is the server's, with the unknown words when it lists them (and the
// error's code and the HTTP status, for callers that tell cases apart).
async function api(method, path, body) {
  const init = { method, headers: {} };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    throw new Error('the server did not answer (' + e.message + ')');
  }
  let doc = null;
  try { doc = await res.json(); } catch (e) { /* not JSON: said below */ }
  if (!res.ok || !doc || doc.error) {
    const err = doc && doc.error;
    let msg = err && err.message ? err.message : 'HTTP ' + res.status;
    if (err && err.words && err.words.length)
      msg = 'not in the vocabulary: ' + err.words.join(', ');
    const e = new Error(msg);
    e.status = res.status;
    e.code = err && err.code;
    throw e;
  }
  return doc.result;
}

function say(id, text, isError) {
  const el = $(id);
  el.textContent = text;
  el.classList.toggle('error', !!isError);
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

const fmt = (x) => (Math.round(x * 1000) / 1000).toFixed(3);
const words = (s) => s.split(/[\s,]+/).filter(Boolean);

// ------------------------------------------------------------- model line
async function loadModel() {
  try {
    const m = await api('GET', '/v1/model');
    $('model').textContent = m.rows.toLocaleString('en') + ' words × ' +
      m.dims + ' dimensions from ' + m.source + ' · index ' +
      m.index.factory + (m.index.exact ? ' (exact)' : '') +
      ' · version ' + m.version;
    const st = m.training && m.training.state;
    showTraining(!!st && st !== 'off' && st !== 'disabled', m.version);
  } catch (e) {
    say('model', 'Could not describe the model: ' + e.message, true);
  }
}

// ------------------------------------------------------------ neighbours
function isExpression(q) {
  return /[+\-*\s"]/.test(q.trim());
}

async function search(q) {
  q = q.trim();
  if (!q) return;
  $('q').value = q;
  closeComplete();
  const k = Math.max(1, Math.min(100, parseInt($('k').value, 10) || 10));
  const arg = isExpression(q) ? 'q=' : 'word=';
  say('search-status', 'Searching…');
  const list = $('neighbors');
  try {
    const r = await api('GET', '/v1/neighbors?' + arg +
                        encodeURIComponent(q) + '&k=' + k);
    list.replaceChildren();
    for (const h of r.neighbors) {
      const li = el('li');
      const w = el('span', 'w');
      const a = el('a', null, h.word);
      a.href = '#search';
      a.addEventListener('click', (ev) => { ev.preventDefault(); search(h.word); });
      w.append(a);
      const track = el('span', 'track');
      track.setAttribute('aria-hidden', 'true');
      const fill = el('span', 'fill');
      fill.style.width = (Math.max(0, h.similarity) * 100).toFixed(1) + '%';
      track.append(fill);
      const s = el('span', 's', fmt(h.similarity));
      s.setAttribute('aria-label', 'similarity ' + fmt(h.similarity));
      li.append(w, track, s);
      list.append(li);
    }
    const via = r.terms.filter((t) => t.provenance === 'case_folded')
      .map((t) => t.word + ' → ' + t.resolved);
    say('search-status', r.neighbors.length + ' neighbours of ' + q +
        (via.length ? ' (read as ' + via.join(', ') + ')' : ''));
    setSearched(isExpression(q) ? '' : q);
    if (!isExpression(q)) {
      $('map-word').value = q;
      drawMap(q);
    }
  } catch (e) {
    list.replaceChildren();
    say('search-status', e.message, true);
    setSearched('');
  }
}

// Completion: a listbox under the box, driven by arrows, Enter, Escape.
let completeTimer = 0;
let completeSeq = 0;
let active = -1;

function closeComplete() {
  clearTimeout(completeTimer);
  completeSeq++; // answers still on their way are dropped
  $('complete').hidden = true;
  $('q').setAttribute('aria-expanded', 'false');
  $('q').removeAttribute('aria-activedescendant');
  active = -1;
}

function setActive(i) {
  const items = $('complete').children;
  if (!items.length) return;
  active = (i + items.length) % items.length;
  for (let j = 0; j < items.length; j++)
    items[j].setAttribute('aria-selected', j === active ? 'true' : 'false');
  $('q').setAttribute('aria-activedescendant', items[active].id);
}

async function complete() {
  const prefix = $('q').value.trim();
  const seq = ++completeSeq;
  if (!prefix || isExpression(prefix)) { closeComplete(); return; }
  try {
    const r = await api('GET', '/v1/words?prefix=' +
                        encodeURIComponent(prefix) + '&limit=8');
    if (seq !== completeSeq) return; // a later keystroke won
    const ul = $('complete');
    ul.replaceChildren();
    r.words.forEach((w, i) => {
      const li = el('li', null, w.word);
      li.id = 'complete-' + i;
      li.setAttribute('role', 'option');
      li.setAttribute('aria-selected', 'false');
      li.addEventListener('mousedown', (ev) => { ev.preventDefault(); search(w.word); });
      ul.append(li);
    });
    const show = r.words.length > 0 && !(r.words.length === 1 && r.words[0].word === prefix);
    ul.hidden = !show;
    $('q').setAttribute('aria-expanded', show ? 'true' : 'false');
    active = -1;
  } catch (e) {
    closeComplete();
  }
}

// ------------------------------------------------------------------- map
const view = { x: 0, y: 0, s: 1 }; // pan (in viewBox units) and zoom
// the viewBox follows the plot's size on screen, so text stays readable
const box = { w: 800, h: 500 };
let plotGroup = null;

function applyView() {
  if (plotGroup)
    plotGroup.setAttribute('transform', 'translate(' + view.x + ' ' + view.y +
                           ') scale(' + view.s + ')');
  // labels and dots keep their size on screen
  for (const g of document.querySelectorAll('#plot .pt'))
    g.firstChild.setAttribute('transform', 'scale(' + 1 / view.s + ')');
}

function zoom(f, cx = box.w / 2, cy = box.h / 2) {
  const s = Math.max(0.5, Math.min(20, view.s * f));
  view.x = cx - (cx - view.x) * (s / view.s);
  view.y = cy - (cy - view.y) * (s / view.s);
  view.s = s;
  applyView();
}

async function drawMap(word) {
  word = word.trim();
  if (!word) return;
  const k = Math.max(2, Math.min(200, parseInt($('map-k').value, 10) || 30));
  say('map-status', 'Projecting…');
  const svg = $('plot');
  try {
    const r = await api('POST', '/v1/project', { word, k });
    box.w = Math.max(300, Math.round(svg.clientWidth || 800));
    box.h = Math.round(box.w < 600 ? box.w * 1.1 : box.w * 0.625);
    svg.setAttribute('viewBox', '0 0 ' + box.w + ' ' + box.h);
    const W = box.w, H = box.h, pad = 50;
    const xs = r.points.map((p) => p.x), ys = r.points.map((p) => p.y);
    const x0 = Math.min(...xs), x1 = Math.max(...xs);
    const y0 = Math.min(...ys), y1 = Math.max(...ys);
    const span = Math.max(x1 - x0, (y1 - y0) * (W - 2 * pad) / (H - 2 * pad)) || 1;
    const sc = (W - 2 * pad) / span;
    const cx = (x0 + x1) / 2, cy = (y0 + y1) / 2;
    svg.replaceChildren();
    const ax = document.createElementNS(SVGNS, 'g');
    for (const [a, b, c, d] of [[0, H / 2, W, H / 2], [W / 2, 0, W / 2, H]]) {
      const l = document.createElementNS(SVGNS, 'line');
      l.setAttribute('class', 'axis');
      l.setAttribute('x1', a); l.setAttribute('y1', b);
      l.setAttribute('x2', c); l.setAttribute('y2', d);
      ax.append(l);
    }
    svg.append(ax);
    plotGroup = document.createElementNS(SVGNS, 'g');
    svg.append(plotGroup);
    r.points.forEach((p, i) => {
      const g = document.createElementNS(SVGNS, 'g');
      g.setAttribute('class', 'pt' + (i === 0 ? ' centre' : ''));
      const px = W / 2 + (p.x - cx) * sc, py = H / 2 - (p.y - cy) * sc;
      const outer = document.createElementNS(SVGNS, 'g');
      g.setAttribute('transform', 'translate(' + px.toFixed(1) + ' ' + py.toFixed(1) + ')');
      g.setAttribute('tabindex', '0');
      g.setAttribute('role', 'button');
      const label = p.word + (p.score !== undefined ? ', similarity ' + fmt(p.score) : '');
      g.setAttribute('aria-label', label);
      g.dataset.word = p.word;
      const c = document.createElementNS(SVGNS, 'circle');
      c.setAttribute('r', i === 0 ? 7 : 5);
      const t = document.createElementNS(SVGNS, 'text');
      t.setAttribute('x', 9);
      t.setAttribute('y', 4);
      t.textContent = p.word;
      outer.append(c, t);
      g.append(outer);
      g.addEventListener('click', () => search(p.word));
      g.addEventListener('keydown', (ev) => {
        if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); search(p.word); }
      });
      g.addEventListener('pointerenter', () => showTip(g, label));
      g.addEventListener('pointerleave', hideTip);
      g.addEventListener('focus', () => showTip(g, label));
      g.addEventListener('blur', hideTip);
      plotGroup.append(g);
    });
    const ev = document.createElementNS(SVGNS, 'text');
    ev.setAttribute('class', 'ev');
    ev.setAttribute('x', 10);
    ev.setAttribute('y', H - 10);
    ev.textContent = 'PC1 ' + (r.explained_variance[0] * 100).toFixed(1) +
      '% · PC2 ' + (r.explained_variance[1] * 100).toFixed(1) + '% of variance';
    svg.append(ev);
    view.x = 0; view.y = 0; view.s = 1;
    applyView();
    say('map-status', r.points.length + ' words around ' + word +
        '; the axes hold ' + ((r.explained_variance[0] + r.explained_variance[1]) * 100).toFixed(0) +
        '% of their variance');
  } catch (e) {
    say('map-status', e.message, true);
  }
}

function showTip(g, text) {
  const tip = $('tip');
  const box = g.getBoundingClientRect(), wrap = tip.parentElement.getBoundingClientRect();
  tip.textContent = text;
  tip.style.left = (box.left - wrap.left + 12) + 'px';
  tip.style.top = (box.top - wrap.top - 30) + 'px';
  tip.hidden = false;
}
function hideTip() { $('tip').hidden = true; }

// pan by dragging, zoom by wheel (about the pointer)
function svgPoint(svg, ev) {
  const r = svg.getBoundingClientRect();
  return [(ev.clientX - r.left) * box.w / r.width, (ev.clientY - r.top) * box.h / r.height];
}
function setupPlot() {
  const svg = $('plot');
  let drag = null;
  svg.addEventListener('wheel', (ev) => {
    ev.preventDefault();
    const [x, y] = svgPoint(svg, ev);
    zoom(ev.deltaY < 0 ? 1.2 : 1 / 1.2, x, y);
  }, { passive: false });
  svg.addEventListener('pointerdown', (ev) => {
    if (ev.target.closest('.pt')) return;
    drag = svgPoint(svg, ev);
    svg.setPointerCapture(ev.pointerId);
  });
  svg.addEventListener('pointermove', (ev) => {
    if (!drag) return;
    const [x, y] = svgPoint(svg, ev);
    view.x += x - drag[0]; view.y += y - drag[1];
    drag = [x, y];
    applyView();
  });
  svg.addEventListener('pointerup', () => { drag = null; });
  $('zoom-in').addEventListener('click', () => zoom(1.4));
  $('zoom-out').addEventListener('click', () => zoom(1 / 1.4));
  $('zoom-reset').addEventListener('click', () => { view.x = 0; view.y = 0; view.s = 1; applyView(); });
}

// --------------------------------------------------------------- analogy
async function analogy() {
  const a = $('an-a').value.trim(), b = $('an-b').value.trim(), c = $('an-c').value.trim();
  const out = $('analogy-out');
  say('analogy-status', 'Solving…');
  try {
    const q = '"' + b + '" - "' + a + '" + "' + c + '"';
    const r = await api('GET', '/v1/analogy?q=' + encodeURIComponent(q) +
                        '&method=both&explain=1&k=5');
    out.replaceChildren();
    for (const m of r.results) {
      const box = el('div', 'method');
      box.append(el('h3', null, m.method === '3cosadd' ? '3CosAdd (b − a + c)' : '3CosMul (multiplicative)'));
      const best = m.answers[0];
      box.append(el('div', 'answer', best ? best.word : '(no answer)'));
      const ol = el('ol', 'bars');
      ol.setAttribute('aria-label', m.method + ' answers');
      const top = best ? Math.abs(best.score) || 1 : 1;
      for (const h of m.answers) {
        const li = el('li');
        li.append(el('span', 'w', h.word));
        const track = el('span', 'track');
        track.setAttribute('aria-hidden', 'true');
        const fill = el('span', 'fill');
        fill.style.width = (Math.max(0, h.score / top) * 100).toFixed(1) + '%';
        track.append(fill);
        li.append(track, el('span', 's', fmt(h.score)));
        ol.append(li);
      }
      box.append(ol);
      if (m.explain) {
        const x = m.explain;
        const ul = el('ul', 'explain');
        ul.append(el('li', null, 'cosine with the answer: ' +
          x.term_cos.map((t) => t.word + ' ' + fmt(t.cos)).join(', ')));
        ul.append(el('li', null, 'margin over the runner-up: ' + fmt(x.margin)));
        ul.append(el('li', null, 'rank had the inputs been allowed: ' + x.rank_with_inputs));
        ul.append(el('li', null, x.methods_agree ? 'both methods agree'
          : 'the methods disagree' + (x.other_method ? ' (' + x.other_method.method + ' says ' + x.other_method.word + ')' : '')));
        box.append(ul);
      }
      out.append(box);
    }
    say('analogy-status', a + ' is to ' + b + ' as ' + c + ' is to ' + (r.answer || '?'));
  } catch (e) {
    out.replaceChildren();
    say('analogy-status', e.message, true);
  }
}

// ---------------------------------------------------------- set similarity
async function sets() {
  const a = words($('set-a').value), b = words($('set-b').value);
  const out = $('sets-out');
  say('sets-status', 'Comparing…');
  try {
    const r = await api('POST', '/v1/similarity', { a, b });
    out.replaceChildren(fmt(r.similarity),
      el('small', null, 'cosine of the mean vectors of {' + a.join(', ') + '} and {' + b.join(', ') + '}'));
    say('sets-status', '');
  } catch (e) {
    out.replaceChildren();
    say('sets-status', e.message, true);
  }
}

// -------------------------------------------------------------- training
// Shown only when the server trains. The write token lives in its
// password box and in the request's Authorization header, nowhere else:
// not in storage, not in a URL. Progress is polled from GET /v1/train
// once a second while the panel is open and the page is visible, one
// request at a time; pinned words are compared across versions with
// GET /v1/words/{word}/drift whenever a new version is published.
const training = {
  on: false,
  timer: 0,
  busy: false,
  seen: 0,      // the newest version the progress poll has seen
  oldest: 0,    // the oldest version the server still retains
  version: 0,   // the newest version known, from /v1/model or /v1/train
};
const pins = new Map(); // word -> { from, row }
let searched = '';      // the last single word searched, for "Pin"

function setSearched(word) {
  searched = word;
  const b = $('pin-searched');
  b.hidden = !training.on || !word;
  b.textContent = 'Pin ' + word;
  b.setAttribute('aria-label', 'Pin ' + word + ' to watch its drift in the training panel');
}

function showTraining(on, version) {
  if (version > training.version) training.version = version;
  const was = training.on;
  training.on = on;
  $('train').hidden = !on;
  if (!on) $('pin-searched').hidden = true;
  if (on !== was) schedulePoll(0);
}

function pollWanted() {
  return training.on && $('train-panel').open &&
    document.visibilityState === 'visible';
}

function schedulePoll(ms) {
  clearTimeout(training.timer);
  training.timer = 0;
  if (pollWanted()) training.timer = setTimeout(poll, ms);
}

const num = (x) => Math.round(x).toLocaleString('en');

function bytes(n) {
  if (n < 1024) return n + ' bytes';
  if (n < 1024 * 1024) return (n / 1024).toFixed(1) + ' KiB';
  return (n / 1024 / 1024).toFixed(1) + ' MiB';
}

// "06:10:02, 3 s ago" from an ISO time, or "not yet"
function when(iso) {
  if (!iso) return 'not yet';
  const t = new Date(iso);
  if (isNaN(t)) return iso;
  const ago = Math.max(0, Math.round((Date.now() - t.getTime()) / 1000));
  return t.toLocaleTimeString('en-GB') + ', ' +
    (ago < 120 ? ago + ' s ago' : Math.round(ago / 60) + ' min ago');
}

function setText(id, text) {
  const e = $(id);
  if (e.textContent !== text) e.textContent = text; // no needless re-announcing
}

function showProgress(st) {
  const kept = st.retained_versions || [];
  training.oldest = kept.length ? Math.min(...kept) : st.version;
  setText('tf-version', st.version + (kept.length > 1
    ? ' (kept: ' + Math.min(...kept) + '–' + Math.max(...kept) + ')' : ''));
  setText('tf-queued', num(st.queued_records) + ' records, ' + bytes(st.queued_bytes));
  setText('tf-words', num(st.words_trained));
  setText('tf-rate', num(st.words_per_sec));
  setText('tf-loss', st.words_trained ? st.loss.toFixed(4) : '–');
  setText('tf-new', num(st.new_words));
  setText('tf-publish', when(st.last_publish));
  setText('tf-persist', when(st.last_persist));
  // the sentence a screen reader hears: it changes with the version and
  // the queue, not with every figure
  const q = st.queued_records;
  let live = 'Version ' + st.version + ' is being served; ' +
    (q ? num(q) + (q === 1 ? ' post waits' : ' posts wait') + ' to be trained.'
       : 'nothing waits to be trained.');
  if (st.last_error) live += ' The trainer reports: ' + st.last_error;
  setText('train-live', live);
  $('train-live').classList.toggle('error', !!st.last_error);
}

async function poll() {
  training.timer = 0;
  if (!pollWanted() || training.busy) return;
  training.busy = true;
  try {
    const st = await api('GET', '/v1/train');
    if (!st.enabled) { showTraining(false, 0); return; }
    showProgress(st);
    if (st.version > training.version) training.version = st.version;
    if (st.version !== training.seen) {
      const first = !training.seen;
      training.seen = st.version;
      if (!first) loadModel(); // the model line names the version
      refreshPins();
    }
  } catch (e) {
    setText('train-live', 'Could not read the training progress: ' + e.message);
    $('train-live').classList.add('error');
  } finally {
    training.busy = false;
    if (!training.timer) schedulePoll(1000);
  }
}

async function train() {
  const text = $('train-text').value;
  const token = $('train-token').value;
  if (!text.trim()) {
    say('train-status', 'Write some text to learn from first.', true);
    return;
  }
  if (!token) {
    say('train-status', 'Give the write token: the server learns only from ' +
        'text posted with it.', true);
    $('train-token').focus();
    return;
  }
  say('train-status', 'Sending…');
  let res;
  try {
    res = await fetch('/v1/train', {
      method: 'POST',
      headers: { 'Content-Type': 'text/plain; charset=utf-8',
                 Authorization: 'Bearer ' + token },
      body: text,
      cache: 'no-store',
    });
  } catch (e) {
    say('train-status', 'The server did not answer (' + e.message + ').', true);
    return;
  }
  let doc = null;
  try { doc = await res.json(); } catch (e) { /* not JSON: said below */ }
  const msg = doc && doc.error && doc.error.message ? doc.error.message : '';
  if (res.status === 202 && doc && doc.result) {
    const r = doc.result;
    say('train-status', 'Accepted as post ' + r.seq + ' (' +
        num(r.queued_records) + ' waiting to be trained). The next version ' +
        'the server publishes includes it.');
    schedulePoll(300);
    return;
  }
  let words;
  switch (res.status) {
  case 401:
    words = 'The server did not accept the write token (' + msg +
      '). Check it and post again.';
    break;
  case 403:
    words = 'The server refuses to learn from posts: ' + msg + '.';
    break;
  case 413:
    words = 'The text is too large for one post (' + msg +
      '). Split it and post the parts.';
    break;
  case 429: {
    const wait = parseInt(res.headers.get('Retry-After'), 10) || 1;
    words = 'The training queue is full (' + msg + '). The server asks ' +
      'to wait ' + wait + ' s before posting again; the button is back then.';
    const b = $('train-send');
    b.disabled = true;
    setTimeout(() => { b.disabled = false; }, wait * 1000);
    break;
  }
  case 503:
    words = 'The server cannot take text now: ' + msg + '.';
    break;
  default:
    words = 'The post failed (HTTP ' + res.status + (msg ? ': ' + msg : '') + ').';
  }
  say('train-status', words, true);
}

function pin(word) {
  word = word.trim();
  if (!word) return;
  if (/\s/.test(word)) {
    say('pin-status', 'Pin one word at a time: “' + word + '” has spaces.', true);
    return;
  }
  if (pins.has(word)) {
    say('pin-status', word + ' is pinned already.');
    return;
  }
  const row = el('tr');
  const th = el('th', null, word);
  th.scope = 'row';
  const unpin = el('button', 'unpin', 'Unpin');
  unpin.type = 'button';
  unpin.setAttribute('aria-label', 'Unpin ' + word);
  unpin.addEventListener('click', () => {
    pins.delete(word);
    row.remove();
    $('pins-wrap').hidden = pins.size === 0;
    say('pin-status', 'Unpinned ' + word + '.');
    $('pin-word').focus();
  });
  const cells = [el('td', 'versions'), el('td', 'cos'), el('td', 'entered'),
                 el('td', 'left'), el('td')];
  cells[4].append(unpin);
  row.append(th, ...cells);
  row.dataset.word = word;
  $('pins').tBodies[0].append(row);
  pins.set(word, { from: training.version, row });
  $('pins-wrap').hidden = false;
  say('pin-status', 'Pinned ' + word + ' at version ' + training.version + '.');
  refreshPin(word);
}

function refreshPins() {
  for (const w of pins.keys()) refreshPin(w);
}

async function refreshPin(word) {
  const p = pins.get(word);
  if (!p) return;
  const to = training.version;
  // a version the server no longer keeps cannot be compared with: the
  // oldest one it keeps stands in
  const from = Math.max(p.from, training.oldest || 0);
  const [, vc, cc, ec, lc] = p.row.cells;
  try {
    const r = await api('GET', '/v1/words/' + encodeURIComponent(word) +
                        '/drift?from=' + from + '&to=' + to);
    if (pins.get(word) !== p) return; // unpinned meanwhile
    vc.textContent = r.from === r.to ? r.to + ' (no newer version yet)'
      : r.from + ' → ' + r.to + (from > p.from ? ' (oldest kept)' : '');
    cc.textContent = fmt(r.cosine);
    cc.setAttribute('aria-label', 'cosine ' + fmt(r.cosine) + ', moved ' +
                    fmt(1 - r.cosine));
    ec.textContent = r.entered.length ? r.entered.join(', ') : '—';
    lc.textContent = r.left.length ? r.left.join(', ') : '—';
    p.row.classList.remove('error');
  } catch (e) {
    if (pins.get(word) !== p) return;
    if (e.code === 'unknown_word' && from < to) {
      // not in the version it was pinned at: a new word; compare from the
      // first version that has it, if this one does
      try {
        await api('GET', '/v1/words/' + encodeURIComponent(word) +
                  '/drift?from=' + to + '&to=' + to);
        p.from = to;
        refreshPin(word);
        return;
      } catch (e2) { /* still unknown: said below */ }
    }
    vc.textContent = e.code === 'unknown_word'
      ? 'not in version ' + to + ' yet' : e.message;
    cc.textContent = ec.textContent = lc.textContent = '—';
    p.row.classList.toggle('error', e.code !== 'unknown_word');
  }
}

function setupTraining() {
  $('train-form').addEventListener('submit', (ev) => { ev.preventDefault(); train(); });
  $('pin-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    pin($('pin-word').value);
    $('pin-word').value = '';
  });
  $('pin-searched').addEventListener('click', () => pin(searched));
  $('train-panel').addEventListener('toggle', () => schedulePoll(0));
  document.addEventListener('visibilitychange', () => schedulePoll(0));
}

// ------------------------------------------------------------------ wiring
function init() {
  const q = $('q');
  $('search-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const items = $('complete').children;
    if (!$('complete').hidden && active >= 0 && items[active]) search(items[active].textContent);
    else search(q.value);
  });
  q.addEventListener('input', () => {
    clearTimeout(completeTimer);
    completeTimer = setTimeout(complete, 120);
  });
  q.addEventListener('keydown', (ev) => {
    if ($('complete').hidden) return;
    if (ev.key === 'ArrowDown') { ev.preventDefault(); setActive(active + 1); }
    else if (ev.key === 'ArrowUp') { ev.preventDefault(); setActive(active - 1); }
    else if (ev.key === 'Escape') { ev.preventDefault(); closeComplete(); }
  });
  q.addEventListener('blur', () => setTimeout(closeComplete, 150));
  $('map-form').addEventListener('submit', (ev) => { ev.preventDefault(); drawMap($('map-word').value); });
  $('analogy-form').addEventListener('submit', (ev) => { ev.preventDefault(); analogy(); });
  $('sets-form').addEventListener('submit', (ev) => { ev.preventDefault(); sets(); });
  setupPlot();
  setupTraining();
  // what the first paint does not need waits for the load event
  if (document.readyState === 'complete') loadModel();
  else window.addEventListener('load', () => setTimeout(loadModel, 0), { once: true });
}

init();
