// attention_test.js: the attention page in a real browser (Debian's
// chromium, driven by playwright-core). Run by tests/t_browser.sh:
//
//   node tests/browser/attention_test.js --page PAGE.html --json CAPTURE.json
//        [--no-scores-page PAGE2.html] [--demo web/attention.html]
//        [--shots DIR] [--chromium /usr/bin/chromium]
//
// PAGE is `gpt2 attention ... --scores -o PAGE.html`, CAPTURE the .json of
// the same text; PAGE2 the same page without scores. Checks: the page
// loads with no console message of level error or warning, no uncaught
// exception and no request but its own file; the data it embeds equals the
// JSON; every tab shows its view; the head view draws lines in the head's
// colour, none when no head is on, only the hovered token's on hover; the
// model view draws every thumbnail and a click selects its layer/head; in
// the matrix view the colour of each heatmap cell, read from a screenshot,
// is darker exactly where the weight (or score) in the JSON is larger;
// the "attends to" lists rank the earlier tokens as the JSON does. Prints
// "ok - ..." / "not ok - ..." per check, saves screenshots of each view
// into --shots, and exits 1 on any failure.
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const zlib = require('zlib');
const { chromium } = require('playwright-core');

// ------------------------------------------------------------- reporting

let nChecks = 0, nFailed = 0;
function check(name, ok, detail) {
  nChecks++;
  if (ok) { console.log('ok - ' + name); return true; }
  nFailed++;
  console.log('not ok - ' + name);
  if (detail) for (const line of String(detail).split('\n').slice(0, 12)) console.log('    # ' + line);
  return false;
}

function parseArgs(argv) {
  const o = { chromium: '/usr/bin/chromium', shots: null, page: null, json: null, noScoresPage: null, demo: null };
  const names = { '--page': 'page', '--json': 'json', '--no-scores-page': 'noScoresPage', '--demo': 'demo', '--shots': 'shots', '--chromium': 'chromium' };
  for (let i = 0; i < argv.length; i += 2) {
    if (!(argv[i] in names) || i + 1 >= argv.length) throw new Error('usage: attention_test.js --page P --json J [--no-scores-page P2] [--demo HTML] [--shots DIR] [--chromium BIN] (bad argument ' + argv[i] + ')');
    o[names[argv[i]]] = argv[i + 1];
  }
  if (!o.page || !o.json) throw new Error('attention_test.js: --page and --json are required');
  return o;
}

// ------------------------------------------------------------------- PNG

// Decodes the PNGs Chromium writes (8-bit RGB or RGBA, not interlaced)
// into { width, height, rgba }.
function decodePng(buf) {
  if (buf.readUInt32BE(0) !== 0x89504e47) throw new Error('not a PNG');
  let off = 8, width = 0, height = 0, ctype = 0;
  const idat = [];
  while (off < buf.length) {
    const len = buf.readUInt32BE(off), type = buf.toString('latin1', off + 4, off + 8);
    const data = buf.subarray(off + 8, off + 8 + len);
    if (type === 'IHDR') {
      width = data.readUInt32BE(0); height = data.readUInt32BE(4); ctype = data[9];
      if (data[8] !== 8 || (ctype !== 2 && ctype !== 6) || data[12] !== 0) throw new Error('PNG: unsupported depth ' + data[8] + ', colour type ' + ctype + ' or interlace');
    } else if (type === 'IDAT') idat.push(data);
    else if (type === 'IEND') break;
    off += 12 + len;
  }
  const bpp = ctype === 6 ? 4 : 3, stride = width * bpp;
  const raw = zlib.inflateSync(Buffer.concat(idat));
  const px = Buffer.alloc(stride * height), rgba = Buffer.alloc(width * height * 4);
  for (let y = 0; y < height; y++) {
    const f = raw[y * (stride + 1)], src = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    const row = px.subarray(y * stride, (y + 1) * stride), up = y ? px.subarray((y - 1) * stride, y * stride) : null;
    for (let x = 0; x < stride; x++) {
      const a = x >= bpp ? row[x - bpp] : 0, b = up ? up[x] : 0, c = up && x >= bpp ? up[x - bpp] : 0;
      let v = src[x];
      if (f === 1) v += a;
      else if (f === 2) v += b;
      else if (f === 3) v += (a + b) >> 1;
      else if (f === 4) { const p = a + b - c, pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c); v += pa <= pb && pa <= pc ? a : pb <= pc ? b : c; }
      row[x] = v & 255;
    }
    for (let x = 0; x < width; x++) {
      for (let ch = 0; ch < 3; ch++) rgba[(y * width + x) * 4 + ch] = row[x * bpp + ch];
      rgba[(y * width + x) * 4 + 3] = bpp === 4 ? row[x * bpp + 3] : 255;
    }
  }
  return { width, height, rgba };
}

