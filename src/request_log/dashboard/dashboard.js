// switchboard dashboard: reads the request log's HTTP API and draws its charts as inline SVG.
// Every value is rendered with textContent or as an SVG attribute: never as markup.
(function () {
  'use strict';

  var KEY_ITEM = 'switchboard-admin-key';
  var SVG = 'http://www.w3.org/2000/svg';
  var COLORS = ['#2f6fde', '#e8793a', '#2aa876', '#c94f9b', '#8d6bd8', '#d4a72c', '#3bb3c3',
    '#b3261e', '#6b7b8c', '#7fae3c'];
  var meta = document.querySelector('meta[name="switchboard-api-base"]');
  var apiBase = meta && meta.content && meta.content.indexOf('{{') < 0 ? meta.content : '';
  var timer = null;
  var loading = false;

  function $(id) { return document.getElementById(id); }

  // The admin key: from the fragment (#key=…, never sent to the server), else this tab's
  // sessionStorage. The fragment is removed from the address bar at once.
  function takeKey() {
    var m = /(?:^#|&)key=([^&]*)/.exec(location.hash || '');
    if (m) {
      try { sessionStorage.setItem(KEY_ITEM, decodeURIComponent(m[1])); } catch (e) { /* private mode */ }
      history.replaceState(null, '', location.pathname + location.search);
    }
  }
  function key() {
    try { return sessionStorage.getItem(KEY_ITEM) || ''; } catch (e) { return ''; }
  }

  function url(path, params) {
    var u = new URL(apiBase + 'api/v1/' + path, location.href);
    Object.keys(params || {}).forEach(function (k) {
      if (params[k] !== undefined && params[k] !== null) { u.searchParams.set(k, String(params[k])); }
    });
    return u;
  }

  function api(path, params) {
    var headers = { Accept: 'application/json' };
    var k = key();
    if (k) { headers.Authorization = 'Bearer ' + k; }
    return fetch(url(path, params), { headers: headers, credentials: 'omit', cache: 'no-store' })
      .then(function (r) {
        if (r.status === 401) { var e = new Error('unauthorized'); e.auth = true; throw e; }
        return r.json().then(function (body) {
          if (!r.ok) { throw new Error((body && body.error && body.error.message) || ('HTTP ' + r.status)); }
          return body;
        });
      });
  }

  // ---- formatting -------------------------------------------------------------------------
  function usd(v) {
    v = Number(v) || 0;
    if (v === 0) { return '$0'; }
    if (Math.abs(v) < 0.01) { return '$' + v.toPrecision(3); }
    return '$' + v.toFixed(2);
  }
  function num(v) { return v === null || v === undefined ? '–' : Number(v).toLocaleString('en-US'); }
  function ms(v) { return v === null || v === undefined ? '–' : num(v) + ' ms'; }
  function score(v) { return v === null || v === undefined ? '–' : Number(v).toFixed(2); }
  function label(v) { return v === null || v === undefined || v === '' ? '(none)' : String(v); }

  function node(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    if (cls) { e.className = cls; }
    return e;
  }
  function svg(tag, attrs, parent) {
    var e = document.createElementNS(SVG, tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, String(attrs[k])); });
    if (parent) { parent.appendChild(e); }
    return e;
  }
  function svgText(parent, x, y, text, anchor) {
    var t = svg('text', { x: x, y: y, 'text-anchor': anchor || 'start' }, parent);
    t.textContent = String(text);
    return t;
  }
  function title(parent, text) { svg('title', {}, parent).textContent = String(text); }
  function clear(e) { while (e.firstChild) { e.removeChild(e.firstChild); } return e; }

  function legend(id, names) {
    var ul = clear($(id));
    names.forEach(function (n, i) {
      var li = node('li');
      var sw = node('i');
      sw.style.background = COLORS[i % COLORS.length];
      li.appendChild(sw);
      li.appendChild(document.createTextNode(label(n)));
      ul.appendChild(li);
    });
  }

  function nice(max) {
    if (!(max > 0)) { return 1; }
    var p = Math.pow(10, Math.floor(Math.log10(max)));
    var steps = [1, 2, 2.5, 5, 10];
    for (var i = 0; i < steps.length; i++) { if (steps[i] * p >= max) { return steps[i] * p; } }
    return 10 * p;
  }

  // A frame: the SVG, the plot area, y gridlines with labels.
  function frame(container, max, fmt) {
    var W = 960, H = 300, L = 78, R = 10, T = 10, B = 42;
    var s = svg('svg', { viewBox: '0 0 ' + W + ' ' + H, role: 'img' });
    clear(container).appendChild(s);
    var top = nice(max);
    for (var i = 0; i <= 4; i++) {
      var y = T + (H - T - B) * (1 - i / 4);
      svg('line', { x1: L, x2: W - R, y1: y, y2: y, 'class': 'grid' }, s);
      svgText(s, L - 6, y + 4, fmt(top * i / 4), 'end');
    }
    svg('line', { x1: L, x2: L, y1: T, y2: H - B, 'class': 'axis' }, s);
    return { s: s, x0: L, x1: W - R, y0: H - B, y1: T, top: top, H: H };
  }
  function xLabels(f, cats, xOf) {
    var every = Math.max(1, Math.ceil(cats.length / 8));
    cats.forEach(function (c, i) {
      if (i % every === 0) { svgText(f.s, xOf(i), f.y0 + 16, shortTime(c), 'middle'); }
    });
  }
  function shortTime(c) {
    c = String(c);
    var m = /^\d{4}-(\d\d-\d\d)(?:T(\d\d:\d\d))?/.exec(c);
    return m ? (m[2] ? m[1] + ' ' + m[2] : m[1]) : (c.length > 28 ? c.slice(0, 27) + '…' : c);
  }
  function empty(container) {
    clear(container).appendChild(node('div', 'No requests in this range.', 'empty'));
  }

  // Stacked bars: one bar per category, one segment per series.
  function stacked(container, cats, series, fmt) {
    var totals = cats.map(function (_, i) {
      return series.reduce(function (a, s) { return a + (s.values[i] || 0); }, 0);
    });
    if (!cats.length) { empty(container); return; }
    var f = frame(container, Math.max.apply(null, totals), fmt);
    var slot = (f.x1 - f.x0) / cats.length;
    var bw = Math.max(2, Math.min(48, slot * 0.7));
    var xOf = function (i) { return f.x0 + slot * i + slot / 2; };
    cats.forEach(function (c, i) {
      var acc = 0;
      series.forEach(function (s, k) {
        var v = s.values[i] || 0;
        if (v <= 0) { return; }
        var y = f.y0 - (f.y0 - f.y1) * (acc + v) / f.top;
        var h = (f.y0 - f.y1) * v / f.top;
        var r = svg('rect', { x: xOf(i) - bw / 2, y: y, width: bw, height: Math.max(h, 0.5),
          fill: COLORS[k % COLORS.length] }, f.s);
        title(r, label(s.name) + ' · ' + c + ': ' + fmt(v));
        acc += v;
      });
    });
    xLabels(f, cats, xOf);
  }

  // Lines: one polyline per series over the categories.
  function lines(container, cats, series, fmt) {
    if (!cats.length) { empty(container); return; }
    var max = 0;
    series.forEach(function (s) { s.values.forEach(function (v) { max = Math.max(max, v || 0); }); });
    var f = frame(container, max, fmt);
    var step = cats.length > 1 ? (f.x1 - f.x0 - 20) / (cats.length - 1) : 0;
    var xOf = function (i) { return f.x0 + 10 + step * i + (cats.length > 1 ? 0 : (f.x1 - f.x0 - 20) / 2); };
    var yOf = function (v) { return f.y0 - (f.y0 - f.y1) * (v || 0) / f.top; };
    series.forEach(function (s, k) {
      var color = COLORS[k % COLORS.length];
      var pts = s.values.map(function (v, i) { return xOf(i).toFixed(1) + ',' + yOf(v).toFixed(1); });
      svg('polyline', { points: pts.join(' '), fill: 'none', stroke: color, 'stroke-width': 2 }, f.s);
      s.values.forEach(function (v, i) {
        var c = svg('circle', { cx: xOf(i), cy: yOf(v), r: 3, fill: color }, f.s);
        title(c, s.name + ' · ' + cats[i] + ': ' + fmt(v || 0));
      });
    });
    xLabels(f, cats, xOf);
  }

  // Grouped bars: one group per category, one bar per series.
  function grouped(container, cats, series, fmt) {
    if (!cats.length) { empty(container); return; }
    var max = 0;
    series.forEach(function (s) { s.values.forEach(function (v) { max = Math.max(max, v || 0); }); });
    var f = frame(container, max, fmt);
    var slot = (f.x1 - f.x0) / cats.length;
    var bw = Math.max(2, Math.min(18, slot * 0.8 / series.length));
    var xOf = function (i) { return f.x0 + slot * i + slot / 2; };
    cats.forEach(function (c, i) {
      series.forEach(function (s, k) {
        var v = s.values[i];
        if (v === null || v === undefined) { return; }
        var h = (f.y0 - f.y1) * v / f.top;
        var x = xOf(i) - (bw * series.length) / 2 + bw * k;
        var r = svg('rect', { x: x, y: f.y0 - h, width: bw - 1, height: Math.max(h, 0.5),
          fill: COLORS[k % COLORS.length] }, f.s);
        title(r, c + ' · ' + s.name + ': ' + fmt(v));
      });
    });
    xLabels(f, cats, xOf);
  }

  // ---- tables -------------------------------------------------------------------------------
  function table(id, head, rows) {
    var t = clear($(id));
    var tr = node('tr');
    head.forEach(function (h) { tr.appendChild(node('th', h)); });
    t.appendChild(node('thead')).appendChild(tr);
    var body = t.appendChild(node('tbody'));
    if (!rows.length) {
      var td = node('td', 'No requests in this range.');
      td.colSpan = head.length;
      body.appendChild(node('tr')).appendChild(td);
    }
    rows.forEach(function (r) {
      var row = body.appendChild(node('tr'));
      r.forEach(function (cell) {
        if (cell instanceof Node) { row.appendChild(node('td')).appendChild(cell); } else { row.appendChild(node('td', cell)); }
      });
    });
  }
  function figuresTable(id, rows, dim) {
    rows = rows.slice().sort(function (a, b) { return (b.cost || 0) - (a.cost || 0); });
    table(id, [dim, 'requests', 'errors', 'cost', 'tokens in', 'tokens out', 'feedback'], rows.map(function (r) {
      return [label(r[dim]), num(r.requests), num(r.errors), usd(r.cost), num(r.tokens_prompt),
        num(r.tokens_completion), score(r.feedback_mean) + (r.feedback_count ? ' (' + r.feedback_count + ')' : '')];
    }));
  }

  // ---- the views ----------------------------------------------------------------------------
  function pivot(rows, bucket, dim, field) {
    var cats = [], names = [];
    rows.forEach(function (r) {
      if (cats.indexOf(r[bucket]) < 0) { cats.push(r[bucket]); }
      if (dim && names.indexOf(r[dim]) < 0) { names.push(r[dim]); }
    });
    cats.sort();
    return {
      cats: cats,
      series: names.map(function (n) {
        var values = cats.map(function () { return 0; });
        rows.forEach(function (r) { if (r[dim] === n) { values[cats.indexOf(r[bucket])] += Number(r[field]) || 0; } });
        return { name: n, values: values };
      })
    };
  }

  function showGeneration(id) {
    var pre = $('generation');
    pre.hidden = false;
    pre.textContent = 'Loading ' + id + '…';
    api('generation', { id: id }).then(function (g) {
      pre.textContent = JSON.stringify(g.data, null, 2);
    }, function (e) { pre.textContent = String(e.message || e); });
  }

  function shadowView(c) {
    var box = clear($('shadow'));
    var groups = (c && c.groups) || [];
    if (!groups.length) {
      box.appendChild(node('p', 'No shadow copies in this range ([[routing.shadows]] in the config).', 'hint'));
      return;
    }
    var metrics = [
      ['requests', num, 0], ['errors', num, -1], ['cost', usd, -1], ['latency_p50_ms', ms, -1],
      ['latency_p95_ms', ms, -1], ['ttft_p50_ms', ms, -1], ['ttft_p95_ms', ms, -1],
      ['tokens_prompt', num, 0], ['tokens_completion', num, 0], ['feedback_mean', score, 1]
    ];
    groups.forEach(function (g, gi) {
      var div = box.appendChild(node('div', null, 'shadow-group'));
      div.appendChild(node('h3', label(g.source) + ' → ' + label(g.candidate)));
      var id = 'shadow-t-' + gi;
      var t = node('table');
      t.id = id;
      div.appendChild(node('div', null, 'scroll')).appendChild(t);
      table(id, ['', 'primary', 'shadow'], metrics.map(function (m) {
        var p = g.primary[m[0]], s = g.shadow[m[0]];
        var cell = node('span', m[1](s));
        if (m[2] && p !== null && s !== null && p !== undefined && s !== undefined && p !== s) {
          cell.className = (s - p) * m[2] > 0 ? 'better' : 'worse';
        }
        return [m[0].replace(/_/g, ' '), m[1](p), cell];
      }));
    });
    var pairs = (c && c.pairs) || [];
    if (pairs.length) {
      box.appendChild(node('h3', 'Latest pairs'));
      var t = node('table');
      t.id = 'shadow-pairs';
      box.appendChild(node('div', null, 'scroll')).appendChild(t);
      table('shadow-pairs', ['primary', 'model', 'cost', 'latency', 'shadow', 'model', 'cost', 'latency', 'status'],
        pairs.map(function (p) {
          var a = p.primary, b = p.shadow;
          return [genLink(a.id), label(a.model), usd(a.total_cost), ms(a.latency), genLink(b.id),
            label(b.model), usd(b.total_cost), ms(b.latency), a.status + ' / ' + b.status];
        }));
    }
  }

  function genLink(id) {
    var a = node('a', id);
    a.href = url('generation', { id: id }).toString();
    a.addEventListener('click', function (e) { e.preventDefault(); showGeneration(id); });
    return a;
  }

  function totals(byModel) {
    var t = { requests: 0, errors: 0, cost: 0, shadow_cost: 0, fallbacks: 0, cache_hits: 0 };
    byModel.forEach(function (r) { Object.keys(t).forEach(function (k) { t[k] += Number(r[k]) || 0; }); });
    var box = clear($('totals'));
    [['requests', num(t.requests)], ['errors', num(t.errors)], ['spend', usd(t.cost)],
      ['shadow spend', usd(t.shadow_cost)], ['fallbacks', num(t.fallbacks)], ['cache hits', num(t.cache_hits)]]
      .forEach(function (p) {
        var d = box.appendChild(node('div'));
        d.appendChild(node('b', p[1]));
        d.appendChild(node('span', p[0]));
      });
  }

  function status(text, error) {
    var s = $('status');
    s.textContent = text;
    s.className = error ? 'error' : '';
  }

  function load() {
    if (loading) { return; }
    loading = true;
    document.body.removeAttribute('data-ready');
    var range = Number($('range').value) || 86400;
    var from = Math.floor(Date.now() / 1000) - range;
    var bucket = range <= 172800 ? 'hour' : 'day';
    var q = function (g) { return api('stats', { group_by: g, from: from }); };
    status('Loading…');
    Promise.all([
      q(bucket + ',model'), q(bucket), q('model'), q('provider'), q('task'), q('key'), q('requested'),
      api('generations', { sort: '-cost', limit: 10, from: from }),
      api('shadow/compare', { from: from, limit: 10 })
    ]).then(function (r) {
      $('auth').hidden = true;
      var spend = pivot(r[0].data, bucket, 'model', 'cost');
      $('spend-title').textContent = 'Spend per model per ' + bucket + ' (USD, stacked)';
      stacked($('spend-chart'), spend.cats, spend.series, usd);
      legend('spend-legend', spend.series.map(function (s) { return s.name; }));

      var traffic = r[1].data.slice().sort(function (a, b) { return a[bucket] < b[bucket] ? -1 : 1; });
      var tcats = traffic.map(function (x) { return x[bucket]; });
      var tseries = ['requests', 'errors', 'fallbacks', 'cache_hits'].map(function (k) {
        return { name: k.replace('_', ' '), values: traffic.map(function (x) { return Number(x[k]) || 0; }) };
      });
      lines($('traffic-chart'), tcats, tseries, num);
      legend('traffic-legend', tseries.map(function (s) { return s.name; }));

      var models = r[2].data;
      var lseries = [['latency p50', 'latency_p50_ms'], ['latency p95', 'latency_p95_ms'],
        ['TTFT p50', 'ttft_p50_ms'], ['TTFT p95', 'ttft_p95_ms']].map(function (p) {
        return { name: p[0], values: models.map(function (m) { return m[p[1]]; }) };
      });
      grouped($('latency-chart'), models.map(function (m) { return label(m.model); }), lseries, ms);
      legend('latency-legend', lseries.map(function (s) { return s.name; }));

      totals(models);
      figuresTable('t-model', models, 'model');
      figuresTable('t-provider', r[3].data, 'provider');
      figuresTable('t-task', r[4].data, 'task');
      figuresTable('t-key', r[5].data, 'key');
      table('t-requested', ['requested', 'requests', 'cost', 'cost / request', 'latency p50', 'latency p95', 'errors', 'feedback'],
        r[6].data.slice().sort(function (a, b) { return b.requests - a.requests; }).map(function (x) {
          return [label(x.requested), num(x.requests), usd(x.cost), usd(x.requests ? x.cost / x.requests : 0),
            ms(x.latency_p50_ms), ms(x.latency_p95_ms), num(x.errors), score(x.feedback_mean)];
        }));
      table('t-expensive', ['generation', 'created', 'model', 'key', 'cost', 'latency', 'status'],
        r[7].data.map(function (g) {
          return [genLink(g.id), g.created_at, label(g.model), label(g.api_key_name), usd(g.total_cost),
            ms(g.latency), String(g.status)];
        }));
      shadowView(r[8].data);

      $('summary').textContent = JSON.stringify({
        models: models.map(function (m) { return { model: m.model, cost: m.cost, requests: m.requests }; }),
        charts: { spend: $('spend-chart').querySelectorAll('rect').length,
          traffic: $('traffic-chart').querySelectorAll('polyline').length,
          latency: $('latency-chart').querySelectorAll('rect').length },
        expensive: r[7].data.length,
        shadow_groups: (r[8].data.groups || []).length
      });
      status('Updated ' + new Date().toLocaleTimeString());
      document.body.setAttribute('data-ready', '1');
    }, function (e) {
      if (e && e.auth) {
        $('auth').hidden = false;
        status('An admin key is needed.', true);
      } else {
        status('Could not load: ' + (e && e.message ? e.message : e), true);
      }
      document.body.setAttribute('data-ready', 'error');
    }).then(function () { loading = false; });
  }

  function schedule() {
    if (timer) { clearInterval(timer); timer = null; }
    if ($('auto').checked) { timer = setInterval(load, 30000); }
  }

  function start() {
    takeKey();
    $('range').addEventListener('change', load);
    $('refresh').addEventListener('click', load);
    $('auto').addEventListener('change', schedule);
    $('auth').addEventListener('submit', function (e) {
      e.preventDefault();
      try { sessionStorage.setItem(KEY_ITEM, $('key').value); } catch (err) { /* private mode */ }
      $('key').value = '';
      load();
    });
    schedule();
    load();
  }

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', start);
  } else {
    start();
  }
}());
