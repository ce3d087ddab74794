// The search page of `hybrid-retrieval serve`: plain JavaScript, no build step. Every URL is relative, so the page
// works behind a reverse proxy under any path. Text from the server is shown with textContent, never as HTML.
'use strict';
const $ = (id) => document.getElementById(id);
const state = { query: null, last: null, roundTrip: 0, defaults: {} };   // query: {kind: 'text'|'like'|'upload', ...}

function showError(message) { $('error').textContent = message; $('error').hidden = false; }
function clearError() { $('error').hidden = true; $('error').textContent = ''; }
function el(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  for (const c of children) node.append(c);
  return node;
}
const ms = (s) => `${Math.round(s * 1000)} ms`;
// a model named by a local path is shown by its last part (the full name is in the tooltip)
const modelName = (id) => (id && id.split('/').length > 2) ? id.split('/').filter(Boolean).pop() : id;
const num = (x) => (x === null || x === undefined) ? '–' : Number(x).toFixed(3);

async function api(path, options) {
  let reply;
  try { reply = await fetch(path, options); }
  catch (e) { throw new Error(`cannot reach the server (${e.message})`); }
  let body = null;
  try { body = await reply.json(); } catch (e) { /* not JSON: reported below */ }
  if (!reply.ok) throw new Error(body && body.detail ? String(body.detail) : `HTTP ${reply.status} ${reply.statusText}`);
  if (body === null) throw new Error('the server sent a reply that is not JSON');
  return body;
}

const FIELDS = [['k1', 'k1'], ['k2', 'k2'], ['k_itm', 'k-itm'], ['mmr_lambda', 'mmr'], ['min_score', 'min-score']];

function settings() {
  const p = new URLSearchParams();
  for (const [name, id] of FIELDS) {
    const v = $(id).value.trim();
    if (v !== '') p.set(name, v);
  }
  if ($('fusion').value && $('fusion').value !== state.defaults.fusion) p.set('fusion', $('fusion').value);
  if (!$('rerank').checked) p.set('rerank', 'false');
  return p;
}

function keepInUrl() {
  const p = settings();
  for (const k of ['k1', 'k2']) if (p.get(k) === String(state.defaults[k])) p.delete(k);
  const q = state.query;
  if (q.kind === 'text') p.set('q', q.text);
  else if (q.kind === 'like') p.set('like', q.id);
  if ($('compare').checked) p.set('compare', '1');
  history.replaceState(null, '', p.toString() ? `?${p}` : location.pathname);
}

async function search() {
  const q = state.query;
  if (!q) return;
  clearError();
  const p = settings();
  $('status').textContent = 'searching…';
  const started = performance.now();
  let response;
  try {
    if (q.kind === 'text') { p.set('q', q.text); response = await api(`api/search?${p}`); }
    else if (q.kind === 'like') { p.set('id', q.id); response = await api(`api/search/image?${p}`); }
    else {
      const form = new FormData();
      form.append('image', q.blob, q.name);
      response = await api(`api/search/image?${p}`, { method: 'POST', body: form });
    }
  } catch (e) {
    $('status').textContent = '';
    showError(e.message);
    return;
  }
  state.last = response;
  state.roundTrip = (performance.now() - started) / 1000;
  render(response);
  keepInUrl();
}

function movement(r) {
  const d = r.stage1_rank - r.rank;
  const kind = d > 0 ? 'up' : d < 0 ? 'down' : 'same';
  const arrow = d > 0 ? ` ▲${d}` : d < 0 ? ` ▼${-d}` : '';
  const first = state.last && state.last.stage1 === 'itc' ? 'ITC' : 'CLIP';   // what found the candidates
  const itc = r.itc_rank && first === 'CLIP' ? ` → ITC #${r.itc_rank}` : '';   // the cascade's middle step
  const title = r.placed_by === 'itc' ? 'past the ITM shortlist: placed by ITC' : '';
  return el('span', { className: `move ${kind}`, title,
                      textContent: `${first} #${r.stage1_rank}${itc} → #${r.rank}${arrow}` });
}

function explain(r) {
  const rows = Object.entries(r.contributions).map(([k, v]) => el('tr', {}, el('td', { textContent: k }),
                                                                        el('td', { textContent: num(v) })));
  if (r.mmr_penalty !== null) rows.push(el('tr', {}, el('td', { textContent: 'MMR penalty' }),
                                          el('td', { textContent: `−${num(r.mmr_penalty)}` })));
  return el('details', {}, el('summary', { textContent: 'explain' }), el('table', {}, ...rows));
}

function card(r, pane) {
  const node = el('div', { className: 'card' });
  node.dataset.imageId = r.image_id;
  node.dataset.rank = pane === 'clip' ? r.stage1_rank : r.rank;
  node.append(el('img', { src: `api/images/${encodeURIComponent(r.image_id)}?size=256`, alt: r.image_id,
                          loading: 'lazy' }));
  node.append(el('div', { className: 'id', textContent: r.image_id, title: r.image_id }));
  if (pane === 'clip') {
    node.append(el('div', { className: 'rank', textContent: `#${r.stage1_rank}` }));
    node.append(el('div', { textContent: `CLIP ${num(r.stage1_score)}` }));
    node.append(el('div', { className: 'muted', textContent: r.final_rank ? `hybrid #${r.final_rank}` : 'not in the hybrid top' }));
  } else {
    node.append(el('div', {}, el('span', { className: 'rank', textContent: `#${r.rank} ` }), movement(r)));
    node.append(el('div', { textContent: `score ${num(r.score)} · CLIP ${num(r.stage1_score)} · cross ${num(r.stage2_score)}` }));
    node.append(explain(r));
  }
  const like = el('button', { type: 'button', className: 'like', textContent: 'more like this' });
  like.addEventListener('click', () => { $('q').value = ''; state.query = { kind: 'like', id: r.image_id }; search(); });
  node.append(like);
  return node;
}