function pixel(img, x, y) {
  x = Math.round(x); y = Math.round(y);
  const i = (y * img.width + x) * 4;
  return [img.rgba[i], img.rgba[i + 1], img.rgba[i + 2]];
}
const luma = p => 0.2126 * p[0] + 0.7152 * p[1] + 0.0722 * p[2];
const isWhite = p => p[0] > 250 && p[1] > 250 && p[2] > 250;

function hexRgb(css) {
  const m = /^#([0-9a-f]{6})$/i.exec(css);
  if (m) return [0, 2, 4].map(i => parseInt(m[1].substr(i, 2), 16));
  const r = /rgb\((\d+),\s*(\d+),\s*(\d+)\)/.exec(css);
  if (r) return [+r[1], +r[2], +r[3]];
  throw new Error('colour ' + css);
}

// ----------------------------------------------------------------- browser

async function openPage(browser, file) {
  const page = await browser.newPage();
  const log = { messages: [], requests: [] };
  page.on('console', m => { if (m.type() === 'error' || m.type() === 'warning') log.messages.push(m.type() + ': ' + m.text()); });
  page.on('pageerror', e => log.messages.push('uncaught: ' + e.message));
  page.on('request', r => log.requests.push(r.url()));
  const url = 'file://' + path.resolve(file);
  await page.goto(url);
  await page.waitForFunction(() => document.body.dataset.ready, null, { timeout: 20000 });
  return { page, log, url };
}

// The page's own file, and data: URLs (the empty favicon), and nothing else.
function checkQuiet(name, { log, url }) {
  check(name + ': no console errors or warnings', log.messages.length === 0, log.messages.join('\n'));
  const other = log.requests.filter(u => u !== url && !u.startsWith('data:'));
  check(name + ': no network requests', other.length === 0, other.join('\n'));
}

const frames = page => page.evaluate(() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r))));

async function showView(page, view) {
  await page.click('#tab-' + view);
  await page.waitForFunction(v => (document.body.dataset.rendered || '').startsWith(v + ':') &&
    !document.querySelector('#view-' + v).hidden, view, { timeout: 10000 });
  const shown = await page.evaluate(() => [...document.querySelectorAll('main section')].filter(s => !s.hidden).map(s => s.id));
  check('tab "' + view + '" shows its view alone', shown.length === 1 && shown[0] === 'view-' + view, 'visible: ' + shown.join(', '));
}

async function shot(page, opts, name) {
  if (!opts.shots) return;
  fs.mkdirSync(opts.shots, { recursive: true });
  await page.mouse.move(0, 0);
  await page.evaluate(() => window.scrollTo(0, 0));   // the header is sticky
  await page.screenshot({ path: path.join(opts.shots, 'attention-' + name + '.png'), fullPage: true });
}

// ------------------------------------------------------------------ checks

