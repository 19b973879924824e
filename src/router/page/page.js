/*
 * The live cluster page: reads /cluster every two seconds and follows /events (server-sent
 * routing decisions). Plain browser JavaScript, no library, nothing fetched from elsewhere.
 * Every value from the bridge is put in the page as text (textContent), never as markup.
 */
'use strict';

(function () {
  var POLL_MS = 2000;
  var MAX_DECISIONS = 60;
  var state = { thresholds: { max_temp: 75, max_ram: 90 }, decisions: 0, seen: [] };

  function $(id) {
    return document.getElementById(id);
  }

  /** An element with a class and text. */
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function clock(t) {
    var d = new Date(t);
    var p = function (n) {
      return n < 10 ? '0' + n : String(n);
    };
    return p(d.getHours()) + ':' + p(d.getMinutes()) + ':' + p(d.getSeconds());
  }

  function fmt(n, digits) {
    if (n === null || n === undefined || Number.isNaN(n)) return '–';
    return Number(n).toFixed(digits === undefined ? 0 : digits);
  }

  /** A meter row: label, bar with a threshold mark, value. */
  function meter(parent, label, value, max, limit, text) {
    parent.appendChild(el('span', 'k', label));
    var bar = el('div', 'bar');
    var fill = el('span');
    var pct = value === null || value === undefined ? 0 : Math.max(0, Math.min(100, (value / max) * 100));
    fill.style.width = pct + '%';
    if (limit !== undefined && value !== null && value !== undefined) {
      if (value > limit) bar.className = 'bar bad';
      else if (value > limit * 0.9) bar.className = 'bar warn';
      var mark = el('i');
      mark.style.left = Math.min(100, (limit / max) * 100) + '%';
      mark.title = 'limit ' + limit;
      bar.appendChild(mark);
    }
    bar.appendChild(fill);
    parent.appendChild(bar);
    parent.appendChild(el('span', 'v', text));
  }

  var REASONS = {
    stale: 'silent: no health report in time',
    drained: 'drained by an operator',
    temperature: 'too hot',
    ram: 'RAM over the limit',
    unavailable: 'reports itself unavailable',
  };

  function nodeCard(n) {
    var card = el('article', 'node' + (n.eligible ? '' : n.excluded_reason === 'stale' ? ' stale' : ' out'));
    card.dataset.node = n.node_id;
    var head = el('div', 'node-head');
    head.appendChild(el('span', 'node-name', n.node_id));
    var badge = n.eligible ? el('span', 'badge ok', 'eligible') : el('span', 'badge ' + (n.excluded_reason === 'stale' ? 'bad' : 'warn'), 'not eligible: ' + (n.excluded_reason || '?'));
    head.appendChild(badge);
    card.appendChild(head);
    if (!n.eligible) {
      var why = REASONS[n.excluded_reason] || n.excluded_reason || '';
      if (n.reason) why += ' (' + n.reason + ')';
      card.appendChild(el('div', 'why', why));
    }
    var m = el('div', 'meters');
    var t = state.thresholds;
    meter(m, 'Temp', n.temp_celsius, 100, t.max_temp, n.temp_celsius === null ? 'no sensor' : fmt(n.temp_celsius, 1) + ' °C');
    var ram = fmt(n.ram_percent, 1) + ' %';
    if (n.ram_total_mb) ram += ' of ' + fmt(n.ram_total_mb / 1024, 0) + ' GB';
    meter(m, 'RAM', n.ram_percent, 100, t.max_ram, ram);
    meter(m, 'CPU', n.cpu_percent, 100, undefined, fmt(n.cpu_percent, 0) + ' %');
    card.appendChild(m);

    var jobs = el('div', 'jobs');
    var pill = function (label, v) {
      var p = el('span', 'pill');
      p.appendChild(el('b', '', v === null || v === undefined ? '–' : v));
      p.appendChild(document.createTextNode(' ' + label));
      jobs.appendChild(p);
    };
    pill('waiting', n.waiting);
    pill('running' + (n.concurrency ? ' / ' + n.concurrency : ''), n.running);
    if (n.failed) pill('failed', n.failed);
    card.appendChild(jobs);

    var models = el('div', 'models');
    var loaded = n.models || [];
    loaded.forEach(function (name) {
      var c = el('span', 'chip loaded', name);
      c.title = 'loaded';
      models.appendChild(c);
    });
    (n.installed_models || []).forEach(function (name) {
      if (loaded.indexOf(name) !== -1) return;
      var c = el('span', 'chip', name);
      c.title = 'installed, not loaded';
      models.appendChild(c);
    });
    if (!models.childNodes.length) models.appendChild(el('span', 'seen', 'no model reported'));
    card.appendChild(models);
    card.appendChild(el('div', 'seen', 'last report ' + n.last_seen_s + ' s ago'));
    return card;
  }

  function renderNodes(nodes) {
    var box = $('nodes');
    box.replaceChildren();
    if (!nodes.length) box.appendChild(el('p', 'empty', 'No node in the registry yet: start a worker.'));
    nodes.forEach(function (n) {
      box.appendChild(nodeCard(n));
    });
    var ok = nodes.filter(function (n) {
      return n.eligible;
    }).length;
    $('s-nodes').textContent = ok + ' / ' + nodes.length;
    $('s-nodes').className = 'value' + (nodes.length && ok === 0 ? ' bad' : ok < nodes.length ? ' warn' : '');
    $('nodes-count').textContent = nodes.length ? '(' + nodes.length + ')' : '';
  }

  /** An area chart of one series in an SVG of 300 x 60 user units. */
  function chart(svg, values, color) {
    var W = 300;
    var H = 60;
    svg.replaceChildren();
    var ns = 'http://www.w3.org/2000/svg';
    var axis = document.createElementNS(ns, 'line');
    axis.setAttribute('class', 'axis');
    axis.setAttribute('x1', '0');
    axis.setAttribute('x2', String(W));
    axis.setAttribute('y1', String(H - 0.5));
    axis.setAttribute('y2', String(H - 0.5));
    svg.appendChild(axis);
    if (values.length < 2) {
      var txt = document.createElementNS(ns, 'text');
      txt.setAttribute('class', 'none');
      txt.setAttribute('x', '4');
      txt.setAttribute('y', '34');
      txt.textContent = 'collecting…';
      svg.appendChild(txt);
      return;
    }
    var max = Math.max.apply(null, values.concat([1]));
    var step = W / (values.length - 1);
    var pts = values.map(function (v, i) {
      return (i * step).toFixed(1) + ',' + (H - 2 - (v / max) * (H - 8)).toFixed(1);
    });
    var area = document.createElementNS(ns, 'polygon');
    area.setAttribute('class', 'area');
    area.setAttribute('fill', color);
    area.setAttribute('points', '0,' + H + ' ' + pts.join(' ') + ' ' + W + ',' + H);
    svg.appendChild(area);
    var line = document.createElementNS(ns, 'polyline');
    line.setAttribute('class', 'line');
    line.setAttribute('stroke', color);
    line.setAttribute('points', pts.join(' '));
    svg.appendChild(line);
  }

  function cssVar(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  }

  function renderTimeline(tl, held) {
    var pts = tl.points || [];
    var perMin = 60000 / (tl.step_ms || 5000);
    var pick = function (k) {
      return pts.map(function (p) {
        return p[k] * perMin;
      });
    };
    var last = function (k) {
      // Over the last minute (or what there is of it).
      var n = Math.min(pts.length, Math.max(1, Math.round(perMin)));
      if (!pts.length) return null;
      var sum = 0;
      for (var i = pts.length - n; i < pts.length; i++) sum += pts[i][k];
      return (sum * perMin) / n;
    };
    var rate = last('routed');
    var errors = last('errors');
    var cold = last('cold_loads');
    $('s-rate').textContent = fmt(rate, rate !== null && rate < 10 ? 1 : 0);
    $('s-errors').textContent = fmt(errors, errors !== null && errors < 10 ? 1 : 0);
    $('s-errors').className = 'value' + (errors ? ' bad' : '');
    $('s-cold').textContent = fmt(cold, cold !== null && cold < 10 ? 1 : 0);
    $('s-held').textContent = fmt(held);
    $('s-held').className = 'value' + (held ? ' warn' : '');
    var totals = tl.totals || {};
    var routed = totals.total_routed || 0;
    $('s-sticky').textContent = routed ? fmt((100 * (totals.sticky_hits || 0)) / routed) + ' %' : '–';
    var minutes = Math.round((pts.length * (tl.step_ms || 5000)) / 60000);
    var span = minutes >= 1 ? 'per min, last ' + minutes + ' min' : 'per min';
    $('c-routed-total').textContent = span + ' · ' + routed + ' in all';
    $('c-errors-total').textContent = span + ' · ' + (totals.errors || 0) + ' in all';
    $('c-cold-total').textContent = span + ' · ' + (totals.cold_loads || 0) + ' in all';
    chart($('c-routed'), pick('routed'), cssVar('--accent'));
    chart($('c-errors'), pick('errors'), cssVar('--bad'));
    chart($('c-cold'), pick('cold_loads'), cssVar('--cold'));
  }

  function setConn(ok, text) {
    var c = $('conn');
    c.className = 'conn ' + (ok ? 'live' : 'down');
    c.textContent = text;
  }

  function poll() {
    fetch('cluster', { cache: 'no-store' })
      .then(function (r) {
        if (!r.ok) throw new Error('HTTP ' + r.status);
        return r.json();
      })
      .then(function (c) {
        state.thresholds = c.thresholds || state.thresholds;
        $('bridge').textContent = c.bridge;
        $('version').textContent = 'v' + c.version;
        $('board').textContent = c.board && c.board.writable ? 'Bull Board ↗' : 'Bull Board (read-only) ↗';
        renderNodes(c.nodes || []);
        renderTimeline(c.timeline || { points: [] }, c.held);
        $('updated').textContent = 'updated ' + clock(c.at);
        setConn(true, 'live');
      })
      .catch(function (err) {
        setConn(false, 'bridge not answering (' + err.message + ')');
      })
      .finally(function () {
        setTimeout(poll, POLL_MS);
      });
  }

  function decisionItem(d) {
    var li = el('li', 'new');
    li.dataset.request = d.request_id;
    li.appendChild(el('span', 'time', clock(d.t)));
    var what = el('span', 'what mono');
    var tag;
    if (d.kind === 'placed') {
      what.textContent = d.request_id + ' → ' + d.node;
      tag = d.routing === 'sticky' ? el('span', 'tag sticky', 'sticky') : el('span', 'tag cold', 'cold load');
    } else if (d.kind === 'moved') {
      what.textContent = d.request_id + ' ' + d.from + ' → ' + d.node;
      tag = el('span', 'tag moved', 'moved');
    } else if (d.kind === 'held') {
      what.textContent = d.request_id;
      tag = el('span', 'tag held', 'held');
    } else {
      what.textContent = d.request_id;
      tag = el('span', 'tag refused', 'refused');
    }
    li.appendChild(what);
    li.appendChild(tag);
    var detail = d.model;
    if (d.kind === 'moved' && d.routing) detail += ' · ' + (d.routing === 'sticky' ? 'warm there' : 'cold load there');
    if (d.reason) detail += ' · ' + d.reason.replace(/_/g, ' ');
    if (d.priority !== undefined && d.priority !== 5) detail += ' · priority ' + d.priority;
    li.appendChild(el('span', 'detail', detail));
    return li;
  }

  function follow() {
    if (!window.EventSource) return;
    var es = new EventSource('events');
    var list = $('decisions');
    es.onmessage = function (m) {
      var d;
      try {
        d = JSON.parse(m.data);
      } catch {
        return;
      }
      // A reconnect sends the recent decisions again: show each once.
      var key = d.t + ' ' + d.kind + ' ' + d.request_id + ' ' + (d.node || '');
      if (state.seen.indexOf(key) !== -1) return;
      state.seen.push(key);
      if (state.seen.length > 200) state.seen.shift();
      setConn(true, 'live');
      if (state.decisions === 0) list.replaceChildren();
      state.decisions++;
      list.insertBefore(decisionItem(d), list.firstChild);
      while (list.childNodes.length > MAX_DECISIONS) list.removeChild(list.lastChild);
    };
    es.onerror = function () {
      setConn(false, 'decision stream reconnecting…');
    };
  }

  poll();
  follow();
})();