function render(response) {
  const hybrid = response.results;
  $('results').replaceChildren(...hybrid.map((r) => card(r, 'hybrid')));
  const compare = $('compare').checked;
  $('clip-pane').hidden = !compare;
  $('hybrid-title').hidden = !compare;
  if (compare) {
    const finalRank = Object.fromEntries(hybrid.map((r) => [r.image_id, r.rank]));
    const clip = [...response.candidates].sort((a, b) => a.stage1_rank - b.stage1_rank).slice(0, response.k2)
      .map((c) => ({ ...c, final_rank: finalRank[c.image_id] }));
    $('clip-results').replaceChildren(...clip.map((c) => card(c, 'clip')));
  }
  const parts = [`${hybrid.length} of ${response.candidates.length} candidates`,
                 `stage 1 ${ms(response.stage1_s)}`, `stage 2 ${ms(response.stage2_s)}`,
                 `server ${ms(response.server.total_s)} (batch of ${response.server.batch})`,
                 `round trip ${ms(state.roundTrip)}`];
  if (response.cached) parts.push('from the cache');
  if (response.below_min_score) parts.push(`${response.below_min_score} below the minimum score hidden`);
  if (response.fallback) parts.push(`CLIP ranking only: ${response.fallback_reason}`);
  $('status').textContent = parts.join(' · ');
  $('actions').hidden = false;
}

function searchText() {
  const text = $('q').value;
  state.query = { kind: 'text', text };
  search();
}

function searchImage(file) {
  if (!file) return;
  if (!file.type.startsWith('image/')) { showError(`${file.name || 'that file'} is not an image`); return; }
  $('q').value = '';
  state.query = { kind: 'upload', blob: file, name: file.name || 'pasted image' };
  search();
}

function more() {
  const k2 = Number($('k2').value || state.last.k2) + 10;
  $('k2').value = k2;
  if (Number($('k1').value || state.last.k1) < k2) $('k1').value = k2;
  search();
}

function exportJson() {
  const blob = new Blob([JSON.stringify(state.last, null, 2)], { type: 'application/json' });
  const a = el('a', { href: URL.createObjectURL(blob), download: 'hybrid-retrieval-results.json' });
  a.click();
  URL.revokeObjectURL(a.href);
}

async function start() {
  try {
    const health = await api('api/health');
    const d = state.defaults = health.defaults;
    $('health').textContent = `${health.gallery.toLocaleString()} images · ${health.index_type} index · ` +
      `${modelName(health.models.stage1)} → ${modelName(health.models.stage2) || 'no re-ranker'} · ${health.device}`;
    $('health').title = `stage 1: ${health.models.stage1}\nstage 2: ${health.models.stage2 || 'none'}`;
    $('fusion').replaceChildren(...health.fusions.map((f) => el('option', { value: f, textContent: f })));
    $('fusion').value = d.fusion;
    $('k1').placeholder = d.k1; $('k2').placeholder = d.k2; if (d.k_itm) $('k-itm').placeholder = d.k_itm;
    if (!health.models.stage2) { $('rerank').checked = false; $('rerank').disabled = true; }
  } catch (e) {
    $('health').textContent = 'server unavailable';
    showError(e.message);
  }
  const p = new URLSearchParams(location.search);
  for (const [name, id] of FIELDS)
    if (p.has(name)) $(id).value = p.get(name);
  if (p.has('fusion')) $('fusion').value = p.get('fusion');
  if (p.get('rerank') === 'false') $('rerank').checked = false;
  if (p.get('compare') === '1') $('compare').checked = true;
  if (p.has('q')) { $('q').value = p.get('q'); searchText(); }
  else if (p.has('like')) { state.query = { kind: 'like', id: p.get('like') }; search(); }
}

$('search-form').addEventListener('submit', (e) => { e.preventDefault(); searchText(); });
$('file').addEventListener('change', (e) => { searchImage(e.target.files[0]); e.target.value = ''; });
$('compare').addEventListener('change', () => { if (state.last) { render(state.last); keepInUrl(); } });
$('more').addEventListener('click', more);
$('export').addEventListener('click', exportJson);
document.addEventListener('keydown', (e) => {
  const typing = ['INPUT', 'TEXTAREA', 'SELECT'].includes(document.activeElement.tagName);
  if (e.key === '/' && !typing) { e.preventDefault(); $('q').focus(); $('q').select(); }
});
document.addEventListener('dragover', (e) => { e.preventDefault(); document.body.classList.add('dragging'); });
document.addEventListener('dragleave', () => document.body.classList.remove('dragging'));
document.addEventListener('drop', (e) => {
  e.preventDefault();
  document.body.classList.remove('dragging');
  searchImage(e.dataTransfer.files[0]);
});
document.addEventListener('paste', (e) => {
  const item = [...e.clipboardData.items].find((i) => i.kind === 'file' && i.type.startsWith('image/'));
  if (item) { e.preventDefault(); searchImage(item.getAsFile()); }
});
start();