// The base64 float32 data in the page against the JSON's numbers (6
// significant digits there).
async function checkEmbedded(page, cap) {
  const d = await page.evaluate(() => {
    const j = JSON.parse(document.querySelector('#capture').textContent);
    const f = s => { const b = Uint8Array.from(atob(s), c => c.charCodeAt(0)); return Array.from(new Float32Array(b.buffer)); };
    return { L: j.n_layers, H: j.n_heads, T: j.n_tokens, tokens: j.tokens, pieces: j.pieces, w: f(j.weights), s: j.scores ? f(j.scores) : null };
  });
  const T = cap.tokens.length, L = cap.n_layer, H = cap.n_head;
  check('page data: sizes and token ids as in the JSON', d.L === L && d.H === H && d.T === T && JSON.stringify(d.tokens) === JSON.stringify(cap.tokens));
  check('page data: token texts as in the JSON', JSON.stringify(d.pieces) === JSON.stringify(cap.pieces));
  let worst = 0, i = 0;
  for (let l = 0; l < L; l++) for (let h = 0; h < H; h++) for (let q = 0; q < T; q++) for (let k = 0; k <= q; k++, i++)
    worst = Math.max(worst, Math.abs(d.w[i] - cap.attention[l][h][q][k]));
  check('page data: weights equal the JSON (max diff ' + worst.toExponential(2) + ')', i === d.w.length && worst < 5e-6);
  if (cap.scores) {
    worst = 0; i = 0;
    for (let l = 0; l < L; l++) for (let h = 0; h < H; h++) for (let q = 0; q < T; q++) for (let k = 0; k < T; k++, i++) {
      const v = cap.scores[l][h][q][k];
      if (v !== null) worst = Math.max(worst, Math.abs(d.s[i] - v) / Math.max(1, Math.abs(v)));
    }
    check('page data: scores equal the JSON (max rel diff ' + worst.toExponential(2) + ')', d.s && i === d.s.length && worst < 5e-6);
  }
}

async function headCanvas(page) {
  const el = await page.$('#head-canvas');
  const g = await el.evaluate(c => ({ x1: +c.dataset.x1, x2: +c.dataset.x2, rowH: +c.dataset.rowH, pad: +c.dataset.pad, dpr: window.devicePixelRatio }));
  return { img: decodePng(await el.screenshot()), g };
}

// The pixel rows of the token rows: an element screenshot at a fractional
// position can catch a line of what borders it.
function tokenRows(img, g, T) {
  return [Math.ceil(g.pad * g.dpr), Math.min(img.height, Math.floor((g.pad + T * g.rowH) * g.dpr))];
}

// Non-white pixels strictly between the two token columns.
function linePixels(img, g, T) {
  const out = [], [y0, y1] = tokenRows(img, g, T);
  for (let y = y0; y < y1; y++) for (let x = Math.ceil((g.x1 + 3) * g.dpr); x < (g.x2 - 3) * g.dpr; x++) {
    const p = pixel(img, x, y);
    if (!isWhite(p)) out.push(p);
  }
  return out;
}

// A line of colour c at some opacity over white is white + a (c - white):
// its darkening (255 - p) points the same way as (255 - c).
function tintedLike(p, c) {
  const u = p.map(v => 255 - v), w = c.map(v => 255 - v);
  const dot = u[0] * w[0] + u[1] * w[1] + u[2] * w[2], nu = Math.hypot(...u), nw = Math.hypot(...w);
  return nu < 8 || dot / (nu * nw) > 0.97;
}

