
'use strict';
(function () {
  // ---------- DOM helpers: data only ever reaches the page as text nodes ----------
  function el(tag, attrs) {
    var node = document.createElement(tag);
    if (attrs) {
      for (var k in attrs) {
        if (!Object.prototype.hasOwnProperty.call(attrs, k) || attrs[k] === null || attrs[k] === undefined) continue;
        if (k === 'class') node.className = attrs[k];
        else if (k === 'text') node.textContent = String(attrs[k]);
        else if (k.slice(0, 2) === 'on') node.addEventListener(k.slice(2), attrs[k]);
        else node.setAttribute(k, String(attrs[k]));
      }
    }
    for (var i = 2; i < arguments.length; i++) add(node, arguments[i]);
    return node;
  }
  function add(node, child) {
    if (child === null || child === undefined || child === false) return;
    if (Array.isArray(child)) { child.forEach(function (c) { add(node, c); }); return; }
    node.appendChild(typeof child === 'object' ? child : document.createTextNode(String(child)));
  }
  function fmt(v, d) {
    if (v === null || v === undefined || v === '') return '–';
    if (typeof v === 'number') return Number.isInteger(v) ? String(v) : v.toFixed(d === undefined ? 3 : d);
    if (typeof v === 'boolean') return v ? 'true' : 'false';
    return String(v);
  }
  function escapeRe(s) { return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'); }

  // highlight(text, groups): text with every alias of groups[i] marked (class gold g<i>), case-insensitive.
  function highlight(text, groups, maskToo) {
    var frag = document.createDocumentFragment();
    text = String(text === null || text === undefined ? '' : text);
    var terms = [];
    (groups || []).forEach(function (g, i) {
      (g || []).forEach(function (a) { a = String(a).trim(); if (a) terms.push([a, i]); });
    });
    terms.sort(function (x, y) { return y[0].length - x[0].length; });
    // whole words only (as the index's "gold in docs" flag): "15" is not marked inside "1915"
    var parts = terms.map(function (t) { return '(?<![\\p{L}\\p{N}_])' + escapeRe(t[0]).replace(/\s+/g, '\\s+') + '(?![\\p{L}\\p{N}_])'; });
    if (maskToo) parts.unshift('\\[mask\\]');
    if (!parts.length) { frag.appendChild(document.createTextNode(text)); return frag; }
    var lookup = {};
    terms.forEach(function (t) { var key = t[0].toLowerCase().replace(/\s+/g, ' '); if (!(key in lookup)) lookup[key] = t[1]; });
    var re = new RegExp(parts.join('|'), 'giu');
    var last = 0, m;
    while ((m = re.exec(text)) !== null) {
      if (m[0].length === 0) { re.lastIndex++; continue; }
      if (m.index > last) frag.appendChild(document.createTextNode(text.slice(last, m.index)));
      var key = m[0].toLowerCase().replace(/\s+/g, ' ');
      if (maskToo && key === '[mask]') frag.appendChild(el('mark', { class: 'mask' }, m[0]));
      else frag.appendChild(el('mark', { class: 'gold g' + ((lookup[key] || 0) % 6), title: 'gold span ' + ((lookup[key] || 0) + 1) }, m[0]));
      last = m.index + m[0].length;
    }
    if (last < text.length) frag.appendChild(document.createTextNode(text.slice(last)));
    return frag;
  }

  // ---------- index page ----------
  var FILTERS = [
    ['run', 'run'], ['kind', 'kind'], ['ds', 'data_source'], ['step', 'step'], ['acc', 'acc'],
    ['reason', 'format_reason'], ['ns', 'searches'], ['status', 'sft status'], ['sreason', 'sft reason']
  ];
  var COLUMNS = [
    ['k', '#'], ['run', 'run'], ['kind', 'kind'], ['step', 'step'], ['ds', 'data_source'], ['id', 'id'],
    ['q', 'prompt'], ['ans', 'answer'], ['score', 'score'], ['acc', 'acc'], ['fmt', 'format'],
    ['reason', 'format_reason'], ['ns', 'searches'], ['turns', 'turns'], ['missed', 'in docs, not given'],
    ['sreason', 'sft']
  ];

  function parseHash() {
    var out = {};
    location.hash.replace(/^#/, '').split('&').forEach(function (kv) {
      if (!kv) return;
      var i = kv.indexOf('=');
      var k = decodeURIComponent(i < 0 ? kv : kv.slice(0, i));
      out[k] = i < 0 ? '' : decodeURIComponent(kv.slice(i + 1));
    });
    return out;
  }
  function writeHash(state) {
    var parts = [];
    Object.keys(state).forEach(function (k) {
      if (state[k] !== '' && state[k] !== null && state[k] !== undefined) parts.push(encodeURIComponent(k) + '=' + encodeURIComponent(state[k]));
    });
    var h = parts.join('&');
    if (('#' + h) !== location.hash && !(h === '' && location.hash === '')) history.replaceState(null, '', h ? '#' + h : location.pathname);
  }

  function initIndex() {
    var data = window.MS_INDEX;
    if (!data) throw new Error('data/index.js did not load');
    var rows = data.rows;
    var st = parseHash();
    var state = {
      sort: st.sort || 'k', dir: st.dir || 'asc', page: parseInt(st.page || '1', 10) || 1,
      size: Math.min(parseInt(st.size || String(data.page_size), 10) || data.page_size, data.max_page_size),
      missed: st.missed || '', q: st.q || '', g: st.g || ''
    };
    FILTERS.forEach(function (f) { state[f[0]] = st[f[0]] !== undefined ? st[f[0]] : ''; });

    var form = document.getElementById('filters');
    function distinct(key) {
      var seen = {};
      rows.forEach(function (r) { var v = r[key]; if (v !== null && v !== undefined && v !== '') seen[String(v)] = (seen[String(v)] || 0) + 1; });
      var keys = Object.keys(seen);
      var numeric = keys.every(function (x) { return !isNaN(parseFloat(x)); });
      keys.sort(numeric ? function (a, b) { return parseFloat(a) - parseFloat(b); } : undefined);
      return keys.map(function (k) { return [k, seen[k]]; });
    }
    FILTERS.forEach(function (f) {
      var values = distinct(f[0]);
      if (values.length < 2) return;  // nothing to choose (one run, no steps, no SFT status...)
      var sel = el('select', { name: f[0], 'data-filter': f[0] }, el('option', { value: '' }, 'all'));
      values.forEach(function (v) { sel.appendChild(el('option', { value: v[0] }, v[0] + ' (' + v[1] + ')')); });
      sel.value = state[f[0]];
      sel.addEventListener('change', function () { state[f[0]] = sel.value; state.page = 1; render(); });
      form.appendChild(el('label', null, f[1], sel));
    });
    var missed = el('input', { type: 'checkbox', name: 'missed', id: 'f-missed' });
    missed.checked = state.missed === '1';
    missed.addEventListener('change', function () { state.missed = missed.checked ? '1' : ''; state.page = 1; render(); });
    form.appendChild(el('label', { class: 'check', title: 'a gold span occurs in a retrieved document, but acc < 1' }, missed, 'answer in a retrieved document but not given'));
    var q = el('input', { type: 'text', name: 'q', placeholder: 'text in id / prompt / answer', value: state.q });
    q.addEventListener('input', function () { state.q = q.value; state.page = 1; render(); });
    form.appendChild(el('label', null, 'search', q));
    var sizeSel = el('select', { name: 'size' });
    [25, 50, 100, 200, 500].filter(function (n) { return n <= data.max_page_size; }).forEach(function (n) { sizeSel.appendChild(el('option', { value: n }, String(n))); });
    if (!sizeSel.querySelector("option[value='" + state.size + "']")) sizeSel.appendChild(el('option', { value: state.size }, String(state.size)));
    sizeSel.value = String(state.size);
    sizeSel.addEventListener('change', function () { state.size = parseInt(sizeSel.value, 10); state.page = 1; render(); });
    form.appendChild(el('label', null, 'rows / page', sizeSel));
    var groupBox = el('span', { id: 'group-filter' });
    form.appendChild(groupBox);
    var reset = el('button', { type: 'button', id: 'reset' }, 'reset');
    reset.addEventListener('click', function () {
      FILTERS.forEach(function (f) { state[f[0]] = ''; });
      state.missed = ''; state.q = ''; state.g = ''; state.page = 1;
      form.querySelectorAll('select[data-filter]').forEach(function (s) { s.value = ''; });
      missed.checked = false; q.value = ''; render();
    });
    form.appendChild(reset);

    var table = document.getElementById('rows');
    var thead = el('thead'), tbody = el('tbody');
    var tr = el('tr');
    // columns that say nothing here are left out (one run, one kind, no steps, no SFT status)
    var hidden = {};
    if (distinct('run').length < 2) hidden.run = true;
    if (distinct('kind').length < 2) hidden.kind = true;
    if (!data.has_steps) hidden.step = true;
    if (!distinct('status').length) hidden.sreason = true;
    var columns = COLUMNS.filter(function (c) { return !hidden[c[0]]; });
    columns.forEach(function (c) {
      var th = el('th', { 'data-col': c[0] }, c[1].split('_').map(function (w, i) { return i ? ['_', el('wbr'), w] : w; }));  // may break after '_'
      th.addEventListener('click', function () {
        if (state.sort === c[0]) state.dir = state.dir === 'asc' ? 'desc' : 'asc';
        else { state.sort = c[0]; state.dir = (c[0] === 'score' || c[0] === 'acc') ? 'desc' : 'asc'; }
        state.page = 1; render();
      });
      tr.appendChild(th);
    });
    thead.appendChild(tr); table.appendChild(thead); table.appendChild(tbody);

    function matches(r) {
      for (var i = 0; i < FILTERS.length; i++) {
        var key = FILTERS[i][0], want = state[key];
        if (want !== '' && String(r[key] === null || r[key] === undefined ? '' : r[key]) !== want) return false;
      }
      if (state.missed === '1' && !r.missed) return false;
      if (state.g && r.g !== state.g) return false;
      if (state.q) {
        var needle = state.q.toLowerCase();
        if ((r.id + ' ' + r.q + ' ' + r.ans).toLowerCase().indexOf(needle) < 0) return false;
      }
      return true;
    }
    function cmp(a, b) {
      var x = a[state.sort], y = b[state.sort];
      var nx = x === null || x === undefined || x === '', ny = y === null || y === undefined || y === '';
      if (nx || ny) return nx && ny ? a.k - b.k : (nx ? 1 : -1);
      var r;
      if (typeof x === 'number' && typeof y === 'number') r = x - y;
      else if (typeof x === 'boolean') r = (x ? 1 : 0) - (y ? 1 : 0);
      else r = String(x).localeCompare(String(y));
      if (r === 0) r = a.k - b.k;
      return state.dir === 'asc' ? r : -r;
    }
    function pager(box, total, pages) {
      while (box.firstChild) box.removeChild(box.firstChild);
      var prev = el('button', { type: 'button', class: 'prev' }, '‹ prev');
      var next = el('button', { type: 'button', class: 'next' }, 'next ›');
      prev.disabled = state.page <= 1; next.disabled = state.page >= pages;
      prev.addEventListener('click', function () { state.page--; render(); });
      next.addEventListener('click', function () { state.page++; render(); });
      add(box, [prev, el('span', { class: 'page' }, 'page ' + state.page + ' / ' + pages), next]);
    }
    function render() {
      var filtered = rows.filter(matches);
      filtered.sort(cmp);
      var pages = Math.max(1, Math.ceil(filtered.length / state.size));
      state.page = Math.min(Math.max(1, state.page), pages);
      var start = (state.page - 1) * state.size;
      var shown = filtered.slice(start, start + state.size);
      while (tbody.firstChild) tbody.removeChild(tbody.firstChild);
      shown.forEach(function (r) {
        var link = 'sample.html#' + r.k;
        var accBadge = r.acc === null ? '–' : el('span', { class: 'badge ' + (r.acc >= 1 ? 'ok' : 'bad') }, fmt(r.acc, 2));
        var fmtBadge = r.fmt === null ? '–' : el('span', { class: 'badge ' + (r.fmt >= 1 ? 'ok' : 'bad') }, r.fmt >= 1 ? 'ok' : 'bad');
        var sft = r.status ? el('span', { class: 'badge ' + (r.status === 'kept' ? 'ok' : 'bad') }, r.status + (r.sreason && r.sreason !== 'ok' ? ': ' + r.sreason : '')) : '';
        var cells = {
          k: el('td', { class: 'num' }, el('a', { href: link }, String(r.k))),
          run: el('td', { class: 'run' }, String(r.run).split('/').map(function (w, i) { return i ? ['/', el('wbr'), w] : w; })), kind: el('td', null, r.kind),
          step: el('td', { class: 'num' }, r.step === null ? '' : el('a', { href: '#g=' + r.g + '&sort=step', title: 'follow this prompt across steps', class: 'follow' }, String(r.step))),
          ds: el('td', { class: 'ds' }, r.ds), id: el('td', { class: 'id' }, el('a', { href: link }, r.id)),
          q: el('td', { class: 'q' }, highlight(r.q, [], true)), ans: el('td', { class: 'ans' }, r.ans),
          score: el('td', { class: 'num' }, fmt(r.score)), acc: el('td', { class: 'num' }, accBadge), fmt: el('td', null, fmtBadge),
          reason: el('td', null, r.reason), ns: el('td', { class: 'num' }, String(r.ns)), turns: el('td', { class: 'num' }, String(r.turns)),
          missed: el('td', null, r.missed ? el('span', { class: 'badge warn' }, 'yes') : ''), sreason: el('td', null, sft)
        };
        tbody.appendChild(el('tr', { 'data-k': r.k, class: 'row' }, columns.map(function (c) { return cells[c[0]]; })));
      });
      thead.querySelectorAll('th').forEach(function (th) {
        th.className = th.getAttribute('data-col') === state.sort ? 'sorted-' + state.dir : '';
      });
      document.getElementById('count').textContent = filtered.length === rows.length
        ? rows.length + ' samples' : filtered.length + ' of ' + rows.length + ' samples';
      var n = filtered.length, s = 0, a = 0, f = 0, ns = 0, mi = 0, ns_ = 0, na = 0, nf = 0;
      filtered.forEach(function (r) {
        if (typeof r.score === 'number') { s += r.score; ns_++; }
        if (typeof r.acc === 'number') { a += r.acc; na++; }
        if (typeof r.fmt === 'number') { f += r.fmt; nf++; }
        ns += r.ns; if (r.missed) mi++;
      });
      document.getElementById('fsummary').textContent = n ? '· mean score ' + fmt(ns_ ? s / ns_ : null) + ' · acc ' + fmt(na ? a / na : null) +
        ' · format ok ' + fmt(nf ? f / nf : null) + ' · searches/sample ' + fmt(ns / n, 2) + ' · gold in docs, not given: ' + mi : '';
      while (groupBox.firstChild) groupBox.removeChild(groupBox.firstChild);
      if (state.g) {
        var clear = el('button', { type: 'button' }, '× show all prompts');
        clear.addEventListener('click', function () { state.g = ''; state.page = 1; render(); });
        add(groupBox, [el('span', { class: 'badge warn' }, 'one prompt: ' + state.g), ' ', clear]);
      }
      pager(document.getElementById('pager-top'), filtered.length, pages);
      pager(document.getElementById('pager-bottom'), filtered.length, pages);
      var h = { sort: state.sort === 'k' ? '' : state.sort, dir: state.dir === 'asc' ? '' : state.dir,
                page: state.page === 1 ? '' : state.page, size: state.size === data.page_size ? '' : state.size,
                missed: state.missed, q: state.q, g: state.g };
      FILTERS.forEach(function (f) { h[f[0]] = state[f[0]]; });
      writeHash(h);
      document.body.setAttribute('data-rows', String(shown.length));
      document.body.setAttribute('data-filtered', String(filtered.length));
      document.body.setAttribute('data-ready', '1');
    }
    window.addEventListener('hashchange', function () {
      var h = parseHash();
      if ((h.g || '') !== state.g) { state.g = h.g || ''; if (h.sort) state.sort = h.sort; state.page = 1; render(); }
    });
    render();
  }

  // ---------- sample page ----------
  var chunks = {};
  window.MS_CHUNK = function (c, records) { chunks[c] = records; };

  function loadChunk(c, done) {
    if (chunks[c]) { done(); return; }
    var s = document.createElement('script');
    s.src = 'data/s/' + String(c).padStart(5, '0') + '.js';
    s.onload = done;
    s.onerror = function () { window.__msAddError('could not load ' + s.src); };
    document.body.appendChild(s);
  }

  function kv(table, key, value, title, cls) {
    table.appendChild(el('tr', { class: cls || null }, el('td', { title: title || null }, key), el('td', null, value)));
  }
  function badgeBool(v, good) {
    if (v === null || v === undefined) return '–';
    var ok = good === undefined ? !!v : v === good;
    return el('span', { class: 'badge ' + (ok ? 'ok' : 'bad') }, fmt(v, 3));
  }

  function renderSample(root, s, meta) {
    while (root.firstChild) root.removeChild(root.firstChild);
    document.title = 'sample ' + s.k + ' · ' + s.id;
    var nav = el('p', { class: 'note' },
      s.k > 0 ? [el('a', { href: '#' + (s.k - 1), id: 'prev' }, '‹ previous'), ' · '] : '',
      el('a', { href: 'index.html' }, 'index'),
      s.k + 1 < meta.total ? [' · ', el('a', { href: '#' + (s.k + 1), id: 'next' }, 'next ›')] : '');
    var head = el('h1', null, 'Sample ' + s.k + ' ', el('span', { class: 'note' }, s.id));
    var sub = el('p', { class: 'note' }, 'run ' + s.run + ' · ' + s.kind + (s.step !== null ? ' · step ' + s.step : '') + ' · data_source ' + s.data_source +
      (s.stop_reason ? ' · stop ' + s.stop_reason : ''));
    root.appendChild(nav); root.appendChild(head); root.appendChild(sub);
    if (s.error) root.appendChild(el('p', { class: 'badge bad' }, 'error: ' + s.error));
    if (s.status) root.appendChild(el('p', null, el('span', { class: 'badge ' + (s.status === 'kept' ? 'ok' : 'bad') }, 'sft ' + s.status + (s.reason ? ': ' + s.reason : '')), s.detail ? ' ' + s.detail : ''));

    var main = el('div', { class: 'main' });
    var side = el('div', { class: 'side' });
    root.appendChild(el('div', { class: 'grid' }, main, side));

    // prompt
    main.appendChild(el('h2', null, 'Prompt'));
    (s.prompt || []).forEach(function (m) {
      var body = el('div', { class: 'pre' }, highlight(m.content, [], true));
      if (m.role === 'system') main.appendChild(el('details', { class: 'msg system' }, el('summary', { class: 'role' }, 'system (click to open)'), body));
      else main.appendChild(el('div', { class: 'msg ' + m.role }, el('div', { class: 'role' }, m.role), body));
    });

    // turns
    main.appendChild(el('h2', null, 'Response'));
    var turn = 1, opened = false;
    function turnHead() { main.appendChild(el('div', { class: 'turn-head' }, 'turn ' + turn)); opened = true; }
    if (!(s.blocks || []).length) main.appendChild(el('p', { class: 'note' }, '(empty response)'));
    (s.blocks || []).forEach(function (b) {
      var kind = b[0], content = b[1], closed = b[2];
      if (!opened) turnHead();
      var failed = kind === 'information' && !(b[3] || []).length && /^\s*Search failed:/.test(content);
      var box = el('div', { class: 'block ' + kind + (failed ? ' failed' : '') });
      box.appendChild(el('div', { class: 'kind' }, kind + (closed ? '' : ' (unclosed)')));
      if (kind === 'information') {
        var docs = b[3] || [];
        if (docs.length) {
          docs.forEach(function (d) {
            box.appendChild(el('div', { class: 'doc' }, el('span', { class: 'title' }, 'Doc ' + d[0] + ' · ' + d[1]), ' ', el('span', { class: 'pre' }, highlight(d[2], s.golds, false))));
          });
        } else {
          box.appendChild(el('div', { class: 'pre' }, highlight(content, s.golds, false)));
        }
      } else if (kind === 'answer') {
        box.appendChild(el('div', { class: 'pre' }, highlight(content, s.golds, false)));
      } else {
        box.appendChild(el('div', { class: 'pre' }, content));
      }
      main.appendChild(box);
      if (kind === 'information') { turn++; opened = false; }
    });

    // side: answer, golds, rewards, stats, same prompt
    side.appendChild(el('h2', null, 'Answer'));
    side.appendChild(el('div', { class: 'answer-box pre', id: 'answer' }, s.answer === null || s.answer === undefined ? '(none)' : highlight(s.answer, s.golds, false)));
    side.appendChild(el('h2', null, 'Gold'));
    var ol = el('ol', { class: 'golds' });
    (s.golds || []).forEach(function (g, i) {
      ol.appendChild(el('li', null, (g || []).length ? (g || []).map(function (a, j) { return [j ? ' / ' : '', el('mark', { class: 'gold g' + (i % 6) }, a)]; }) : '(none)'));
    });
    side.appendChild(ol);
    side.appendChild(el('p', { class: 'note' }, s.gold_in_docs ? (s.missed ? 'A gold span occurs in a retrieved document, but the answer is not right.' : 'A gold span occurs in a retrieved document.') : 'No gold span occurs in the retrieved documents.'));

    side.appendChild(el('h2', null, 'Reward'));
    var rt = el('table', { id: 'rewards' });
    var r = s.rewards || {};
    var shown = ['score', 'acc', 'answer_score', 'format_ok', 'format_reason', 'num_searches'];
    var parts = s.score_parts || [];
    var partTitles = {
      reward_fn_score: 'the reward function\'s score (masksearch.rewards.compute_score)',
      overlong_reward: 'verl\'s dapo reward manager: the overlong penalty (reward.reward_kwargs.overlong_buffer_cfg)',
      unexplained: 'in the score verl trained on, but not in the parts the dump records'
    };
    shown.forEach(function (key) {
      var v = r[key];
      kv(rt, key, key === 'acc' || key === 'format_ok' ? badgeBool(v === null || v === undefined ? null : v >= 1, true) : (key === 'format_reason' ? el('span', { class: 'badge ' + (v === 'ok' ? 'ok' : 'bad') }, fmt(v)) : fmt(v)));
      if (key === 'score') parts.forEach(function (p, i) { kv(rt, (i ? '+ ' : '= ') + p, fmt(r[p]), partTitles[p], 'part ' + p); });
    });
    Object.keys(r).forEach(function (key) {
      if (shown.indexOf(key) < 0 && parts.indexOf(key) < 0) kv(rt, key, fmt(r[key]));
    });
    side.appendChild(rt);
    var verl = s.kind === 'rollout' || s.kind === 'validation';
    side.appendChild(el('p', { class: 'note' }, s.rewards_source === 'recomputed'
      ? 'Reward parts recomputed by the viewer with masksearch.rewards.compute_score at its defaults (recall, format gate)' + (verl ? '; score is the reward verl logged.' : '.')
      : 'Reward parts as logged by the source' + (verl ? '; score is the reward verl trained on.' : '.')));
    if (parts.indexOf('overlong_reward') >= 0) side.appendChild(el('p', { class: 'note', id: 'overlong-note' },
      'overlong_reward: verl\'s dapo reward manager penalises responses that reach the last overlong_buffer_cfg.len tokens of the budget (0 down to -penalty_factor); score = the parts above.'));
    if (parts.indexOf('unexplained') >= 0) side.appendChild(el('p', { class: 'note warn', id: 'unexplained-note' },
      'unexplained: the score differs from the reward function\'s by ' + fmt(r.unexplained) + ' and the dump does not record why; ' +
      'likely the dapo overlong penalty with overlong_buffer_cfg.log off (turn it on to record overlong_reward)' +
      (s.rewards_source === 'recomputed' ? ', or a reward config other than compute_score\'s defaults.' : '.')));
    side.appendChild(el('h2', null, 'Env stats'));
    var et = el('table', { id: 'stats' });
    Object.keys(s.stats || {}).forEach(function (key) { kv(et, key, fmt(s.stats[key])); });
    side.appendChild(et);
    if (s.stats_source === 'derived') side.appendChild(el('p', { class: 'note' }, 'Derived from the text (verl dumps carry no env stats).'));
    var terr = (s.extra && s.extra.turn_errors) || [];
    if (terr.length) { side.appendChild(el('h3', null, 'Retrieval errors')); terr.forEach(function (e) { side.appendChild(el('p', { class: 'badge bad' }, e)); }); }
    if (s.same_prompt) {
      side.appendChild(el('h2', null, 'Same prompt elsewhere'));
      var st = el('table', { id: 'same-prompt' });
      st.appendChild(el('tr', null, el('th', null, '#'), el('th', null, 'run / kind'), el('th', null, 'step'), el('th', null, 'score')));
      s.same_prompt.forEach(function (o) {
        st.appendChild(el('tr', { class: o[0] === s.k ? 'self' : '' }, el('td', null, o[0] === s.k ? String(o[0]) + ' (this)' : el('a', { href: '#' + o[0] }, String(o[0]))), el('td', null, o[1] === s.run ? o[2] : o[1] + ' ' + o[2]), el('td', null, fmt(o[3])), el('td', null, fmt(o[4]))));
      });
      side.appendChild(st);
      side.appendChild(el('p', { class: 'note' }, el('a', { href: 'index.html#g=' + s.group + '&sort=step' }, 'all ' + s.same_prompt_total + ' in the index')));
    }
    document.body.setAttribute('data-ready', '1');
  }

  function initSample() {
    var meta = window.MS_META;
    if (!meta) throw new Error('data/meta.js did not load');
    var root = document.getElementById('sample');
    function show() {
      var k = parseInt(location.hash.replace(/^#/, '') || '0', 10);
      if (!(k >= 0 && k < meta.total)) {
        while (root.firstChild) root.removeChild(root.firstChild);
        root.appendChild(el('p', { class: 'badge bad' }, 'no sample #' + location.hash.replace(/^#/, '') + ' (there are ' + meta.total + ')'));
        document.body.setAttribute('data-ready', '1');
        return;
      }
      var c = Math.floor(k / meta.chunk_size);
      loadChunk(c, function () { renderSample(root, chunks[c][k - c * meta.chunk_size], meta); window.scrollTo(0, 0); });
    }
    window.addEventListener('hashchange', show);
    show();
  }

  // ---------- compare page ----------
  function initCompare() {
    var data = window.MS_COMPARE;
    if (!data) throw new Error('data/compare.js did not load');
    document.getElementById('cmp-count').textContent = data.rows.length + ' of ' + data.n_common + ' common samples changed score (matched by sample id; A: ' +
      data.n_a + ' samples, B: ' + data.n_b + '; only in A: ' + data.only_a + ', only in B: ' + data.only_b + ')';
    var t = document.getElementById('cmp');
    t.appendChild(el('thead', null, el('tr', null, ['id', 'prompt', 'score A', 'score B', 'Δ', 'acc A', 'acc B', 'answer A', 'answer B'].map(function (h) { return el('th', null, h); }))));
    var tb = el('tbody');
    data.rows.forEach(function (r) {
      tb.appendChild(el('tr', { class: 'row' }, el('td', { class: 'id' }, r.id), el('td', { class: 'q' }, highlight(r.q, [], true)),
        el('td', { class: 'num' }, el('a', { href: 'sample.html#' + r.ka }, fmt(r.sa))), el('td', { class: 'num' }, el('a', { href: 'sample.html#' + r.kb }, fmt(r.sb))),
        el('td', { class: 'num ' + (r.d > 0 ? 'delta-pos' : 'delta-neg') }, (r.d > 0 ? '+' : '') + fmt(r.d)), el('td', { class: 'num' }, fmt(r.acc_a)), el('td', { class: 'num' }, fmt(r.acc_b)),
        el('td', { class: 'ans' }, r.ans_a), el('td', { class: 'ans' }, r.ans_b)));
    });
    t.appendChild(tb);
    document.body.setAttribute('data-rows', String(data.rows.length));
    document.body.setAttribute('data-ready', '1');
  }

  function start() {
    var page = document.body.getAttribute('data-page');
    try {
      if (page === 'index') initIndex();
      else if (page === 'sample') initSample();
      else if (page === 'compare') initCompare();
    } catch (e) {
      window.__msAddError(e && e.stack ? e.stack : String(e));
      document.body.setAttribute('data-ready', '1');
    }
  }
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start); else start();
})();
