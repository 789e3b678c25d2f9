// agentfleet dashboard: plain ES2020, no build step, no external requests.
//
// Data comes from the JSON API under /v1 with `Authorization: Bearer TOKEN`. The token is read from
// the URL fragment `#token=...` once (then removed from the address bar) and kept in sessionStorage;
// without one, or when the server answers 401, a sign-in form asks for it. Hash routes: `#/runs`
// (the list and the new-run form) and `#/runs/{id}` (one run, live from its event stream, which is
// read with fetch() because EventSource cannot send the Authorization header).
//
// Every piece of data reaches the page through textContent / setAttribute (the `h` and `svg`
// helpers below): nothing is ever parsed as HTML.
'use strict';

(() => {
  const TOKEN_KEY = 'agentfleet.token';
  const PAGE_SIZE = 25;
  const REFRESH_MS = 2000;
  const TERMINAL = new Set(['succeeded', 'failed', 'interrupted', 'cancelled', 'stopped']);
  const STATUS_ORDER = ['running', 'queued', 'succeeded', 'failed', 'cancelled', 'interrupted', 'stopped'];
  const PALETTE = ['#4e79a7', '#f28e2b', '#59a14f', '#b07aa1', '#76b7b2', '#edc948', '#9c755f', '#ff9da7',
    '#5f9ed1', '#8cd17d', '#c85200', '#a3acb9'];
  const UNKNOWN_AGENT = '#9aa1ae';
  const STREAM_IDLE_MS = 45000; // the server sends a keep-alive comment every 15 s of silence
  const MAX_LANES = 800;

  // ---------------------------------------------------------------------------------------
  // DOM helpers (text only, never HTML)

  const $ = (sel, root = document) => root.querySelector(sel);
  const SVGNS = 'http://www.w3.org/2000/svg';

  function setAttrs(el, attrs) {
    if (!attrs) return;
    for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') el.setAttribute('class', v);
      else if (k === 'text') el.textContent = String(v);
      else if (k === 'dataset') Object.assign(el.dataset, v);
      else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
  }

  function addChildren(el, children) {
    for (const c of children.flat(Infinity)) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
  }

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    setAttrs(el, attrs);
    addChildren(el, children);
    return el;
  }

  function svg(tag, attrs, ...children) {
    const el = document.createElementNS(SVGNS, tag);
    setAttrs(el, attrs);
    addChildren(el, children);
    return el;
  }

  function setText(sel, value) {
    const el = typeof sel === 'string' ? $(sel) : sel;
    if (el && el.textContent !== String(value)) el.textContent = String(value);
  }

  function show(el, visible) {
    const node = typeof el === 'string' ? $(el) : el;
    if (node) node.hidden = !visible;
  }

  // ---------------------------------------------------------------------------------------
  // Formatting

  const isNum = (v) => typeof v === 'number' && Number.isFinite(v);

  function fmtDur(s) {
    if (!isNum(s)) return '–';
    if (s < 0) s = 0;
    if (s === 0) return '0s';
    if (s < 1) return `${Math.round(s * 1000)}ms`;
    if (s < 60) return `${s.toFixed(1)}s`;
    if (s < 3600) {
      const m = Math.floor(s / 60);
      return `${m}m${String(Math.floor(s - m * 60)).padStart(2, '0')}s`;
    }
    const hr = Math.floor(s / 3600);
    return `${hr}h${String(Math.floor((s - hr * 3600) / 60)).padStart(2, '0')}m`;
  }

  function fmtAxis(s, step) {
    if (step < 1) return `${s.toFixed(step < 0.1 ? 2 : 1)}s`;
    if (step >= 60 && s >= 60) {
      const m = Math.floor(s / 60);
      const rest = Math.round(s - m * 60);
      return rest ? `${m}m${String(rest).padStart(2, '0')}` : `${m}m`;
    }
    return `${Math.round(s)}s`;
  }

  function fmtNum(n) {
    if (!isNum(n)) return '–';
    if (Math.abs(n) >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
    if (Math.abs(n) >= 1e4) return `${(n / 1e3).toFixed(1)}k`;
    return String(Math.round(n));
  }

  function fmtCost(v) {
    if (!isNum(v) || v <= 0) return null;
    if (v < 0.01) return `$${v.toFixed(4)}`;
    if (v < 10) return `$${v.toFixed(3)}`;
    return `$${v.toFixed(2)}`;
  }

  function fmtPct(v) { return isNum(v) ? `${Math.round(v * 100)}%` : '–'; }

  const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23' });
  const dateFmt = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });

  function fmtWhen(unix) {
    if (!isNum(unix)) return '–';
    const d = new Date(unix * 1000);
    const today = new Date();
    return d.toDateString() === today.toDateString() ? timeFmt.format(d) : dateFmt.format(d);
  }

  function fmtAgo(unix) {
    if (!isNum(unix)) return '';
    const s = Math.max(0, serverNow() - unix);
    if (s < 5) return 'just now';
    if (s < 60) return `${Math.floor(s)}s ago`;
    if (s < 3600) return `${Math.floor(s / 60)}m ago`;
    if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
    return `${Math.floor(s / 86400)}d ago`;
  }

  function humanize(kind) {
    const s = String(kind || '').replace(/[_-]+/g, ' ').trim();
    return s ? s[0].toUpperCase() + s.slice(1) : 'Bottleneck';
  }

  function niceStep(span, count) {
    if (!(span > 0) || !(count > 0)) return 1;
    const raw = span / count;
    const mag = 10 ** Math.floor(Math.log10(raw));
    const norm = raw / mag;
    const step = (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * mag;
    return step;
  }

  function timeStep(span, count) {
    // Seconds-friendly steps: 1 2 5 10 15 30 s, then minutes.
    const raw = span / Math.max(1, count);
    if (raw < 1) return niceStep(span, count);
    for (const s of [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200]) if (s >= raw) return s;
    return niceStep(span, count);
  }

  function quantile(sorted, q) {
    if (!sorted.length) return NaN;
    const pos = (sorted.length - 1) * q;
    const lo = Math.floor(pos);
    const hi = Math.ceil(pos);
    return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
  }

  function truncate(text, max) {
    const s = String(text);
    return s.length <= max ? s : `${s.slice(0, Math.max(1, max - 1))}…`;
  }

  // ---------------------------------------------------------------------------------------
  // The API

  const state = { token: null, page: null, workflows: null, authFailed: false };
  let clockSkew = 0; // seconds to add to the browser's clock to get the server's

  function serverNow() { return Date.now() / 1000 + clockSkew; }

  function noteServerClock(res, sentAt) {
    const date = res.headers.get('Date');
    if (!date) return;
    const server = Date.parse(date) / 1000;
    if (!Number.isFinite(server)) return;
    const local = (sentAt + Date.now()) / 2000;
    const skew = server + 0.5 - local; // the Date header is truncated to whole seconds
    clockSkew = Math.abs(skew) > 2 ? skew : 0;
  }

  class ApiError extends Error {
    constructor(status, detail, retryAfter) {
      super(typeof detail === 'string' ? detail : `HTTP ${status}`);
      this.status = status;
      this.detail = detail;
      this.retryAfter = retryAfter;
    }
  }

  function authHeaders(extra) {
    return Object.assign({ Authorization: `Bearer ${state.token}` }, extra || {});
  }

  async function api(path, { method = 'GET', body, signal, quiet401 = false } = {}) {
    const headers = authHeaders({ Accept: 'application/json' });
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const sentAt = Date.now();
    const res = await fetch(path, {
      method, headers, signal, cache: 'no-store', credentials: 'same-origin',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    noteServerClock(res, sentAt);
    const text = await res.text();
    let data = null;
    if (text) {
      try { data = JSON.parse(text); } catch (_) { data = text; }
    }
    if (res.status === 401 && !quiet401) unauthorized();
    if (!res.ok) {
      const detail = data && typeof data === 'object' && 'detail' in data ? data.detail : (text || res.statusText);
      throw new ApiError(res.status, detail, res.headers.get('Retry-After'));
    }
    clearBanner();
    return data;
  }

  function describeError(err) {
    if (!err) return 'unknown error';
    if (err instanceof ApiError) {
      let msg;
      if (Array.isArray(err.detail)) msg = err.detail.map((d) => (d && d.msg) || JSON.stringify(d)).join('; ');
      else if (typeof err.detail === 'string') msg = err.detail;
      else msg = JSON.stringify(err.detail);
      if (err.status === 403) msg = `this token may not do that (403): ${msg}`;
      else if (err.status === 429 || err.status === 503) msg = `${msg}${err.retryAfter ? ` (retry in ${err.retryAfter}s)` : ''}`;
      else msg = `${msg} (HTTP ${err.status})`;
      return msg;
    }
    if (err.name === 'TypeError') return 'cannot reach the service';
    return err.message || String(err);
  }

  const isAbort = (err) => err && (err.name === 'AbortError' || err.code === 20);

  function banner(msg) {
    const el = $('#banner');
    setText(el, msg);
    show(el, true);
  }

  function clearBanner() { show('#banner', false); }

  function sleep(ms, signal) {
    return new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      if (signal) signal.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
    });
  }

  // ---------------------------------------------------------------------------------------
  // Token, sign-in and routing

  function takeTokenFromHash() {
    const hash = location.hash || '';
    const m = hash.match(/[#&?]token=([^&]*)/);
    if (!m) return;
    let token = '';
    try { token = decodeURIComponent(m[1]); } catch (_) { token = m[1]; }
    let rest = hash.replace(m[0], m[0][0] === '#' ? '#' : '').replace(/^#[&?]/, '#');
    if (rest === '#' || rest === '') rest = '#/runs';
    history.replaceState(null, '', location.pathname + location.search + rest);
    if (token) {
      state.token = token;
      try { sessionStorage.setItem(TOKEN_KEY, token); } catch (_) { /* storage disabled: keep it in memory */ }
    }
  }

  function loadToken() {
    if (state.token) return;
    try { state.token = sessionStorage.getItem(TOKEN_KEY); } catch (_) { state.token = null; }
  }

  function forgetToken() {
    state.token = null;
    try { sessionStorage.removeItem(TOKEN_KEY); } catch (_) { /* ignore */ }
  }

  function unauthorized() {
    if (state.authFailed) return;
    state.authFailed = true;
    forgetToken();
    showSignIn('The service did not accept this token (401). Paste a valid one.');
  }

  function leavePage() {
    if (state.page) {
      state.page.unmount();
      state.page = null;
    }
  }

  function showSignIn(error) {
    leavePage();
    clearBanner();
    for (const id of ['#page-runs', '#page-run']) show(id, false);
    show('#signin', true);
    show('#sign-out', false);
    show('.nav', false);
    const err = $('#signin-error');
    setText(err, error || '');
    show(err, Boolean(error));
    const input = $('#signin-token');
    input.setAttribute('aria-invalid', error ? 'true' : 'false');
    input.focus();
  }

  async function submitSignIn(ev) {
    ev.preventDefault();
    const input = $('#signin-token');
    const token = input.value.trim();
    const err = $('#signin-error');
    if (!token) {
      setText(err, 'Enter a token.');
      show(err, true);
      return;
    }
    const button = $('#signin-submit');
    button.disabled = true;
    state.token = token;
    try {
      state.workflows = (await api('/v1/workflows', { quiet401: true })).workflows || [];
      try { sessionStorage.setItem(TOKEN_KEY, token); } catch (_) { /* ignore */ }
      state.authFailed = false;
      input.value = '';
      input.setAttribute('aria-invalid', 'false');
      show(err, false);
      route();
    } catch (e) {
      state.token = null;
      const msg = e instanceof ApiError && e.status === 401
        ? 'That token was not accepted (401). Check it and try again.'
        : `Could not sign in: ${describeError(e)}`;
      setText(err, msg);
      show(err, true);
      input.setAttribute('aria-invalid', 'true');
    } finally {
      button.disabled = false;
    }
  }

  function parseRoute() {
    const path = (location.hash || '').replace(/^#\/?/, '').split('?')[0];
    const parts = path.split('/').filter(Boolean);
    if (parts[0] === 'runs' && parts[1]) {
      let id = parts[1];
      try { id = decodeURIComponent(id); } catch (_) { /* keep it raw */ }
      return { page: 'run', id };
    }
    return { page: 'runs' };
  }

  function route() {
    if (/[#&?]token=/.test(location.hash)) takeTokenFromHash();
    leavePage();
    if (!state.token) {
      showSignIn(null);
      return;
    }
    state.authFailed = false;
    show('#signin', false);
    show('#sign-out', true);
    show('.nav', true);
    const r = parseRoute();
    $('#nav-runs').classList.toggle('active', r.page === 'runs');
    state.page = r.page === 'run' ? new RunPage(r.id) : new RunsPage();
    state.page.mount();
  }

  // ---------------------------------------------------------------------------------------
  // Status badges

  function badge(status, el) {
    const node = el || h('span');
    node.className = `badge s-${String(status || 'unknown').replace(/[^a-z]/g, '')}`;
    node.textContent = status || '';
    return node;
  }

  function countsOf(counts) {
    const c = counts || {};
    let total = 0;
    for (const v of Object.values(c)) if (isNum(v)) total += v;
    return { done: c.done || 0, failed: c.failed || 0, running: c.running || 0, total };
  }

  // ---------------------------------------------------------------------------------------
  // Page 1: the runs list and the new-run form

  class RunsPage {
    constructor() {
      this.runs = [];
      this.next = null;
      this.known = null; // ids seen, to flash new rows
      this.timers = [];
      this.busy = false;
      this.samples = []; // [time, finished tasks] for the tasks/s figure
      this.ctl = new AbortController();
      this.inputsEdited = false;
    }

    mount() {
      show('#page-runs', true);
      show('#page-run', false);
      document.title = 'Runs · agentfleet';
      const form = $('#new-run-form');
      this.onSubmit = (ev) => { ev.preventDefault(); this.submit(); };
      this.onWorkflow = () => this.pickWorkflow();
      this.onMore = () => { this.loadMore(); };
      this.onRowClick = (ev) => {
        const row = ev.target.closest('tr[data-run-id]');
        if (row && !ev.target.closest('a')) location.hash = `#/runs/${encodeURIComponent(row.dataset.runId)}`;
      };
      this.onRowKey = (ev) => {
        const row = ev.target.closest('tr[data-run-id]');
        if (row && ev.key === 'Enter') location.hash = `#/runs/${encodeURIComponent(row.dataset.runId)}`;
      };
      form.addEventListener('submit', this.onSubmit);
      $('#nr-workflow').addEventListener('change', this.onWorkflow);
      $('#load-more').addEventListener('click', this.onMore);
      $('#runs-body').addEventListener('click', this.onRowClick);
      $('#runs-body').addEventListener('keydown', this.onRowKey);
      this.clearFormErrors();
      this.renderRuns();
      this.loadWorkflows();
      this.refresh();
      this.timers.push(setInterval(() => this.refresh(), REFRESH_MS));
      this.timers.push(setInterval(() => this.tickDurations(), 500));
    }

    unmount() {
      this.ctl.abort();
      for (const t of this.timers) clearInterval(t);
      $('#new-run-form').removeEventListener('submit', this.onSubmit);
      $('#nr-workflow').removeEventListener('change', this.onWorkflow);
      $('#load-more').removeEventListener('click', this.onMore);
      $('#runs-body').removeEventListener('click', this.onRowClick);
      $('#runs-body').removeEventListener('keydown', this.onRowKey);
    }

    async refresh() {
      if (this.busy) return;
      this.busy = true;
      try {
        const limit = Math.min(Math.max(PAGE_SIZE, this.runs.length), 100);
        const data = await api(`/v1/runs?limit=${limit}`, { signal: this.ctl.signal });
        const fresh = data.runs || [];
        this.loaded = true;
        if (this.runs.length <= limit) {
          this.runs = fresh;
          this.next = data.next_cursor || null;
        } else {
          // More is loaded than one request returns: keep the older rows beyond the fresh page.
          const ids = new Set(fresh.map((r) => r.id));
          const oldest = fresh.length ? fresh[fresh.length - 1].created_at : Infinity;
          this.runs = fresh.concat(this.runs.filter((r) => !ids.has(r.id) && !(r.created_at > oldest)));
        }
        await this.loadMetrics();
        this.renderRuns();
      } catch (e) {
        if (!isAbort(e) && !(e instanceof ApiError && e.status === 401)) banner(`Runs: ${describeError(e)}. Retrying…`);
      } finally {
        this.busy = false;
      }
    }

    async loadMetrics() {
      // Service-wide figures from GET /v1/stats (runs by status over the whole database, runners,
      // open streams); without it the strip counts the runs listed.
      if (this.noMetrics) return;
      try {
        const sentAt = Date.now();
        const res = await fetch('/v1/stats', { headers: authHeaders({ Accept: 'application/json' }), signal: this.ctl.signal, cache: 'no-store' });
        noteServerClock(res, sentAt);
        if (!res.ok) { this.noMetrics = true; this.metrics = null; return; }
        const body = await res.json();
        this.metrics = { runs: body.runs || {}, runners: body.runners, streams: body.streams };
      } catch (e) {
        if (isAbort(e)) throw e;
        this.metrics = null;
      }
    }

    async loadMore() {
      if (!this.next) return;
      const button = $('#load-more');
      button.disabled = true;
      try {
        const data = await api(`/v1/runs?limit=${PAGE_SIZE}&cursor=${encodeURIComponent(this.next)}`,
          { signal: this.ctl.signal });
        const ids = new Set(this.runs.map((r) => r.id));
        this.runs = this.runs.concat((data.runs || []).filter((r) => !ids.has(r.id)));
        this.next = data.next_cursor || null;
        this.renderRuns();
      } catch (e) {
        if (!isAbort(e)) banner(`Load more: ${describeError(e)}`);
      } finally {
        button.disabled = false;
      }
    }

    renderRuns() {
      const body = $('#runs-body');
      const rows = [];
      const firstLoad = this.known === null; // rows of the first answer are not "new"
      const known = this.known || new Set();
      for (const r of this.runs) {
        const c = countsOf(r.counts);
        const isNew = !firstLoad && !known.has(r.id);
        known.add(r.id);
        const doneShare = c.total ? (c.done / c.total) * 100 : 0;
        const failShare = c.total ? (c.failed / c.total) * 100 : 0;
        const cost = fmtCost(r.cost_usd);
        const durCell = h('td', { class: 'num dur' });
        if (r.status === 'running' && isNum(r.started_at) && !isNum(r.duration)) {
          durCell.dataset.liveStart = String(r.started_at);
          durCell.textContent = fmtDur(serverNow() - r.started_at);
        } else {
          durCell.textContent = fmtDur(r.duration);
        }
        rows.push(h('tr', {
          'data-run-id': r.id, 'data-testid': 'run-row', 'data-status': r.status, tabindex: '0',
          class: isNew ? 'new' : null, title: r.error ? `error: ${r.error}` : null,
        },
        h('td', null, h('a', { href: `#/runs/${encodeURIComponent(r.id)}`, class: 'mono' }, r.id)),
        h('td', { class: 'wf', title: r.workflow }, r.workflow),
        h('td', null, badge(r.status)),
        h('td', { class: 'created', title: isNum(r.created_at) ? new Date(r.created_at * 1000).toString() : null },
          fmtWhen(r.created_at), ' ', h('small', { 'data-ago': String(r.created_at) }, fmtAgo(r.created_at))),
        durCell,
        h('td', null, c.total ? h('div', { class: 'progress', title: Object.entries(r.counts || {}).map(([k, v]) => `${k}: ${v}`).join(', ') },
          h('div', { class: 'bar-bg' }, h('div', { class: 'bar-fill', style: `width:${doneShare.toFixed(1)}%` }),
            h('div', { class: 'bar-fail', style: `width:${failShare.toFixed(1)}%` })),
          h('span', null, `${c.done}/${c.total}`),
          c.failed ? h('span', { class: 'fails' }, `${c.failed}✕`) : null)
          : h('span', { class: 'muted' }, r.status === 'running' ? 'in progress' : '–')),
        h('td', { class: 'num' }, cost || h('span', { class: 'muted' }, '–'))));
      }
      if (this.loaded) this.known = known;
      if (!rows.length) {
        rows.push(h('tr', null, h('td', { colspan: '7', class: 'empty' },
          this.loaded ? 'No runs yet. Start one with the form.' : 'Loading…')));
      }
      body.replaceChildren(...rows);
      show('#load-more', Boolean(this.next));
      show('.table-foot', Boolean(this.next || this.runs.length));
      setText('#runs-count', this.runs.length ? `${this.runs.length} run${this.runs.length === 1 ? '' : 's'} shown${this.next ? ' · more available' : ''}` : '');
      this.renderStrip();
    }

    renderStrip() {
      // tasks/s: tasks finished between two refreshes, summed per run (a run first seen counts from then).
      const counts = {};
      const now = performance.now() / 1000;
      const seen = new Map();
      let delta = 0;
      for (const r of this.runs) {
        counts[r.status] = (counts[r.status] || 0) + 1;
        const c = countsOf(r.counts);
        const fin = c.done + c.failed;
        seen.set(r.id, fin);
        if (this.finishedBy && this.finishedBy.has(r.id)) delta += Math.max(0, fin - this.finishedBy.get(r.id));
      }
      if (this.finishedBy) this.samples.push([now, delta]);
      else this.since = now;
      this.finishedBy = seen;
      while (this.samples.length && now - this.samples[0][0] > 30) this.samples.shift();
      const window = Math.min(30, now - this.since);
      const rate = window >= 1 ? this.samples.reduce((a, x) => a + x[1], 0) / window : null;
      const chips = [];
      const all = this.metrics ? this.metrics.runs : counts;
      for (const s of STATUS_ORDER) {
        const n = all[s] || 0;
        if (!n && !['running', 'queued', 'succeeded', 'failed'].includes(s)) continue;
        chips.push(h('span', { class: `chip s-${s}`, 'data-status': s, 'data-testid': `strip-${s}`,
          title: this.metrics ? `${s} runs in the service's database` : `${s} runs among those listed` },
          h('span', { class: 'dot' }), h('b', null, String(n)), s));
      }
      chips.push(h('span', { class: 'chip rate', 'data-testid': 'strip-rate',
        title: 'tasks finished per second over the last 30 s, from the task counts of the runs listed (a run reports its counts when it ends)' },
        h('span', { class: 'dot' }), h('b', null, rate === null ? '–' : rate.toFixed(rate < 10 ? 1 : 0)), 'tasks/s'));
      if (this.metrics && isNum(this.metrics.runners)) {
        chips.push(h('span', { class: 'chip info', 'data-testid': 'strip-runners', title: 'runner processes executing runs (0: inside the API process)' },
          h('b', null, String(this.metrics.runners)), `runner${this.metrics.runners === 1 ? '' : 's'}`));
      }
      if (this.metrics && isNum(this.metrics.streams)) {
        chips.push(h('span', { class: 'chip info', 'data-testid': 'strip-streams', title: 'event streams open on the service' },
          h('b', null, String(this.metrics.streams)), `live stream${this.metrics.streams === 1 ? '' : 's'}`));
      }
      $('#service-strip').replaceChildren(...chips);
    }

    tickDurations() {
      for (const td of document.querySelectorAll('#runs-body td[data-live-start]')) {
        setText(td, fmtDur(serverNow() - Number(td.dataset.liveStart)));
      }
      for (const el of document.querySelectorAll('#runs-body [data-ago]')) setText(el, fmtAgo(Number(el.dataset.ago)));
    }

    // -- the form

    async loadWorkflows() {
      const select = $('#nr-workflow');
      try {
        if (!state.workflows) state.workflows = (await api('/v1/workflows', { signal: this.ctl.signal })).workflows || [];
      } catch (e) {
        if (!isAbort(e)) this.showFormErrors([{ path: '', msg: `Cannot load workflows: ${describeError(e)}` }]);
        return;
      }
      const previous = select.value;
      const options = state.workflows.map((w) => h('option', { value: w.name },
        `${w.name}${isNum(w.tasks) ? ` — ${w.tasks} task${w.tasks === 1 ? '' : 's'}` : ''}`));
      if (!options.length) options.push(h('option', { value: '', disabled: true }, 'No workflows: start the service with --workflows DIR'));
      select.replaceChildren(...options);
      if (previous && state.workflows.some((w) => w.name === previous)) select.value = previous;
      this.pickWorkflow(Boolean(previous));
    }

    pickWorkflow(keepInputs) {
      const wf = (state.workflows || []).find((w) => w.name === $('#nr-workflow').value);
      setText('#nr-workflow-desc', wf ? [wf.description, wf.file ? `(${wf.file})` : ''].filter(Boolean).join(' ') : '');
      const area = $('#nr-inputs');
      if (!keepInputs || !area.value.trim()) area.value = JSON.stringify((wf && wf.vars) || {}, null, 2);
      this.clearFormErrors();
    }

    clearFormErrors() {
      show('#new-run-errors', false);
      $('#new-run-errors').replaceChildren();
      for (const el of document.querySelectorAll('#new-run-form [data-field]')) el.removeAttribute('aria-invalid');
    }

    showFormErrors(items) {
      const list = $('#new-run-errors');
      list.replaceChildren(...items.map((it) => h('li', null, it.path ? h('code', null, it.path) : null, it.path ? ': ' : '', it.msg)));
      show(list, items.length > 0);
      for (const it of items) {
        if (!it.path) continue;
        for (const el of document.querySelectorAll('#new-run-form [data-field]')) {
          const f = el.dataset.field;
          if (it.path === f || it.path.startsWith(`${f}.`) || f.startsWith(`${it.path}.`)) el.setAttribute('aria-invalid', 'true');
        }
      }
    }

    async submit() {
      this.clearFormErrors();
      const workflow = $('#nr-workflow').value;
      const problems = [];
      let inputs = {};
      const text = $('#nr-inputs').value.trim();
      if (text) {
        try {
          inputs = JSON.parse(text);
          if (inputs === null || typeof inputs !== 'object' || Array.isArray(inputs)) problems.push({ path: 'inputs', msg: 'must be a JSON object, like {"name": "value"}' });
        } catch (e) {
          problems.push({ path: 'inputs', msg: `not valid JSON: ${e.message}` });
        }
      }
      const options = {};
      for (const [id, key, integer] of [['#nr-scale', 'scale', false], ['#nr-seed', 'seed', true], ['#nr-parallel', 'max_parallel', true]]) {
        const raw = $(id).value.trim();
        if (!raw) {
          if ($(id).validity && $(id).validity.badInput) problems.push({ path: `options.${key}`, msg: 'is not a number' });
          continue;
        }
        const n = Number(raw);
        if (!Number.isFinite(n)) problems.push({ path: `options.${key}`, msg: 'is not a number' });
        else if (integer && !Number.isInteger(n)) problems.push({ path: `options.${key}`, msg: 'must be a whole number' });
        else options[key] = n;
      }
      if (!workflow) problems.push({ path: 'workflow', msg: 'pick a workflow' });
      if (problems.length) {
        this.showFormErrors(problems);
        return;
      }
      const button = $('#nr-submit');
      button.disabled = true;
      setText(button, 'Starting…');
      try {
        const body = { workflow, inputs };
        if (Object.keys(options).length) body.options = options;
        const accepted = await api('/v1/runs', { method: 'POST', body, signal: this.ctl.signal });
        location.hash = `#/runs/${encodeURIComponent(accepted.id)}`;
      } catch (e) {
        if (isAbort(e)) return;
        if (e instanceof ApiError && Array.isArray(e.detail)) {
          this.showFormErrors(e.detail.map((d) => {
            const loc = Array.isArray(d && d.loc) ? d.loc.filter((p, i) => !(i === 0 && p === 'body')) : [];
            return { path: loc.join('.'), msg: (d && d.msg) || JSON.stringify(d) };
          }));
        } else {
          this.showFormErrors([{ path: '', msg: describeError(e) }]);
        }
      } finally {
        button.disabled = false;
        setText(button, 'Start run');
      }
    }
  }

  // ---------------------------------------------------------------------------------------
  // Page 2: one run, live

  class RunPage {
    constructor(id) {
      this.id = id;
      this.ctl = new AbortController();
      this.tasks = new Map(); // id -> task
      this.agentOf = new Map(); // task id -> agent (from the run detail)
      this.colors = new Map(); // agent -> colour
      this.events = 0;
      this.lastId = null;
      this.ended = false;
      this.endStatus = null;
      this.summary = null;
      this.offsets = new Map(); // session -> seconds added to its times
      this.maxT = 0;
      this.anchor = Infinity; // performance.now()/1000 at run time 0
      this.finished = []; // {t, failed}
      this.crit = new Set();
      this.timers = [];
      this.detailBusy = false;
      this.detailAgain = false;
      this.detailLast = 0;
      this.detailTimer = null;
      this.dirty = true;
      this.raf = 0;
      this.cancelArmed = null;
    }

    mount() {
      show('#page-runs', false);
      show('#page-run', true);
      document.title = `Run ${this.id} · agentfleet`;
      setText('#run-title', 'Run');
      setText('#run-id', this.id);
      setText('#run-created', '');
      setText('#run-elapsed', '–');
      show('#run-error', false);
      show('#run-sessions', false);
      show('#report', false);
      badge('', $('#run-status'));
      this.setStream('', 'connecting…');
      for (const sel of ['#timeline', '#throughput-chart', '#latency-chart']) $(sel).replaceChildren();
      $('#timeline-legend').replaceChildren();
      setText('#latency-stats', '');
      const cancel = $('#cancel-run');
      show(cancel, false);
      cancel.disabled = false;
      cancel.classList.remove('confirm');
      setText(cancel, 'Cancel run');
      this.onCancel = () => this.cancel();
      cancel.addEventListener('click', this.onCancel);
      this.onResize = () => this.markDirty();
      window.addEventListener('resize', this.onResize);
      this.timers.push(setInterval(() => { if (!this.ended) this.markDirty(); }, 200));
      this.timers.push(setInterval(() => { if (!this.ended) this.loadDetail(); }, 5000));
      this.render();
      this.start();
    }

    unmount() {
      this.ctl.abort();
      for (const t of this.timers) clearInterval(t);
      if (this.detailTimer) clearTimeout(this.detailTimer);
      if (this.raf) cancelAnimationFrame(this.raf);
      $('#cancel-run').removeEventListener('click', this.onCancel);
      window.removeEventListener('resize', this.onResize);
    }

    async start() {
      const ok = await this.loadDetail();
      if (!ok || this.ctl.signal.aborted) return;
      this.stream();
    }

    // -- the run detail (agents of tasks, status, timings)

    async loadDetail() {
      if (this.detailBusy) { this.detailAgain = true; return true; }
      this.detailBusy = true;
      this.detailLast = performance.now();
      try {
        const d = await api(`/v1/runs/${encodeURIComponent(this.id)}`, { signal: this.ctl.signal });
        this.applyDetail(d);
        return true;
      } catch (e) {
        if (isAbort(e) || (e instanceof ApiError && e.status === 401)) return false;
        if (e instanceof ApiError && e.status === 404) {
          this.notFound();
          return false;
        }
        banner(`Run ${this.id}: ${describeError(e)}`);
        return !this.summary ? false : true;
      } finally {
        this.detailBusy = false;
        if (this.detailAgain && !this.ctl.signal.aborted) {
          this.detailAgain = false;
          this.scheduleDetail();
        }
      }
    }

    scheduleDetail() {
      // At most one detail request a second, however many unknown tasks show up.
      if (this.detailTimer || this.ctl.signal.aborted) return;
      const wait = Math.max(0, 1000 - (performance.now() - this.detailLast));
      this.detailTimer = setTimeout(() => { this.detailTimer = null; this.loadDetail(); }, wait);
    }

    notFound() {
      this.ended = true;
      setText('#run-title', 'Run not found');
      this.setStream('', '');
      banner(`There is no run ${this.id}.`);
    }

    applyDetail(d) {
      this.summary = d;
      for (const t of d.tasks || []) {
        if (t && t.id) {
          this.agentOf.set(t.id, t.agent);
          this.colorOf(t.agent);
          const task = this.tasks.get(t.id);
          if (task) {
            task.agent = t.agent;
            task.attempts = t.attempts;
            task.tokens = (t.tokens_in || 0) + (t.tokens_out || 0);
            task.error = t.error || task.error;
            // After the end the stored states are final (a task left ready when the run was
            // cancelled is pending again, not waiting).
            if (this.ended && t.state && t.state !== task.state && t.state !== 'running') task.state = t.state;
          }
        }
      }
      if ((d.sessions || 1) <= 1 && isNum(d.started_at) && !this.ended) {
        const candidate = performance.now() / 1000 - (serverNow() - d.started_at);
        if (candidate < this.anchor) this.anchor = candidate;
      }
      this.renderHead();
      this.markDirty();
    }

    status() {
      if (this.endStatus) return this.endStatus;
      const s = this.summary ? this.summary.status : null;
      if ((s === 'queued' || !s) && this.events > 0) return 'running';
      if (s && TERMINAL.has(s) && !this.ended) return s;
      return s;
    }

    renderHead() {
      const d = this.summary || {};
      const status = this.status();
      setText('#run-title', d.workflow || 'Run');
      if (d.workflow) document.title = `${d.workflow} · ${this.id} · agentfleet`;
      badge(status || '', $('#run-status'));
      setText('#run-created', isNum(d.created_at) ? `created ${fmtWhen(d.created_at)} (${fmtAgo(d.created_at)})` : '');
      const sessions = d.sessions || 1;
      setText('#run-sessions', `${sessions} sessions (resumed)`);
      show('#run-sessions', sessions > 1);
      const err = $('#run-error');
      setText(err, d.error ? `error: ${d.error}` : '');
      show(err, Boolean(d.error));
      const cancel = $('#cancel-run');
      show(cancel, !this.ended && (status === 'queued' || status === 'running'));
    }

    colorOf(agent) {
      if (!agent) return UNKNOWN_AGENT;
      if (!this.colors.has(agent)) this.colors.set(agent, PALETTE[this.colors.size % PALETTE.length]);
      return this.colors.get(agent);
    }

    // -- the event stream

    setStream(cls, text) {
      const el = $('#stream-status');
      el.className = `pill ${cls}`;
      setText(el, text);
    }

    async stream() {
      let delay = 500;
      while (!this.ended && !this.ctl.signal.aborted) {
        const conn = new AbortController();
        const onAbort = () => conn.abort();
        this.ctl.signal.addEventListener('abort', onAbort, { once: true });
        let idle = null;
        try {
          const headers = authHeaders({ Accept: 'text/event-stream' });
          if (this.lastId !== null) headers['Last-Event-ID'] = String(this.lastId);
          const res = await fetch(`/v1/runs/${encodeURIComponent(this.id)}/events`,
            { headers, signal: conn.signal, cache: 'no-store', credentials: 'same-origin' });
          if (res.status === 401) { unauthorized(); return; }
          if (res.status === 404) { this.notFound(); return; }
          if (!res.ok || !res.body) throw new ApiError(res.status, `event stream: HTTP ${res.status}`, res.headers.get('Retry-After'));
          this.setStream('live', 'live');
          clearBanner();
          let last = performance.now();
          idle = setInterval(() => { if (performance.now() - last > STREAM_IDLE_MS) conn.abort(); }, 5000);
          await this.readSSE(res.body, () => { last = performance.now(); delay = 500; });
        } catch (e) {
          if (this.ctl.signal.aborted) return;
          if (!isAbort(e)) this.setStream('retry', `reconnecting (${describeError(e)})`);
        } finally {
          if (idle) clearInterval(idle);
          this.ctl.signal.removeEventListener('abort', onAbort);
        }
        if (this.ended || this.ctl.signal.aborted) break;
        this.setStream('retry', 'reconnecting…');
        await sleep(delay, this.ctl.signal);
        delay = Math.min(delay * 2, 8000);
      }
    }

    async readSSE(body, heard) {
      const reader = body.getReader();
      const decoder = new TextDecoder();
      let buf = '';
      let frame = { event: '', data: [], id: null };
      const dispatch = () => {
        if (frame.id !== null) this.lastId = frame.id;
        if (frame.data.length || frame.event) this.onFrame(frame.event || 'message', frame.data.join('\n'), frame.id);
        frame = { event: '', data: [], id: null };
      };
      const line = (text) => {
        if (text === '') { dispatch(); return; }
        if (text[0] === ':') return; // a comment (keep-alive)
        const colon = text.indexOf(':');
        const field = colon < 0 ? text : text.slice(0, colon);
        let value = colon < 0 ? '' : text.slice(colon + 1);
        if (value[0] === ' ') value = value.slice(1);
        if (field === 'data') frame.data.push(value);
        else if (field === 'event') frame.event = value;
        else if (field === 'id') { if (!value.includes('\0')) frame.id = value; }
      };
      try {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          heard();
          buf += decoder.decode(value, { stream: true });
          let start = 0;
          for (let i = 0; i < buf.length; i++) {
            const c = buf[i];
            if (c === '\n' || c === '\r') {
              if (c === '\r' && i === buf.length - 1) break; // may be half of \r\n: wait for more
              line(buf.slice(start, i));
              if (c === '\r' && buf[i + 1] === '\n') i++;
              start = i + 1;
            }
          }
          buf = buf.slice(start);
          if (this.ended) break;
        }
      } finally {
        try { reader.releaseLock(); } catch (_) { /* already released */ }
      }
    }

    onFrame(type, data, id) {
      if (this.ended) return;
      let payload = null;
      try { payload = data ? JSON.parse(data) : null; } catch (_) { payload = null; }
      if (type === 'end') {
        this.onEnd((payload && payload.status) || 'ended');
        return;
      }
      if (!payload || typeof payload !== 'object') return;
      if (id === null && isNum(payload.id)) this.lastId = String(payload.id);
      this.onEvent(payload, type);
    }

    onEvent(ev, type) {
      this.events++;
      const kind = ev.kind || type;
      const session = isNum(ev.session) ? ev.session : 1;
      if (!this.offsets.has(session)) {
        const first = this.offsets.size === 0;
        this.offsets.set(session, first ? 0 : this.maxT);
        if (!first) this.newSession(this.maxT);
      }
      const T = this.offsets.get(session) + (isNum(ev.t) ? ev.t : 0);
      if (T > this.maxT) this.maxT = T;
      const perf = performance.now() / 1000;
      if (perf - T < this.anchor) this.anchor = perf - T;
      if (ev.task) {
        let task = this.tasks.get(ev.task);
        if (!task) {
          const agent = this.agentOf.get(ev.task) || null;
          task = { id: ev.task, agent, state: 'pending', ready: null, start: null, attemptStart: null, end: null,
            fails: [], prior: [], retries: 0, waits: 0, cache: false, order: this.tasks.size, error: null };
          this.tasks.set(ev.task, task);
          if (!agent) this.scheduleDetail();
        }
        switch (kind) {
          case 'ready':
            if (task.start === null) task.ready = T;
            if (task.state !== 'running') task.state = 'ready';
            break;
          case 'started':
            if (task.start === null) task.start = T;
            else if (task.end !== null) {
              if (!task.fails.some((f) => Math.abs(f - task.end) < 0.01)) task.fails.push(task.end);
              task.end = null;
            }
            task.attemptStart = T;
            task.state = 'running';
            break;
          case 'done':
          case 'failed':
            // A resumed session first reports the tasks it restored as done again: keep the original.
            if (task.end !== null && task.state === kind) break;
            if (task.start === null) { task.start = T; task.attemptStart = T; }
            task.end = T;
            task.state = kind;
            if (kind === 'failed' && ev.data && ev.data.error) task.error = String(ev.data.error);
            this.finished.push({ t: T, failed: kind === 'failed' });
            break;
          case 'skipped':
          case 'cancelled':
          case 'interrupted':
            if (task.start !== null && task.end === null) task.end = T;
            task.state = kind;
            if (ev.data && ev.data.error) task.error = String(ev.data.error);
            break;
          case 'retry':
            task.retries++;
            if (!task.fails.some((f) => Math.abs(f - T) < 0.01)) task.fails.push(T);
            if (ev.data && ev.data.error) task.lastRetryError = String(ev.data.error);
            break;
          case 'rate_wait':
            task.waits += (ev.data && isNum(ev.data.seconds)) ? ev.data.seconds : 0;
            break;
          case 'cache_hit':
            task.cache = true;
            break;
          default:
            break;
        }
      }
      this.markDirty();
    }

    newSession(at) {
      // A resumed run starts a new session at time 0 again, drawn after the previous one. Tasks
      // that were open when the previous session died run again: keep their lost attempt as a
      // faded segment and start them afresh.
      for (const t of this.tasks.values()) {
        if (t.start !== null && t.end === null) {
          t.prior.push([t.start, at]);
          t.start = null;
          t.attemptStart = null;
          t.ready = null;
          t.state = 'pending';
        } else if (t.start === null && t.ready !== null) {
          t.ready = null;
          t.state = 'pending';
        }
      }
    }

    async onEnd(status) {
      this.ended = true;
      this.endStatus = status;
      this.setStream('', 'ended');
      // Tasks still open at the end stop where the run stopped.
      for (const t of this.tasks.values()) if (t.start !== null && t.end === null) t.end = this.maxT;
      this.renderHead();
      this.markDirty();
      await this.loadDetail();
      if (this.ctl.signal.aborted) return;
      try {
        const rep = await api(`/v1/runs/${encodeURIComponent(this.id)}/report`, { signal: this.ctl.signal });
        this.renderReport(rep);
      } catch (e) {
        if (isAbort(e)) return;
        show('#report', true);
        $('#report-kpis').replaceChildren(h('p', { class: 'muted' }, `No report: ${describeError(e)}`));
        $('#bottlenecks').replaceChildren(h('p', { class: 'muted' }, 'No report, so no bottleneck analysis.'));
        $('#critical-path').replaceChildren();
      }
    }

    async cancel() {
      const button = $('#cancel-run');
      if (!this.cancelArmed) {
        button.classList.add('confirm');
        setText(button, 'Click again to cancel');
        this.cancelArmed = setTimeout(() => {
          this.cancelArmed = null;
          button.classList.remove('confirm');
          setText(button, 'Cancel run');
        }, 3000);
        return;
      }
      clearTimeout(this.cancelArmed);
      this.cancelArmed = null;
      button.classList.remove('confirm');
      button.disabled = true;
      setText(button, 'Cancelling…');
      try {
        const ans = await api(`/v1/runs/${encodeURIComponent(this.id)}/cancel`, { method: 'POST', signal: this.ctl.signal });
        setText(button, ans && ans.status === 'cancelled' ? 'Cancelled' : 'Cancelling…');
        this.loadDetail();
      } catch (e) {
        if (isAbort(e)) return;
        button.disabled = false;
        setText(button, 'Cancel run');
        banner(e instanceof ApiError && e.status === 409 ? 'The run had already ended.' : `Cancel: ${describeError(e)}`);
      }
    }

    // -- drawing

    markDirty() {
      this.dirty = true;
      if (!this.raf) this.raf = requestAnimationFrame(() => { this.raf = 0; if (this.dirty) this.render(); });
    }

    nowT() {
      if (this.ended || !Number.isFinite(this.anchor)) return this.maxT;
      return Math.max(this.maxT, performance.now() / 1000 - this.anchor);
    }

    render() {
      this.dirty = false;
      if (this.ctl.signal.aborted) return;
      const now = this.nowT();
      this.renderCounters(now);
      this.renderTimeline(now);
      this.renderThroughput(now);
      this.renderLatency();
    }

    renderCounters(now) {
      let done = 0; let running = 0; let failed = 0; let waiting = 0;
      for (const t of this.tasks.values()) {
        if (t.state === 'done') done++;
        else if (t.state === 'running') running++;
        else if (t.state === 'failed') failed++;
        else if (t.state === 'ready') waiting++;
      }
      setText('#count-done', done);
      setText('#count-running', running);
      setText('#count-failed', failed);
      setText('#count-waiting', waiting);
      setText('#count-total', this.tasks.size);
      setText('#count-events', this.events);
      const status = this.status();
      const d = this.summary || {};
      if (this.ended || (status && TERMINAL.has(status))) {
        setText('#run-elapsed-label', 'Duration');
        setText('#run-elapsed', fmtDur(isNum(d.duration) ? d.duration : this.maxT));
      } else if (status === 'queued' && !this.events) {
        setText('#run-elapsed-label', 'Queued for');
        setText('#run-elapsed', isNum(d.created_at) ? fmtDur(serverNow() - d.created_at) : '–');
      } else {
        setText('#run-elapsed-label', 'Elapsed');
        setText('#run-elapsed', this.events || isNum(d.started_at) ? fmtDur(now) : '–');
      }
    }

    chartWidth(el) {
      const w = el.parentElement ? el.parentElement.clientWidth : 0;
      return Math.max(320, Math.floor(w || 900));
    }

    orderedTasks() {
      // Lanes grouped by agent (agents in order of their first task), tasks in start order.
      const groups = new Map();
      for (const t of this.tasks.values()) {
        if (t.start === null && t.ready === null && !t.prior.length) continue;
        const agent = t.agent || this.agentOf.get(t.id) || null;
        t.agent = agent;
        const key = agent || '…';
        if (!groups.has(key)) groups.set(key, []);
        groups.get(key).push(t);
      }
      const key = (t) => (t.start !== null ? t.start : (t.ready !== null ? t.ready + 1e6 : 1e12));
      const list = [...groups.entries()].map(([agent, tasks]) => {
        tasks.sort((a, b) => key(a) - key(b) || a.order - b.order);
        return { agent, tasks, first: Math.min(...tasks.map(key)) };
      });
      list.sort((a, b) => a.first - b.first || a.agent.localeCompare(b.agent));
      return list;
    }

    renderTimeline(now) {
      const el = $('#timeline');
      const W = this.chartWidth(el);
      const groups = this.orderedTasks();
      let lanes = 0;
      for (const g of groups) lanes += g.tasks.length;
      const labelW = Math.round(Math.min(230, Math.max(130, W * 0.19)));
      const x0 = labelW + 10;
      const padR = 18;
      const plotW = Math.max(60, W - x0 - padR);
      const axisH = 34;
      const rowH = lanes <= 30 ? 22 : lanes <= 80 ? 16 : lanes <= 200 ? 10 : Math.max(3, Math.floor(2000 / Math.min(lanes, MAX_LANES)));
      const groupH = rowH >= 10 ? 22 : 14;
      const barH = Math.max(2, Math.round(rowH * 0.64));
      const end = this.ended ? Math.max(this.maxT, 0.5) * 1.02 : Math.max(5, now * 1.05 + 0.5);
      const xs = (t) => x0 + (Math.max(0, t) / end) * plotW;
      const kids = [];
      const defs = svg('defs', null,
        svg('pattern', { id: 'tl-stripes', width: '8', height: '8', patternUnits: 'userSpaceOnUse', patternTransform: 'rotate(45)' },
          svg('rect', { width: '3', height: '8', fill: '#ffffff', 'fill-opacity': '0.28' })));
      kids.push(defs);

      if (!lanes) {
        const H = 150;
        el.setAttribute('viewBox', `0 0 ${W} ${H}`);
        el.setAttribute('height', String(H));
        kids.push(...this.timeAxis(xs, end, x0, plotW, axisH, H - 10, 'time since the run started (s)'));
        const status = this.status();
        kids.push(svg('text', { x: x0 + plotW / 2, y: 90, 'text-anchor': 'middle', class: 'empty-msg' },
          status === 'queued' ? 'Queued: waiting for a runner to pick this run up…'
            : this.ended ? 'No task ran in this run.' : 'Waiting for the first task…'));
        el.replaceChildren(...kids);
        this.renderLegend([]);
        return;
      }

      let H = axisH;
      for (const g of groups) H += groupH + Math.min(g.tasks.length, MAX_LANES) * rowH;
      H += 8;
      el.setAttribute('viewBox', `0 0 ${W} ${H}`);
      el.setAttribute('height', String(H));
      kids.push(...this.timeAxis(xs, end, x0, plotW, axisH, H - 4, 'time since the run started (s)'));

      // Sessions after the first start again at 0: mark where each was appended.
      for (const [session, off] of this.offsets) {
        if (session === [...this.offsets.keys()][0] || off <= 0) continue;
        kids.push(svg('line', { x1: xs(off), x2: xs(off), y1: axisH - 4, y2: H - 4, class: 'session-line' },
          svg('title', null, `session ${session} (resumed) starts here`)));
        kids.push(svg('text', { x: xs(off) + 4, y: H - 8, class: 'session-label' }, `session ${session}`));
      }

      const chars = Math.max(6, Math.floor((labelW - 22) / 6.9));
      let y = axisH;
      let drawn = 0;
      for (const g of groups) {
        const color = g.agent === '…' ? UNKNOWN_AGENT : this.colorOf(g.agent);
        const rows = g.tasks.slice(0, Math.max(0, MAX_LANES - drawn));
        kids.push(svg('rect', { x: 0, y, width: W, height: groupH, class: 'group-band' }));
        kids.push(svg('rect', { x: 4, y: y + groupH / 2 - 4, width: 8, height: 8, rx: 2, fill: color }));
        kids.push(svg('text', { x: 18, y: y + groupH / 2 + 4, class: 'group-label' },
          truncate(g.agent === '…' ? '(agent unknown yet)' : g.agent, chars),
          svg('tspan', { class: 'group-count', dx: '8' }, `${g.tasks.length} task${g.tasks.length === 1 ? '' : 's'}`)));
        y += groupH;
        for (const t of rows) {
          const cy = y + rowH / 2;
          const g2 = svg('g', { class: `task ${t.state}`, 'data-task': t.id });
          const lines = [`${t.id}  ·  ${t.agent || 'agent ?'}`, `state: ${t.state}`];
          if (t.ready !== null && t.start !== null) lines.push(`waited ${fmtDur(t.start - t.ready)} before starting`);
          if (t.start !== null) lines.push(`started at ${fmtDur(t.start)}, ${t.end !== null ? `took ${fmtDur(t.end - t.start)}` : `running for ${fmtDur(now - t.start)}`}`);
          if (t.fails.length) lines.push(`${t.fails.length} failed attempt${t.fails.length === 1 ? '' : 's'}${t.lastRetryError ? ` (last: ${truncate(t.lastRetryError, 160)})` : ''}`);
          if (t.waits) lines.push(`rate-limited for ${fmtDur(t.waits)}`);
          if (t.cache) lines.push('served from the cache');
          if (this.crit.has(t.id)) lines.push('on the critical path');
          if (t.error) lines.push(`error: ${truncate(t.error, 300)}`);
          g2.append(svg('title', null, lines.join('\n')));
          for (const [a, b] of t.prior) {
            g2.append(svg('rect', { class: 'prior', x: xs(a), y: cy - barH / 2, width: Math.max(2, xs(b) - xs(a)), height: barH,
              rx: Math.min(3, barH / 2), fill: color }));
          }
          if (t.prior.length) lines.push(`${t.prior.length} attempt${t.prior.length === 1 ? '' : 's'} lost when the service stopped`);
          // queue wait: ready -> started (or now)
          if (t.ready !== null) {
            const wEnd = t.start !== null ? t.start : (t.end !== null ? t.end : now);
            if (wEnd > t.ready) {
              g2.append(svg('rect', { class: 'wait', x: xs(t.ready), y: cy - 1.5, width: Math.max(1, xs(wEnd) - xs(t.ready)), height: 3, rx: 1.5 }));
            }
          }
          if (t.start !== null) {
            const tEnd = t.end !== null ? t.end : now;
            const bx = xs(t.start);
            const bw = Math.max(2, xs(tEnd) - bx);
            const cls = ['bar', t.state === 'pending' || t.state === 'ready' ? 'running' : t.state];
            if (this.crit.has(t.id)) cls.push('crit');
            g2.append(svg('rect', { class: cls.join(' '), x: bx, y: cy - barH / 2, width: bw, height: barH,
              rx: Math.min(3, barH / 2), fill: color }));
            if (t.end === null && bw > 6) {
              g2.append(svg('rect', { x: bx, y: cy - barH / 2, width: bw, height: barH, rx: Math.min(3, barH / 2),
                fill: 'url(#tl-stripes)', 'pointer-events': 'none' }));
            }
            for (const f of t.fails) {
              g2.append(svg('line', { class: 'retry', x1: xs(f), x2: xs(f), y1: cy - barH / 2 - 2, y2: cy + barH / 2 + 2 }));
            }
          }
          if (rowH >= 10) {
            kids.push(svg('text', { x: 18, y: cy + 4, class: 'lane-label' }, truncate(t.id, chars)));
          }
          kids.push(g2);
          y += rowH;
          drawn++;
        }
      }
      if (!this.ended) {
        const nx = xs(now);
        kids.push(svg('line', { x1: nx, x2: nx, y1: axisH - 6, y2: H - 4, class: 'now-line' }));
        const px = Math.min(nx, W - 17);
        kids.push(svg('rect', { x: px - 16, y: axisH - 22, width: 32, height: 15, rx: 7.5, class: 'now-pill' }));
        kids.push(svg('text', { x: px, y: axisH - 11, 'text-anchor': 'middle', class: 'now-label' }, 'now'));
      }
      el.replaceChildren(...kids);
      this.renderLegend(groups.map((g) => g.agent));
    }

    timeAxis(xs, end, x0, plotW, axisH, bottom, title) {
      const out = [];
      const step = timeStep(end, Math.max(2, Math.floor(plotW / 90)));
      out.push(svg('text', { x: 4, y: 14, class: 'axis-title' }, title));
      for (let v = 0; v <= end + 1e-9; v += step) {
        const x = xs(v);
        out.push(svg('line', { x1: x, x2: x, y1: axisH - 6, y2: bottom, class: 'grid' }));
        if (x <= x0 + plotW - 14 || v === 0) {
          out.push(svg('text', { x, y: axisH - 10, 'text-anchor': v === 0 ? 'start' : 'middle' }, fmtAxis(v, step)));
        }
      }
      out.push(svg('line', { x1: x0, x2: x0 + plotW, y1: axisH - 6, y2: axisH - 6, class: 'axis-line' }));
      return out;
    }

    renderLegend(agents) {
      const items = [];
      for (const a of agents) {
        items.push(h('span', null, h('i', { style: `background:${a === '…' ? UNKNOWN_AGENT : this.colorOf(a)}` }),
          a === '…' ? 'agent unknown yet' : a));
      }
      if (items.length) items.push(h('span', { class: 'sep' }));
      items.push(h('span', null, h('i', { class: 'sw-wait' }), 'waiting (ready)'));
      items.push(h('span', null, h('i', { class: 'sw-running' }), 'running'));
      items.push(h('span', null, h('i', { class: 'sw-failed' }), 'failed'));
      items.push(h('span', null, h('i', { class: 'sw-retry' }), 'failed attempt'));
      const stopped = [...this.tasks.values()].some((t) => ['cancelled', 'interrupted', 'skipped'].includes(t.state) || t.prior.length);
      if (stopped) items.push(h('span', null, h('i', { class: 'sw-stopped' }), 'interrupted / cancelled'));
      if (this.crit.size) items.push(h('span', null, h('i', { class: 'sw-crit' }), 'critical path'));
      const legend = $('#timeline-legend');
      const sig = items.map((i) => i.textContent).join('|') + this.colors.size;
      if (legend.dataset.sig !== sig) {
        legend.dataset.sig = sig;
        legend.replaceChildren(...items);
      }
    }

    renderThroughput(now) {
      const el = $('#throughput-chart');
      const W = this.chartWidth(el);
      const H = 230;
      const m = { l: 48, r: 14, t: 16, b: 40 };
      const pw = W - m.l - m.r;
      const ph = H - m.t - m.b;
      const span = Math.max(this.ended ? this.maxT : now, 5);
      let bucket = 1;
      for (const b of [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600]) { bucket = b; if (span / b <= 60) break; }
      const n = Math.max(1, Math.ceil(span / bucket));
      const done = new Array(n).fill(0);
      const failed = new Array(n).fill(0);
      for (const f of this.finished) {
        const i = Math.min(n - 1, Math.max(0, Math.floor(f.t / bucket)));
        if (f.failed) failed[i]++; else done[i]++;
      }
      let maxRate = 0;
      for (let i = 0; i < n; i++) maxRate = Math.max(maxRate, (done[i] + failed[i]) / bucket);
      const yStep = niceStep(Math.max(maxRate, 1 / bucket), 4);
      const yMax = Math.max(yStep, Math.ceil(maxRate / yStep - 1e-9) * yStep);
      const xs = (t) => m.l + (t / (n * bucket)) * pw;
      const ys = (v) => m.t + ph - (v / yMax) * ph;
      const kids = [];
      for (let v = 0; v <= yMax + 1e-9; v += yStep) {
        kids.push(svg('line', { x1: m.l, x2: m.l + pw, y1: ys(v), y2: ys(v), class: 'grid' }));
        kids.push(svg('text', { x: m.l - 6, y: ys(v) + 4, 'text-anchor': 'end' }, yStep < 1 ? v.toFixed(yStep < 0.1 ? 2 : 1) : String(Math.round(v))));
      }
      const bw = pw / n;
      const gap = bw > 6 ? Math.min(3, bw * 0.18) : 0;
      for (let i = 0; i < n; i++) {
        const total = done[i] + failed[i];
        if (!total) continue;
        const x = m.l + i * bw + gap / 2;
        const yTop = ys(total / bucket);
        const hDone = ys(0) - ys(done[i] / bucket);
        const g = svg('g', null, svg('title', null,
          `${fmtAxis(i * bucket, bucket)}–${fmtAxis((i + 1) * bucket, bucket)}: ${total} finished (${(total / bucket).toFixed(2)} tasks/s)${failed[i] ? `, ${failed[i]} failed` : ''}`));
        if (done[i]) g.append(svg('rect', { class: 'tbar', x, y: ys(done[i] / bucket), width: Math.max(1, bw - gap), height: hDone, rx: Math.min(2, bw / 4) }));
        if (failed[i]) g.append(svg('rect', { class: 'tbar has-fail', x, y: yTop, width: Math.max(1, bw - gap), height: ys(done[i] / bucket) - yTop }));
        kids.push(g);
      }
      const xStep = Math.max(bucket, timeStep(n * bucket, Math.max(2, Math.floor(pw / 80))));
      for (let v = 0; v <= n * bucket + 1e-9; v += xStep) {
        kids.push(svg('line', { x1: xs(v), x2: xs(v), y1: m.t + ph, y2: m.t + ph + 4, class: 'axis-line' }));
        kids.push(svg('text', { x: xs(v), y: m.t + ph + 16, 'text-anchor': 'middle' }, fmtAxis(v, xStep)));
      }
      kids.push(svg('line', { x1: m.l, x2: m.l + pw, y1: m.t + ph, y2: m.t + ph, class: 'axis-line' }));
      kids.push(svg('line', { x1: m.l, x2: m.l, y1: m.t, y2: m.t + ph, class: 'axis-line' }));
      kids.push(svg('text', { x: m.l + pw / 2, y: H - 4, 'text-anchor': 'middle', class: 'axis-title' },
        `run time (s)${bucket > 1 ? ` · ${bucket}s buckets` : ''}`));
      kids.push(svg('text', { x: 12, y: m.t + ph / 2, 'text-anchor': 'middle', class: 'axis-title', transform: `rotate(-90 12 ${m.t + ph / 2})` }, 'tasks / s'));
      if (!this.finished.length) {
        kids.push(svg('text', { x: m.l + pw / 2, y: m.t + ph / 2, 'text-anchor': 'middle', class: 'empty-msg' }, 'No task has finished yet'));
      }
      el.setAttribute('viewBox', `0 0 ${W} ${H}`);
      el.setAttribute('height', String(H));
      el.replaceChildren(...kids);
    }

    renderLatency() {
      const el = $('#latency-chart');
      const W = this.chartWidth(el);
      const H = 230;
      const m = { l: 44, r: 16, t: 30, b: 40 };
      const pw = W - m.l - m.r;
      const ph = H - m.t - m.b;
      const durs = [];
      for (const t of this.tasks.values()) {
        if ((t.state === 'done' || t.state === 'failed') && t.start !== null && t.end !== null) durs.push(Math.max(0, t.end - t.start));
      }
      durs.sort((a, b) => a - b);
      const kids = [];
      const n = durs.length;
      const max = n ? durs[n - 1] : 0;
      const binW = niceStep(Math.max(max, 0.001), Math.min(16, Math.max(4, Math.ceil(Math.sqrt(n)) * 2)));
      const nb = Math.max(1, Math.ceil(max / binW + 1e-9));
      const bins = new Array(nb).fill(0);
      for (const d of durs) bins[Math.min(nb - 1, Math.floor(d / binW))]++;
      const top = Math.max(1, ...bins);
      const yStep = niceStep(top, 4) < 1 ? 1 : niceStep(top, 4);
      const yMax = Math.ceil(top / yStep) * yStep;
      const xMax = n ? nb * binW : 5;
      const xs = (v) => m.l + (v / xMax) * pw;
      const ys = (v) => m.t + ph - (v / yMax) * ph;
      for (let v = 0; v <= yMax + 1e-9; v += yStep) {
        kids.push(svg('line', { x1: m.l, x2: m.l + pw, y1: ys(v), y2: ys(v), class: 'grid' }));
        kids.push(svg('text', { x: m.l - 6, y: ys(v) + 4, 'text-anchor': 'end' }, String(Math.round(v))));
      }
      if (n) {
        for (let i = 0; i < nb; i++) {
          if (!bins[i]) continue;
          const x = xs(i * binW);
          const w = xs((i + 1) * binW) - x;
          kids.push(svg('rect', { class: 'hbar', x: x + 1, y: ys(bins[i]), width: Math.max(1, w - 2), height: ys(0) - ys(bins[i]), rx: 2 },
            svg('title', null, `${fmtDur(i * binW)}–${fmtDur((i + 1) * binW)}: ${bins[i]} task${bins[i] === 1 ? '' : 's'}`)));
        }
      }
      const xStep = niceStep(xMax, Math.max(2, Math.floor(pw / 70)));
      for (let v = 0; v <= xMax + 1e-9; v += xStep) {
        kids.push(svg('line', { x1: xs(v), x2: xs(v), y1: m.t + ph, y2: m.t + ph + 4, class: 'axis-line' }));
        kids.push(svg('text', { x: xs(v), y: m.t + ph + 16, 'text-anchor': 'middle' }, fmtAxis(v, xStep)));
      }
      kids.push(svg('line', { x1: m.l, x2: m.l + pw, y1: m.t + ph, y2: m.t + ph, class: 'axis-line' }));
      kids.push(svg('line', { x1: m.l, x2: m.l, y1: m.t, y2: m.t + ph, class: 'axis-line' }));
      kids.push(svg('text', { x: m.l + pw / 2, y: H - 4, 'text-anchor': 'middle', class: 'axis-title' }, 'task duration (s)'));
      kids.push(svg('text', { x: 12, y: m.t + ph / 2, 'text-anchor': 'middle', class: 'axis-title', transform: `rotate(-90 12 ${m.t + ph / 2})` }, 'tasks'));
      if (n) {
        // p50 / p95 / max: dashed lines, named in a legend above the plot (labels on the lines would collide).
        const marks = [['p50', quantile(durs, 0.5)], ['p95', quantile(durs, 0.95)], ['max', max]];
        let lx = m.l;
        for (const [name, v] of marks) {
          const x = xs(v);
          kids.push(svg('line', { class: `mark ${name}`, x1: x, x2: x, y1: m.t - 4, y2: m.t + ph },
            svg('title', null, `${name}: ${fmtDur(v)}`)));
          kids.push(svg('line', { class: `mark ${name}`, x1: lx, x2: lx + 16, y1: 11, y2: 11 }));
          const label = `${name} ${fmtDur(v)}`;
          kids.push(svg('text', { class: `mark-label ${name}`, x: lx + 20, y: 15 }, label));
          lx += 20 + label.length * 6.6 + 18;
        }
        const mean = durs.reduce((a, b) => a + b, 0) / n;
        setText('#latency-stats', `${n} finished task${n === 1 ? '' : 's'} · p50 ${fmtDur(quantile(durs, 0.5))} · p95 ${fmtDur(quantile(durs, 0.95))} · max ${fmtDur(max)} · mean ${fmtDur(mean)}`);
      } else {
        kids.push(svg('text', { x: m.l + pw / 2, y: m.t + ph / 2, 'text-anchor': 'middle', class: 'empty-msg' }, 'No task has finished yet'));
        setText('#latency-stats', '');
      }
      el.setAttribute('viewBox', `0 0 ${W} ${H}`);
      el.setAttribute('height', String(H));
      el.replaceChildren(...kids);
    }

    // -- the report (after the end)

    renderReport(data) {
      const rep = (data && data.report) || {};
      show('#report', true);
      const status = (data && data.status) || this.endStatus;
      const notes = [`final status: ${status || 'unknown'}`];
      if (rep.simulated) notes.push(`simulated${isNum(rep.latency_scale) && rep.latency_scale !== 1 ? ` at scale ${rep.latency_scale}` : ''}`);
      if (Array.isArray(rep.providers) && rep.providers.length) notes.push(`providers: ${rep.providers.join(', ')}`);
      setText('#report-note', notes.join(' · '));

      const kpis = [];
      const kpi = (k, v, sub, testid) => kpis.push(h('div', { class: 'kpi', 'data-testid': testid || null },
        h('div', { class: 'k' }, k), h('div', { class: 'v' }, v), sub ? h('div', { class: 'sub' }, sub) : null));
      if (isNum(rep.makespan)) kpi('Makespan', fmtDur(rep.makespan), isNum(rep.unscaled_makespan) && rep.unscaled_makespan !== rep.makespan ? `${fmtDur(rep.unscaled_makespan)} unscaled` : 'first start to last end', 'report-makespan');
      if (isNum(rep.speedup)) kpi('Speedup', `${rep.speedup.toFixed(2)}×`, isNum(rep.total_task_time) ? `vs ${fmtDur(rep.total_task_time)} one at a time` : null, 'report-speedup');
      if (isNum(rep.critical_path_length)) kpi('Critical path', fmtDur(rep.critical_path_length), isNum(rep.critical_path_queue_share) ? `${fmtPct(rep.critical_path_queue_share)} of it queued` : null);
      if (isNum(rep.efficiency)) kpi('Efficiency', fmtPct(rep.efficiency), isNum(rep.peak_concurrency) ? `peak ${rep.peak_concurrency}${isNum(rep.max_parallel) ? ` of ${rep.max_parallel}` : ''} running` : null);
      if (isNum(rep.tasks_total)) kpi('Tasks', `${rep.tasks_done ?? '–'}/${rep.tasks_total}`, [rep.tasks_failed ? `${rep.tasks_failed} failed` : null, rep.retries ? `${rep.retries} retries` : null, rep.tasks_resumed ? `${rep.tasks_resumed} resumed` : null].filter(Boolean).join(' · ') || 'done / total');
      if (isNum(rep.time_to_first_result)) kpi('First result', fmtDur(rep.time_to_first_result), 'time to the first finished task');
      if (isNum(rep.tokens_in) || isNum(rep.tokens_out)) kpi('Tokens', fmtNum((rep.tokens_in || 0) + (rep.tokens_out || 0)), `${fmtNum(rep.tokens_in)} in · ${fmtNum(rep.tokens_out)} out`);
      if (fmtCost(rep.cost_usd)) kpi('Cost', fmtCost(rep.cost_usd), fmtCost(rep.saved_usd) ? `${fmtCost(rep.saved_usd)} saved by the cache` : null);
      $('#report-kpis').replaceChildren(...kpis);

      this.renderBottlenecks(Array.isArray(data.bottlenecks) ? data.bottlenecks : [], rep, data);
      this.renderCriticalPath(Array.isArray(rep.critical_path) ? rep.critical_path : [], rep);
      this.renderWhatIf(Array.isArray(data.what_if) ? data.what_if : []);
      this.crit = new Set((rep.critical_path || []).map((s) => s && s.task_id).filter(Boolean));
      this.markDirty();
    }

    renderBottlenecks(list, rep, data) {
      const box = $('#bottlenecks');
      const makespan = isNum(rep.makespan) && rep.makespan > 0 ? rep.makespan : null;
      const known = new Set(['kind', 'subject', 'severity', 'evidence', 'recommendation', 'setting', 'title', 'message', 'advice', 'impact']);
      const items = list.filter((b) => b && typeof b === 'object').map((b) => {
        const sev = isNum(b.severity) ? b.severity : null;
        const share = sev !== null && makespan ? sev / makespan : null;
        const level = share === null ? 'mid' : share >= 0.25 ? 'high' : share >= 0.08 ? 'mid' : 'low';
        const extra = Object.entries(b).filter(([k, v]) => !known.has(k) && v !== null && v !== '' && v !== undefined);
        const impact = sev !== null ? `≈${fmtDur(sev)} at stake${share !== null ? ` (${fmtPct(share)} of the makespan)` : ''}`
          : (b.impact !== undefined && b.impact !== null ? String(b.impact) : null);
        return h('div', { class: `bn sev-${level}`, 'data-testid': 'bottleneck', 'data-kind': b.kind || '' },
          h('div', { class: 'bn-head' },
            h('span', { class: 'bn-kind' }, b.title ? String(b.title) : humanize(b.kind)),
            b.subject ? h('span', { class: 'bn-subject' }, String(b.subject)) : null,
            impact ? h('span', { class: 'bn-sev' }, impact) : null),
          (b.evidence || b.message) ? h('p', { class: 'bn-evidence' }, String(b.evidence || b.message)) : null,
          (b.recommendation || b.advice) ? h('p', { class: 'bn-advice' }, h('span', null, String(b.recommendation || b.advice))) : null,
          b.setting ? h('p', { class: 'bn-setting' }, 'setting: ', h('code', null, String(b.setting))) : null,
          extra.length ? h('dl', { class: 'bn-extra' }, extra.map(([k, v]) => [h('dt', null, humanize(k)),
            h('dd', null, typeof v === 'object' ? JSON.stringify(v) : String(v))])) : null);
      });
      const out = [];
      if (items.length) out.push(h('div', { class: 'bn-list' }, items));
      else out.push(h('p', { class: 'empty-note', 'data-testid': 'no-bottlenecks' }, 'No bottleneck found: nothing held this run back noticeably.'));
      const recurring = Array.isArray(data.recurring) ? data.recurring : [];
      if (recurring.length) {
        out.push(h('h3', { style: 'margin:18px 0 8px' }, 'Recurring'));
        out.push(h('ul', { class: 'small', style: 'margin:0;padding-left:18px' }, recurring.map((r) => h('li', null,
          `${humanize(r.kind)} on `, h('code', null, String(r.subject || '')), ` in ${r.runs ?? '?'} of the last ${r.of ?? '?'} runs`))));
      }
      const anomalies = Array.isArray(data.anomalies) ? data.anomalies : [];
      if (anomalies.length) {
        out.push(h('h3', { style: 'margin:18px 0 8px' }, 'Anomalies'));
        out.push(h('ul', { class: 'small', style: 'margin:0;padding-left:18px' }, anomalies.map((a) => h('li', null,
          a && typeof a === 'object' ? String(a.message || `${a.metric || 'metric'} at ${fmtDur(a.t)}`) : String(a)))));
      }
      box.replaceChildren(...out);
    }

    renderCriticalPath(steps, rep) {
      const list = $('#critical-path');
      setText('#critical-path-note', steps.length
        ? `${steps.length} step${steps.length === 1 ? '' : 's'}${isNum(rep.critical_path_length) ? ` · ${fmtDur(rep.critical_path_length)}` : ''}${isNum(rep.makespan) ? ` of a ${fmtDur(rep.makespan)} makespan` : ''}`
        : '');
      const item = (s) => h('li', { 'data-testid': 'critical-step' },
        h('span', { class: 'cp-dot', style: `background:${this.colorOf(s.agent)}` }),
        h('span', { class: 'cp-task', title: String(s.task_id) }, String(s.task_id), s.agent ? h('span', { class: 'cp-agent' }, String(s.agent)) : null),
        h('span', { class: 'cp-dur' }, fmtDur(s.duration),
          isNum(s.queue_wait) && s.queue_wait >= 0.05 ? h('span', { class: 'cp-wait' }, `+${fmtDur(s.queue_wait)} queued`) : null));
      let rows;
      if (!steps.length) rows = [h('li', { class: 'cp-more' }, h('span'), h('span', null, 'No critical path (no task ran).'))];
      else if (steps.length <= 14) rows = steps.map(item);
      else {
        rows = steps.slice(0, 6).map(item);
        rows.push(h('li', { class: 'cp-more' }, h('span'), h('span', null, `… ${steps.length - 12} more steps …`)));
        rows.push(...steps.slice(-6).map(item));
      }
      list.replaceChildren(...rows);
    }

    renderWhatIf(list) {
      const box = $('#what-if');
      const rows = list.filter((w) => w && typeof w === 'object' && isNum(w.makespan));
      if (!rows.length) { box.replaceChildren(); return; }
      box.replaceChildren(h('div', { class: 'what-if', 'data-testid': 'what-if' },
        h('h3', null, 'What if…'),
        h('table', null, h('tbody', null, rows.map((w) => h('tr', null,
          h('td', { title: w.setting ? `setting: ${w.setting}` : null }, String(w.scenario || w.setting || '')),
          h('td', { class: 'num' }, fmtDur(w.makespan)),
          h('td', { class: `num ${isNum(w.change) && w.change <= -0.005 ? 'gain' : isNum(w.change) && w.change >= 0.005 ? 'loss' : 'muted'}` },
            isNum(w.change) ? `${w.change > 0 ? '+' : ''}${Math.round(w.change * 100)}%` : '')))))));
    }
  }

  // ---------------------------------------------------------------------------------------
  // Start

  function init() {
    takeTokenFromHash();
    loadToken();
    $('#signin-form').addEventListener('submit', (ev) => { submitSignIn(ev); });
    $('#sign-out').addEventListener('click', () => { forgetToken(); state.workflows = null; showSignIn(null); });
    window.addEventListener('hashchange', route);
    // A rejected promise anywhere must not go unnoticed, nor end up as a console error.
    window.addEventListener('unhandledrejection', (ev) => {
      ev.preventDefault();
      if (!isAbort(ev.reason)) banner(`Unexpected error: ${describeError(ev.reason)}`);
    });
    route();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