async function checkHeadView(page, cap, opts) {
  const T = cap.tokens.length;
  await showView(page, 'head');
  const nChips = await page.$$eval('#head-chips .chip', b => b.length);
  check('head view: one toggle per head (' + cap.n_head + ')', nChips === cap.n_head);
  let { img, g } = await headCanvas(page);
  const all = linePixels(img, g, T);
  check('head view: lines drawn between the token columns (' + all.length + ' px)', all.length > 500);
  await shot(page, opts, 'head');

  await page.click('#heads-none');
  await frames(page);
  ({ img, g } = await headCanvas(page));
  check('head view: no lines with every head off', linePixels(img, g, T).length === 0);

  // each head alone: its lines in its own colour
  for (let h = 0; h < cap.n_head; h++) {
    await page.dblclick('#head-chips .chip[data-head="' + h + '"]');
    await frames(page);
    const colour = hexRgb(await page.$eval('#head-chips .chip[data-head="' + h + '"] .sw', s => getComputedStyle(s).backgroundColor));
    ({ img, g } = await headCanvas(page));
    const px = linePixels(img, g, T), off = px.filter(p => !tintedLike(p, colour));
    check('head view: head ' + h + ' alone draws in its colour (' + px.length + ' px, ' + off.length + ' off-colour)', px.length > 100 && off.length <= px.length * 0.02);
  }
  await page.click('#heads-all');
  await frames(page);

  // hovering the last query: only its lines leave the left column
  const q = T - 1;
  const box = await (await page.$('#head-canvas')).boundingBox();
  await page.mouse.move(box.x + g.x1 / 2, box.y + g.pad + q * g.rowH + g.rowH / 2);
  await frames(page);
  const tipText = await page.$eval('#tip', t => t.style.display !== 'none' ? t.textContent : '');
  check('head view: hovering a token names it', tipText.includes(JSON.stringify(cap.pieces[q])), 'tooltip: ' + tipText);
  await page.$eval('#tip', t => { t.style.visibility = 'hidden'; });   // it covers the canvas
  ({ img, g } = await headCanvas(page));
  await page.$eval('#tip', t => { t.style.visibility = ''; });
  const x = Math.round((g.x1 + 2) * g.dpr), strays = [], [ya, yb] = tokenRows(img, g, T);
  let atQ = 0;
  for (let y = ya; y < yb; y++) {
    if (isWhite(pixel(img, x, y))) continue;
    const row = (y / g.dpr - g.pad) / g.rowH;
    if (Math.abs(row - (q + 0.5)) < 0.5) atQ++; else strays.push(y);
  }
  check('head view: hovering token ' + q + ' shows only its lines', atQ > 0 && strays.length === 0, 'stray rows at y = ' + strays.slice(0, 10).join(', '));
  await page.mouse.move(0, 0);
  await frames(page);
  ({ img, g } = await headCanvas(page));
  check('head view: leaving the token shows every line again', linePixels(img, g, T).length === all.length);

  // another layer draws other lines
  await page.selectOption('#layer', String(cap.n_layer - 1));
  await page.waitForFunction(l => (document.body.dataset.rendered || '').startsWith('head:' + l + ':'), cap.n_layer - 1);
  const a = (await headCanvas(page)).img, b0 = img;
  let differ = 0;
  for (let i = 0; i < Math.min(a.rgba.length, b0.rgba.length); i += 4) if (a.rgba[i] !== b0.rgba[i] || a.rgba[i + 1] !== b0.rgba[i + 1]) differ++;
  check('head view: the layer selector redraws (' + differ + ' px changed)', differ > 100);
}

async function checkModelView(page, cap, opts) {
  await showView(page, 'model');
  const n = cap.n_layer * cap.n_head;
  await page.waitForFunction(n => document.querySelectorAll('#model-grid canvas[data-drawn]').length === n, n, { timeout: 10000 })
    .catch(() => {});
  const drawn = await page.$$eval('#model-grid canvas[data-drawn]', c => c.length);
  check('model view: all ' + n + ' layer x head thumbnails drawn', drawn === n, drawn + ' drawn');
  // a thumbnail is dark where its weights are large: its diagonal-or-below
  // is not blank
  const el = await page.$('#model-grid canvas[data-layer="0"][data-head="0"]');
  const img = decodePng(await el.screenshot());
  let dark = 0;
  for (let i = 0; i < img.rgba.length; i += 4) if (img.rgba[i] < 200) dark++;
  check('model view: a thumbnail shows its pattern', dark > 20);
  await shot(page, opts, 'model');
  const L = cap.n_layer - 1, H = cap.n_head - 1;
  await page.click('#model-grid canvas[data-layer="' + L + '"][data-head="' + H + '"]');
  const sel = await page.evaluate(() => ({ layer: document.querySelector('#layer').value, head: document.querySelector('#head').value,
    marked: [...document.querySelectorAll('#model-grid canvas.sel')].map(c => c.dataset.layer + '/' + c.dataset.head) }));
  check('model view: a click selects that layer and head', sel.layer === String(L) && sel.head === String(H) && sel.marked.join() === L + '/' + H, JSON.stringify(sel));
  return { layer: L, head: H };
}

// Reads every cell's colour from a screenshot of a matrix canvas: at 5 px
// into the cell, clear of the number written in its middle.
async function matrixCells(page, sel) {
  const el = await page.$(sel + ' canvas');
  if (!el) return null;
  const g = await el.evaluate(c => ({ x0: +c.dataset.x0, y0: +c.dataset.y0, cell: +c.dataset.cell, n: +c.dataset.n, t: +c.dataset.t, dpr: window.devicePixelRatio }));
  const img = decodePng(await el.screenshot());
  const at = (q, k) => pixel(img, (g.x0 + k * g.cell + 5) * g.dpr, (g.y0 + q * g.cell + 5) * g.dpr);
  return { g, at };
}

// Darker exactly where larger: every pair of cells whose values differ by
// more than tol (of the range) is ordered the same way by luminance.
function monotone(cells, tol) {
  const vs = cells.map(c => c.v), lo = Math.min(...vs), hi = Math.max(...vs), span = hi - lo || 1;
  let pairs = 0;
  const bad = [];
  for (const a of cells) for (const b of cells) {
    if (a.v - b.v <= tol * span) continue;
    pairs++;
    if (!(luma(a.p) < luma(b.p))) bad.push('v ' + a.v.toFixed(4) + ' luma ' + luma(a.p).toFixed(1) + ' vs v ' + b.v.toFixed(4) + ' luma ' + luma(b.p).toFixed(1));
  }
  return { pairs, bad };
}

async function checkMatrixView(page, cap, sel, opts) {
  await showView(page, 'matrix');
  const T = cap.tokens.length, W = cap.attention[sel.layer][sel.head];
  const w = await matrixCells(page, '#m-weights');
  check('matrix view: softmax matrix drawn, one cell per token pair', w && w.g.n === T && w.g.t === T);
  if (!w) return;
  const lower = [], upper = [];
  for (let q = 0; q < T; q++) for (let k = 0; k < T; k++) (k <= q ? lower : upper).push({ v: W[q][k], p: w.at(q, k) });
  const m = monotone(lower, 0.02);
  check('matrix view: softmax cell colours darker where the JSON weight is larger (' + m.pairs + ' pairs)', m.pairs > 20 && m.bad.length === 0, m.bad.join('\n'));
  check('matrix view: cells above the diagonal (weight 0) are the lightest', upper.every(c => luma(c.p) >= Math.max(...lower.map(d => luma(d.p))) - 1));
  const nums = await page.$eval('#m-weights canvas', c => c.dataset.cell >= 30);
  check('matrix view: cells large enough for their numbers (<= 16 tokens)', nums);
  if (cap.scores) {
    const S = cap.scores[sel.layer][sel.head];
    const s = await matrixCells(page, '#m-scores'), mk = await matrixCells(page, '#m-masked');
    check('matrix view: scores and masked matrices drawn', !!s && !!mk);
    if (s && mk) {
      // raw scores: every cell, the masked ones included (the JSON has
      // them as null: their order comes from the page's own data)
      const raw = await page.evaluate(([l, h]) => {
        const j = JSON.parse(document.querySelector('#capture').textContent), T = j.n_tokens;
        const b = Uint8Array.from(atob(j.scores), c => c.charCodeAt(0)), f = new Float32Array(b.buffer);
        return Array.from(f.subarray((l * j.n_heads + h) * T * T, (l * j.n_heads + h + 1) * T * T));
      }, [sel.layer, sel.head]);
      const rs = [];
      for (let q = 0; q < T; q++) for (let k = 0; k < T; k++) rs.push({ v: raw[q * T + k], p: s.at(q, k) });
      const r = monotone(rs, 0.02);
      check('matrix view: score cell colours darker where the score is larger (' + r.pairs + ' pairs)', r.pairs > 20 && r.bad.length === 0, r.bad.join('\n'));
      const ms = [], masked = [];
      for (let q = 0; q < T; q++) for (let k = 0; k < T; k++) (k <= q ? ms : masked).push({ v: S[q][k], p: mk.at(q, k) });
      const mm = monotone(ms, 0.02);
      check('matrix view: masked-matrix colours follow the JSON scores (' + mm.pairs + ' pairs)', mm.pairs > 10 && mm.bad.length === 0, mm.bad.join('\n'));
      const grey = masked.filter(c => Math.abs(c.p[0] - 226) > 6 || Math.abs(c.p[1] - 228) > 6 || Math.abs(c.p[2] - 232) > 6);
      check('matrix view: masked cells (key after query) are the mask grey', masked.length > 0 && grey.length === 0, grey.slice(0, 5).map(c => c.p.join(',')).join('\n'));
    }
  }
  await shot(page, opts, 'matrix');
}

function ranked(row) {
  return [...row.keys()].sort((a, b) => row[b] - row[a] || a - b);
}

async function checkAttendsView(page, cap, sel, opts) {
  await showView(page, 'attends');
  const T = cap.tokens.length, q = T - 1;
  await page.click('#tokens-pick button[data-i="' + q + '"]');
  await page.waitForFunction(() => document.querySelector('#rank-mean tr'));
  const mean = [];
  for (let k = 0; k <= q; k++) {
    let s = 0;
    for (let h = 0; h < cap.n_head; h++) s += cap.attention[sel.layer][h][q][k];
    mean.push(s / cap.n_head);
  }
  const one = cap.attention[sel.layer][sel.head][q].slice(0, q + 1);
  const rows = await page.evaluate(() => ['#rank-head', '#rank-mean'].map(t =>
    [...document.querySelectorAll(t + ' tr[data-key]')].map(r => ({ k: +r.dataset.key, v: +r.cells[3].textContent }))));
  const agrees = (rs, row) => rs.length === row.length &&
    rs.every((r, i) => Math.abs(r.v - row[r.k]) < 6e-4 && (i === 0 || rs[i - 1].v >= r.v)) &&
    rs.every((r, i) => Math.abs(row[r.k] - row[ranked(row)[i]]) < 1e-6);
  check('attends to: token ' + q + ' ranks its ' + (q + 1) + ' keys by weight in head ' + sel.head, agrees(rows[0], one), JSON.stringify(rows[0]));
  check('attends to: and by the mean over the layer\'s heads', agrees(rows[1], mean), JSON.stringify(rows[1]));
  const future = await page.$$eval('#sentence span.future', s => s.length);
  check('attends to: no later tokens for the last one', future === 0);
  await page.click('#tokens-pick button[data-i="1"]');
  const f2 = await page.$$eval('#sentence span.future', s => s.length);
  const n2 = await page.$$eval('#rank-mean tr[data-key]', r => r.length);
  check('attends to: token 1 sees 2 keys, later tokens marked masked', f2 === T - 2 && n2 === 2);
  await page.click('#tokens-pick button[data-i="' + q + '"]');
  await shot(page, opts, 'attends');
}

// ------------------------------------------------------------------- main

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const cap = JSON.parse(fs.readFileSync(opts.json, 'utf8'));
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'gpt2c-chromium-'));
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath: opts.chromium, headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
    viewport: { width: 1440, height: 900 }, deviceScaleFactor: 1,
  });
  try {
    const p = await openPage(browser, opts.page);
    const summary = await p.page.textContent('#summary');
    check('page: the capture is shown (' + summary + ')', summary.startsWith(cap.tokens.length + ' tokens') && summary.includes(cap.n_layer + ' layers') &&
      summary.includes(cap.n_head + ' heads') && (await p.page.$$('.banner')).length === 0);
    await checkEmbedded(p.page, cap);
    await checkHeadView(p.page, cap, opts);
    const sel = await checkModelView(p.page, cap, opts);
    await checkMatrixView(p.page, cap, sel, opts);
    await checkAttendsView(p.page, cap, sel, opts);
    checkQuiet('page', p);
    await p.page.close();

    if (opts.noScoresPage) {
      const n = await openPage(browser, opts.noScoresPage);
      await showView(n.page, 'matrix');
      const msg = await n.page.textContent('#m-scores');
      check('page without scores: says it has none and cannot recompute q.k', /no raw scores/i.test(msg) && /cannot recompute/i.test(msg), msg);
      check('page without scores: the softmax matrix is still drawn', !!(await n.page.$('#m-weights canvas')));
      checkQuiet('page without scores', n);
      await n.page.close();
    }
    if (opts.demo) {
      const d = await openPage(browser, opts.demo);
      const banner = await d.page.textContent('#banners');
      check('source page (no capture): shows its demo data', /demo data/i.test(banner));
      for (const v of ['model', 'matrix', 'attends', 'head']) await showView(d.page, v);
      checkQuiet('source page', d);
      await d.page.close();
    }
  } finally {
    await browser.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
  console.log('# ' + nChecks + ' checks, ' + nFailed + ' failed');
  return nFailed ? 1 : 0;
}

main().then(code => process.exit(code), e => {
  console.log('not ok - the browser test ran to the end');
  console.log('    # ' + String(e && e.stack || e).split('\n').slice(0, 8).join('\n    # '));
  process.exit(1);
});
