/*
 * app.js - the ccgw equipment-room dashboard.
 *
 * One WebSocket to /ws on the page's own origin (docs/dashboard.md, the
 * protocol is WS_PROTOCOL v1): `auth` with the token first (from #token=...
 * or the sign-in form, kept in sessionStorage), then `sub` to the topic tree;
 * the server answers with the retained snapshot, then live `msg`/`batch`
 * frames. The page keeps a model of devices, alarms, gateways and plugin
 * instances, the last hour of numeric telemetry per device (for the
 * sparklines), and re-renders at most once per animation frame, plus once a
 * second for the "last update N s ago" counters and staleness.
 * Lost connection: banner, reconnect with exponential backoff and jitter,
 * auth and subscribe again; the snapshot then replaces what was known.
 */
(function () {
  'use strict';

  // ---- settings ------------------------------------------------------------
  var PREFIX = 'ccgw/v1';
  var CLASSES = null;                  // #classes=ups,env: subscribe per class (+ gateway) instead of to all
  var HISTORY_MS = 3600 * 1000;        // sparkline window: the last hour
  var HISTORY_STEP_MS = 5000;          // at most one kept point per 5 s per series
  var HISTORY_MAX = 800;               // hard bound per series
  var MAX_EVENTS = 5;                  // events remembered per device
  var STALE_FACTOR = 3;                // silent for > 3x the usual interval = stale
  var STALE_SLACK_MS = 2000;
  var BACKOFF_MIN_MS = 1000, BACKOFF_MAX_MS = 30000;
  var PING_MS = 20000, PONG_TIMEOUT_MS = 10000;
  var STORE_KEY = 'ccgw.token';
  var SEVERITY_RANK = { critical: 0, major: 1, minor: 2, warning: 3, info: 4 };
  var CLASS_SECTIONS = { ups: 'ups', hvac: 'hvac', env: 'env', door: 'door' };

  // ---- model -----------------------------------------------------------------
  var devices = new Map();     // "site/class/device" -> device record
  var alarms = new Map();      // topic -> {topic, site, source, payload}
  var gateways = new Map();    // "site/gw" -> status payload (+ _seen)
  var instances = new Map();   // "site/gw/instance" -> health payload
  var ackErrors = new Map();   // alarm topic -> error text of a refused acknowledgement
  var ackPending = new Map();  // request id -> alarm topic

  var conn = {
    ws: null, state: 'idle', attempt: 0, timer: null, retryAt: 0, nextId: 1,
    authId: 0, subIds: new Map(), role: null, name: null, pingTimer: null, pongTimer: null,
    everConnected: false, stop: false
  };
  var snapshot = null;         // {pending ids, seen alarm topics} while a fresh snapshot arrives

  // ---- small helpers -----------------------------------------------------------
  function $(id) { return document.getElementById(id); }
  function esc(s) {
    return String(s == null ? '' : s).replace(/[&<>"']/g, function (c) {
      return { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c];
    });
  }
  function parseTs(ts) {
    var t = typeof ts === 'string' ? Date.parse(ts) : NaN;
    return isFinite(t) ? t : null;
  }
  function ago(ms) {
    if (ms == null) return 'never';
    var s = Math.max(0, Math.round((Date.now() - ms) / 1000));
    if (s < 60) return s + ' s ago';
    if (s < 3600) return Math.floor(s / 60) + ' min ' + (s % 60) + ' s ago';
    if (s < 86400) return Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' min ago';
    return Math.floor(s / 86400) + ' d ago';
  }
  function clockTime(ms) {
    if (ms == null) return '';
    var d = new Date(ms);
    var p = function (n) { return (n < 10 ? '0' : '') + n; };
    return p(d.getHours()) + ':' + p(d.getMinutes()) + ':' + p(d.getSeconds());
  }
  var UNIT_TEXT = { Cel: '°C', '%RH': '% RH', '%': '%', V: 'V', A: 'A', W: 'W', Hz: 'Hz', s: 's' };
  function fmtNum(v, unit) {
    if (typeof v === 'boolean') return v ? 'yes' : 'no';
    if (v == null) return '—';
    if (typeof v !== 'number') return String(v);
    if (unit === 's') return fmtDuration(v);
    var t = Number.isInteger(v) ? String(v) : v.toFixed(Math.abs(v) >= 100 ? 0 : 1);
    return unit ? t + ' ' + (UNIT_TEXT[unit] || unit) : t;
  }
  function fmtDuration(s) {
    if (typeof s !== 'number' || !isFinite(s)) return '—';
    if (s < 120) return Math.round(s) + ' s';
    if (s < 7200) return Math.round(s / 60) + ' min';
    return (s / 3600).toFixed(1) + ' h';
  }
  function median(a) {
    if (!a.length) return null;
    var b = a.slice().sort(function (x, y) { return x - y; });
    var m = b.length >> 1;
    return b.length % 2 ? b[m] : (b[m - 1] + b[m]) / 2;
  }
  function label(name) { return name.replace(/[._]/g, ' '); }

  // ---- token -----------------------------------------------------------------
  function tokenFromFragment() {
    var h = location.hash.replace(/^#/, '');
    if (!h) return null;
    var params = new URLSearchParams(h);
    var t = params.get('token');
    if (params.get('prefix')) PREFIX = params.get('prefix').replace(/\/+$/, '');
    if (params.get('classes')) {
      CLASSES = params.get('classes').split(',').map(function (c) { return c.trim(); })
        .filter(function (c) { return /^[a-z0-9_.-]+$/.test(c); });
    }
    if (t != null) {
      var rest = h.split('&').filter(function (kv) { return !/^token=/.test(kv); }).join('&');
      // keep the token off the screen and out of the history
      history.replaceState(null, '', location.pathname + location.search + (rest ? '#' + rest : ''));
    }
    return t;
  }
  function getToken() {
    try { return sessionStorage.getItem(STORE_KEY); } catch (e) { return null; }
  }
  function setToken(t) {
    try {
      if (t) sessionStorage.setItem(STORE_KEY, t); else sessionStorage.removeItem(STORE_KEY);
    } catch (e) { /* storage refused: the token lives for this page only */ }
    memToken = t || null;
  }
  var memToken = null;
  function token() { return getToken() || memToken; }

  // ---- topics ------------------------------------------------------------------
  // prefix/site/class/device/kind[/rest] or prefix/site/gateway/gw/kind[/rest]
  function parseTopic(topic) {
    if (topic.indexOf(PREFIX + '/') !== 0) return null;
    var parts = topic.slice(PREFIX.length + 1).split('/');
    if (parts.length < 4) return null;
    return { site: parts[0], cls: parts[1], id: parts[2], kind: parts[3], rest: parts.slice(4).join('/') };
  }

  // ---- model updates ------------------------------------------------------------
  function device(site, cls, id) {
    var key = site + '/' + cls + '/' + id;
    var d = devices.get(key);
    if (!d) {
      d = { key: key, site: site, cls: cls, id: id, state: null, values: {}, units: {}, seen: null,
            stateSeen: null, teleSeen: null, teleGaps: [], history: {}, events: [], lastAccess: null,
            instance: null };
      devices.set(key, d);
    }
    return d;
  }

  function seenAt(payload, retained) {
    // live messages: when they arrived; retained (snapshot) ones: their own ts
    var now = Date.now();
    if (!retained) return now;
    var t = parseTs(payload && payload.ts);
    return t == null ? now : Math.min(t, now);
  }

  function addHistory(d, name, t, v) {
    var s = d.history[name] || (d.history[name] = []);
    var last = s[s.length - 1];
    if (last && t - last[0] < HISTORY_STEP_MS && s.length > 1 &&
        t - s[s.length - 2][0] < HISTORY_STEP_MS) {
      last[0] = t; last[1] = v;              // thin: replace the newest point
    } else {
      s.push([t, v]);
    }
    var cut = Date.now() - HISTORY_MS;
    while (s.length && (s[0][0] < cut || s.length > HISTORY_MAX)) s.shift();
  }

  function onDeviceMsg(tp, payload, retained) {
    var d = device(tp.site, tp.cls, tp.id);
    var t = seenAt(payload, retained);
    if (tp.kind === 'alarm') return onAlarm(tp, payload, retained, tp.cls + ' ' + tp.id);
    if (payload && payload.instance) d.instance = payload.instance;
    if (tp.kind === 'state') {
      if (!payload) return;
      d.state = payload;
      d.stateSeen = t;
    } else if (tp.kind === 'telemetry') {
      if (!payload || typeof payload.values !== 'object' || !payload.values) return;
      if (!retained && d.teleSeen != null) {
        var gap = t - d.teleSeen;
        if (gap > 0) { d.teleGaps.push(gap); if (d.teleGaps.length > 9) d.teleGaps.shift(); }
      }
      d.teleSeen = t;
      Object.keys(payload.values).forEach(function (k) {
        var v = payload.values[k];
        d.values[k] = v;
        if (typeof v === 'number' && isFinite(v)) addHistory(d, k, t, v);
      });
      if (payload.units && typeof payload.units === 'object') {
        Object.keys(payload.units).forEach(function (k) { d.units[k] = payload.units[k]; });
      }
    } else if (tp.kind === 'event') {
      if (!payload) return;
      var ev = { type: payload.type || tp.rest, data: payload.data || {}, t: t, ts: payload.ts };
      d.events.unshift(ev);
      if (d.events.length > MAX_EVENTS) d.events.pop();
      if (/^access\./.test(ev.type)) d.lastAccess = ev;
    } else {
      return;   // cmd replies and anything unknown: not shown
    }
    if (d.seen == null || t > d.seen) d.seen = t;
  }

  function onGatewayMsg(tp, payload, retained) {
    var gwKey = tp.site + '/' + tp.id;
    if (tp.kind === 'status') {
      if (payload) { payload._seen = seenAt(payload, retained); gateways.set(gwKey, payload); }
      else gateways.delete(gwKey);
    } else if (tp.kind === 'instance' && tp.rest) {
      var k = gwKey + '/' + tp.rest;
      if (snapshot && retained) snapshot.seenInst.add(k);
      if (payload) { payload._seen = seenAt(payload, retained); instances.set(k, payload); }
      else instances.delete(k);
    } else if (tp.kind === 'alarm') {
      onAlarm(tp, payload, retained, 'gateway ' + tp.id);
    }
  }

  function onAlarm(tp, payload, retained, source) {
    var topic = PREFIX + '/' + tp.site + '/' + tp.cls + '/' + tp.id + '/alarm/' + tp.rest;
    if (snapshot && retained) snapshot.seen.add(topic);
    if (!payload) {                       // cleared
      alarms.delete(topic);
      ackErrors.delete(topic);
      return;
    }
    var before = alarms.get(topic);
    if (!retained && (!before || before.payload.state !== payload.state) && payload.state === 'raised') {
      announce('New ' + (payload.severity || '') + ' alarm: ' + (payload.message || payload.code || tp.rest) +
               ', ' + source);
    }
    alarms.set(topic, { topic: topic, site: tp.site, source: source, cls: tp.cls, id: tp.id,
                        code: payload.code || tp.rest, payload: payload });
    if (payload.state === 'acknowledged') ackErrors.delete(topic);
  }

  // screen readers: new alarms only (the list itself changes every second)
  function announce(text) {
    var el = $('announce');
    el.textContent = '';
    setTimeout(function () { el.textContent = text; }, 50);
  }

  function onMsg(m) {
    if (!m || typeof m.topic !== 'string') return;
    var tp = parseTopic(m.topic);
    if (!tp) return;
    var payload = m.payload && typeof m.payload === 'object' ? m.payload : null;
    if (tp.cls === 'gateway') onGatewayMsg(tp, payload, !!m.retained);
    else onDeviceMsg(tp, payload, !!m.retained);
    scheduleRender();
  }

  // ---- connection -----------------------------------------------------------------
  function wsUrl() {
    return (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws';
  }

  function send(obj) {
    if (conn.ws && conn.ws.readyState === 1) { conn.ws.send(JSON.stringify(obj)); return true; }
    return false;
  }

  function connect() {
    clearTimeout(conn.timer);
    conn.timer = null;
    if (conn.stop) return;
    if (conn.ws) { try { conn.ws.close(); } catch (e) { /* already closed */ } }
    setConnState('connecting');
    var ws;
    try { ws = new WebSocket(wsUrl()); } catch (e) { scheduleReconnect('cannot open: ' + e.message); return; }
    conn.ws = ws;
    conn.subIds = new Map();
    ackPending.clear();                   // replies of the old connection will never come
    ws.onopen = function () {
      if (ws !== conn.ws) return;
      var t = token();
      if (t) {
        conn.authId = conn.nextId++;
        send({ op: 'auth', id: conn.authId, token: t });
      } else {
        conn.authId = 0;
        onAuthenticated(null, null);      // anonymous access, if the gateway allows it
      }
      startPing();
    };
    ws.onmessage = function (ev) {
      if (ws !== conn.ws) return;
      var m;
      try { m = JSON.parse(ev.data); } catch (e) { return; }
      handleFrame(m);
    };
    ws.onclose = function (ev) {
      if (ws !== conn.ws) return;
      stopPing();
      conn.ws = null;
      if (conn.stop) return;
      if (ev.code === 1008 && /unauthori[sz]ed/i.test(ev.reason || '') || conn.state === 'refused') {
        refused('The gateway refused this token.');
        return;
      }
      scheduleReconnect(ev.code ? 'closed (' + ev.code + (ev.reason ? ' ' + ev.reason : '') + ')' : 'closed');
    };
    ws.onerror = function () { /* onclose follows */ };
  }

  function handleFrame(m) {
    if (!m || typeof m !== 'object') return;
    switch (m.op) {
      case 'batch':
        if (Array.isArray(m.msgs)) m.msgs.forEach(handleFrame);
        return;
      case 'msg':
        onMsg(m);
        return;
      case 'ack':
        if (conn.authId && m.id === conn.authId) { onAuthenticated(m.role || null, m.name || null); return; }
        if (conn.subIds.has(m.id)) { onSubAck(m.id); return; }
        return;
      case 'reply':
        onReply(m);
        return;
      case 'pong':
        clearTimeout(conn.pongTimer);
        return;
      case 'error':
        onError(m);
        return;
      default:
        return;
    }
  }

  function onAuthenticated(role, name) {
    conn.role = role;
    conn.name = name;
    conn.attempt = 0;
    conn.everConnected = true;
    setConnState('live');
    showMain();
    // subscribe; the snapshot replaces the alarm list once every sub is acknowledged
    snapshot = { pending: new Set(), seen: new Set(), seenInst: new Set() };
    var filters = CLASSES && CLASSES.length ?
      CLASSES.map(function (c) { return PREFIX + '/+/' + c + '/#'; }).concat([PREFIX + '/+/gateway/#']) :
      [PREFIX + '/#'];
    filters.forEach(function (f) {
      var id = conn.nextId++;
      conn.subIds.set(id, f);
      snapshot.pending.add(id);
      send({ op: 'sub', id: id, filter: f });
    });
    scheduleRender();
  }

  function onSubAck(id) {
    if (!snapshot) return;
    snapshot.pending.delete(id);
    if (snapshot.pending.size === 0) {
      // alarms known from before the reconnect that the snapshot no longer has were cleared meanwhile
      Array.from(alarms.keys()).forEach(function (t) { if (!snapshot.seen.has(t)) alarms.delete(t); });
      Array.from(instances.keys()).forEach(function (k) { if (!snapshot.seenInst.has(k)) instances.delete(k); });
      snapshot = null;
      scheduleRender();
    }
  }

  function onError(m) {
    if (m.code === 'unauthorized') {
      conn.state = 'refused';
      if (!token()) { refused('This gateway needs a token.'); return; }
      refused('The gateway refused this token' + (m.message ? ': ' + m.message : '.'));
      return;
    }
    if (m.id != null && ackPending.has(m.id)) {
      var topic = ackPending.get(m.id);
      ackPending.delete(m.id);
      ackErrors.set(topic, (m.code || 'error') + (m.message ? ': ' + m.message : ''));
      scheduleRender();
      return;
    }
    if (conn.subIds.has(m.id)) onSubAck(m.id);   // e.g. bad_filter: do not wait for it
  }

  function onReply(m) {
    if (!ackPending.has(m.id)) return;
    var topic = ackPending.get(m.id);
    ackPending.delete(m.id);
    var p = m.payload || {};
    if (p.ok) {
      ackErrors.delete(topic);
      var a = alarms.get(topic);
      if (a && a.payload.state !== 'acknowledged') a.ackSent = true;   // the retained update follows
    } else {
      var e = p.error || {};
      ackErrors.set(topic, (e.code || 'refused') + (e.message ? ': ' + e.message : ''));
    }
    scheduleRender();
  }

  function refused(text) {
    conn.stop = true;
    setToken(null);
    if (conn.ws) { try { conn.ws.close(); } catch (e) { /* gone */ } conn.ws = null; }
    setConnState('signed out');
    showLogin(text);
  }

  function scheduleReconnect(why) {
    conn.attempt++;
    var base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * Math.pow(2, conn.attempt - 1));
    var delay = Math.round(base * (0.75 + Math.random() * 0.5));
    conn.retryAt = Date.now() + delay;
    conn.lastWhy = why;
    setConnState('lost');
    clearTimeout(conn.timer);
    conn.timer = setTimeout(connect, delay);
    renderBanner();
  }

  function startPing() {
    stopPing();
    conn.pingTimer = setInterval(function () {
      if (!send({ op: 'ping', id: conn.nextId++ })) return;
      clearTimeout(conn.pongTimer);
      conn.pongTimer = setTimeout(function () {
        // no answer: the link is dead even if TCP has not noticed yet
        if (conn.ws) { var ws = conn.ws; conn.ws = null; try { ws.close(); } catch (e) { /* gone */ }
          stopPing(); scheduleReconnect('no answer to ping'); }
      }, PONG_TIMEOUT_MS);
    }, PING_MS);
  }
  function stopPing() { clearInterval(conn.pingTimer); clearTimeout(conn.pongTimer); }

  function canAck() { return conn.role === 'operator' || conn.role === 'admin'; }

  function ackAlarm(topic) {
    if (!canAck()) return;
    var id = conn.nextId++;
    if (!send({ op: 'ack_alarm', id: id, topic: topic })) {
      ackErrors.set(topic, 'not connected');
      scheduleRender();
      return;
    }
    ackPending.set(id, topic);
    ackErrors.delete(topic);
    scheduleRender();
  }

  // ---- rendering -------------------------------------------------------------------
  var renderQueued = false;
  function scheduleRender() {
    if (renderQueued) return;
    renderQueued = true;
    requestAnimationFrame(function () { renderQueued = false; render(); });
  }

  function setConnState(s) {
    conn.state = s;
    var el = $('conn-status');
    var cls = { live: 'pill-ok', connecting: 'pill-warn', lost: 'pill-bad', 'signed out': 'pill-unknown' }[s] || 'pill-unknown';
    el.className = 'pill ' + cls;
    el.textContent = s === 'live' ? 'live' : s;
    document.body.classList.toggle('disconnected', s === 'lost' || s === 'connecting' && conn.everConnected);
    renderBanner();
  }

  function renderBanner() {
    var b = $('conn-banner');
    var lost = conn.state === 'lost' || (conn.state === 'connecting' && conn.attempt > 0);
    b.hidden = !lost;
    if (!lost) return;
    var txt;
    if (conn.state === 'connecting') txt = 'Reconnecting now (attempt ' + conn.attempt + ')...';
    else {
      var s = Math.max(0, Math.ceil((conn.retryAt - Date.now()) / 1000));
      txt = 'Reconnecting in ' + s + ' s (attempt ' + conn.attempt + '). The values below are the last known.';
    }
    $('conn-banner-text').textContent = txt;
  }

  // set innerHTML only when it changed, keep the focused button focused
  function patch(el, html) {
    if (el._html === html) return;
    var focused = document.activeElement && el.contains(document.activeElement) ?
      document.activeElement.getAttribute('data-focus-key') : null;
    el.innerHTML = html;
    el._html = html;
    if (focused) {
      var again = el.querySelector('[data-focus-key="' + CSS.escape(focused) + '"]');
      if (again) again.focus();
    }
  }

  function deviceStaleness(d) {
    var now = Date.now();
    if (d.state && d.state.online === false) {
      return { stale: true, why: 'offline' + (d.state.reason ? ': ' + d.state.reason : '') };
    }
    var usual = median(d.teleGaps);
    if (usual != null && d.teleSeen != null) {
      var silent = now - d.teleSeen;
      if (silent > STALE_FACTOR * usual + STALE_SLACK_MS) {
        return { stale: true, why: 'silent for ' + Math.round(silent / 1000) + ' s (usually every ' +
                 Math.max(1, Math.round(usual / 1000)) + ' s)' };
      }
    }
    return { stale: false, why: '' };
  }

  function valueRow(d, name, opts) {
    opts = opts || {};
    var v = d.values[name];
    if (v === undefined && d.state && d.state[name] !== undefined) v = d.state[name];
    if (v === undefined && !opts.always) return '';
    var unit = d.units[name];
    var hist = d.history[name];
    return '<div class="metric' + (opts.big ? ' metric-big' : '') + '" data-value="' + esc(name) + '">' +
      '<span class="metric-label">' + esc(opts.label || label(name)) + '</span>' +
      '<span class="metric-value" data-raw="' + esc(typeof v === 'number' ? v : '') + '">' +
      esc(fmtNum(v, unit)) + '</span>' +
      (opts.spark && hist ? '<span class="metric-spark">' +
        window.CcgwSpark.svg(hist, { label: (opts.label || label(name)) + ' (' + (d.id) + ')' }) + '</span>' : '') +
      '</div>';
  }

  function stateBadge(text, tone, lbl) {
    return '<span class="badge badge-' + tone + '"' + (lbl ? ' aria-label="' + esc(lbl) + '"' : '') + '>' +
      esc(text) + '</span>';
  }

  function upsBody(d) {
    var st = d.state || {};
    var status = st.status || 'unknown';
    var tone = { on_line: 'ok', on_battery: 'warn', low_battery: 'bad', bypass: 'warn', off: 'bad' }[status] || 'unknown';
    var h = '<div class="badges">' + stateBadge(status.replace(/_/g, ' '), tone, 'UPS status ' + status) +
      (st.flags ? '<span class="flags" title="ups.status flags">' + esc(st.flags) + '</span>' : '') + '</div>';
    h += '<div class="metrics">' +
      valueRow(d, 'battery.charge', { label: 'battery charge', big: true, always: true, spark: true }) +
      valueRow(d, 'battery.runtime', { label: 'runtime', big: true, always: true }) +
      valueRow(d, 'ups.load', { label: 'load', always: true, spark: true }) +
      valueRow(d, 'input.voltage', { label: 'input voltage', always: true, spark: true }) +
      valueRow(d, 'output.voltage', { label: 'output voltage' }) +
      valueRow(d, 'battery.voltage', { label: 'battery voltage' }) +
      valueRow(d, 'ups.temperature', { label: 'temperature' }) +
      '</div>';
    return h;
  }

  function hvacBody(d) {
    var st = d.state || {};
    var b = '<div class="badges">';
    if (st.running !== undefined) b += stateBadge(st.running ? 'running' : 'stopped', st.running ? 'ok' : 'warn');
    if (st.mode !== undefined) b += stateBadge('mode ' + st.mode, 'info');
    if (st.fault !== undefined) b += st.fault ? stateBadge('FAULT', 'bad') : stateBadge('no fault', 'ok');
    if (st.high_temperature) b += stateBadge('high temperature', 'bad');
    if (st.filter_alarm) b += stateBadge('filter', 'warn');
    b += '</div>';
    var m = '<div class="metrics">' +
      valueRow(d, 'supply_air.temperature', { label: 'supply air', big: true, always: true, spark: true }) +
      valueRow(d, 'return_air.temperature', { label: 'return air', big: true, always: true, spark: true }) +
      valueRow(d, 'humidity', { label: 'humidity', always: true, spark: true });
    Object.keys(d.values).filter(function (k) { return /^setpoint\./.test(k); }).sort().forEach(function (k) {
      m += valueRow(d, k, { label: 'setpoint ' + k.slice(9).replace(/[._]/g, ' ') });
    });
    return b + m + '</div>';
  }

  function envBody(d) {
    var b = '<div class="badges">';
    if (d.values.water_leak !== undefined) b += d.values.water_leak ? stateBadge('WATER LEAK', 'bad') : stateBadge('dry', 'ok');
    if (d.values.smoke !== undefined) b += d.values.smoke ? stateBadge('SMOKE', 'bad') : stateBadge('no smoke', 'ok');
    b += '</div>';
    var m = '<div class="metrics">' +
      valueRow(d, 'temperature', { label: 'temperature', big: true, always: true, spark: true }) +
      valueRow(d, 'humidity', { label: 'humidity', big: true, always: true, spark: true });
    Object.keys(d.values).filter(function (k) { return /^setpoint\./.test(k); }).sort().forEach(function (k) {
      m += valueRow(d, k, { label: 'setpoint ' + k.slice(9).replace(/[._]/g, ' ') });
    });
    return b + m + '</div>';
  }

  function eventText(ev) {
    if (!ev) return '—';
    var x = ev.data || {};
    var who = x.name || x.person_id || '';
    var how = x.method ? ' (' + x.method + ')' : '';
    var what = ev.type === 'access.granted' ? 'granted' : ev.type === 'access.denied' ? 'denied' : ev.type;
    return what + (who ? ': ' + who : '') + how + ' at ' + clockTime(parseTs(ev.ts) || ev.t);
  }

  function doorBody(d) {
    var st = d.state || {};
    var b = '<div class="badges">';
    b += st.door ? stateBadge('door ' + st.door, st.door === 'closed' ? 'ok' : 'warn', 'door ' + st.door)
                 : stateBadge('door unknown', 'unknown');
    b += st.lock ? stateBadge(st.lock, st.lock === 'locked' ? 'ok' : 'warn', 'lock ' + st.lock)
                 : stateBadge('lock unknown', 'unknown');
    if (st.mode && st.mode !== 'normal') b += stateBadge(st.mode.replace(/_/g, ' '), 'warn');
    b += '</div>';
    var last = d.events[0];
    return b + '<dl class="facts"><dt>last access</dt><dd data-value="last_access">' + esc(eventText(d.lastAccess)) +
      '</dd><dt>last event</dt><dd data-value="last_event">' + esc(eventText(last)) + '</dd></dl>';
  }

  var ENVELOPE = { ts: 1, site: 1, class: 1, device: 1, instance: 1, boot: 1, seq: 1, online: 1, reason: 1 };
  function genericBody(d) {
    var st = d.state || {};
    var b = '<div class="badges">';
    Object.keys(st).filter(function (k) { return !ENVELOPE[k] && typeof st[k] !== 'object'; }).forEach(function (k) {
      b += stateBadge(k + ' ' + fmtNum(st[k]), 'info');
    });
    b += '</div><div class="metrics">';
    Object.keys(d.values).sort().forEach(function (k) { b += valueRow(d, k, { spark: typeof d.values[k] === 'number' }); });
    var last = d.events[0];
    if (last) b += '<div class="metric"><span class="metric-label">last event</span><span class="metric-value">' +
      esc(eventText(last)) + '</span></div>';
    return b + '</div>';
  }

  function deviceAlarmCount(d) {
    var n = 0, worst = null;
    alarms.forEach(function (a) {
      if (a.site === d.site && a.cls === d.cls && a.id === d.id) {
        n++;
        var r = SEVERITY_RANK[a.payload.severity];
        if (worst == null || (r != null && r < SEVERITY_RANK[worst])) worst = a.payload.severity;
      }
    });
    return { n: n, worst: worst };
  }

  function cardHtml(d) {
    var s = deviceStaleness(d);
    var body = d.cls === 'ups' ? upsBody(d) : d.cls === 'hvac' ? hvacBody(d) : d.cls === 'env' ? envBody(d) :
      d.cls === 'door' ? doorBody(d) : genericBody(d);
    var al = deviceAlarmCount(d);
    var title = d.id + (d.cls in CLASS_SECTIONS ? '' : ' (' + d.cls + ')');
    var online = !d.state ? 'no state yet' : d.state.online === false ? 'offline' : 'online';
    return '<header class="card-head"><h3>' + esc(title) + '</h3>' +
      (al.n ? '<span class="sev sev-' + esc(al.worst || 'unknown') + '">' + al.n + ' alarm' + (al.n > 1 ? 's' : '') + '</span>' : '') +
      '<span class="online online-' + (online === 'online' ? 'yes' : 'no') + '">' + esc(online) + '</span></header>' +
      (s.stale ? '<p class="stale-why" role="note">' + esc(s.why) + '</p>' : '') +
      body +
      '<p class="updated" data-role="updated">last update ' + esc(ago(d.seen)) + '</p>';
  }

  function renderCards() {
    var order = Array.from(devices.values()).sort(function (a, b) {
      return a.cls < b.cls ? -1 : a.cls > b.cls ? 1 : a.key < b.key ? -1 : a.key > b.key ? 1 : 0;
    });
    var sites = new Set(order.map(function (d) { return d.site; }));
    var anyOther = false;
    var seenKeys = new Set();
    order.forEach(function (d) {
      var sect = CLASS_SECTIONS[d.cls] || 'other';
      if (sect === 'other') anyOther = true;
      var container = $('cards-' + sect);
      var el = d.el;
      if (!el || el.parentNode !== container) {
        el = document.createElement('article');
        el.className = 'card';
        el.setAttribute('data-device', d.cls + '/' + d.id);
        el.setAttribute('data-site', d.site);
        el.setAttribute('aria-label', d.cls + ' ' + d.id + (sites.size > 1 ? ' at ' + d.site : ''));
        // keep cards in order
        var before = null;
        Array.prototype.some.call(container.children, function (c) {
          if (c._key > d.key) { before = c; return true; } return false;
        });
        el._key = d.key;
        container.insertBefore(el, before);
        d.el = el;
      }
      seenKeys.add(d.key);
      var s = deviceStaleness(d);
      el.classList.toggle('stale', s.stale);
      el.setAttribute('data-stale', s.stale ? 'true' : 'false');
      patch(el, cardHtml(d));
    });
    document.querySelector('[data-class-section="other"]').hidden = !anyOther;
    ['ups', 'hvac', 'env', 'door'].forEach(function (c) {
      var cont = $('cards-' + c);
      if (!cont.children.length) patch(cont, '<p class="empty">No ' + esc(c) + ' devices.</p>');
      else Array.prototype.slice.call(cont.querySelectorAll(':scope > p.empty')).forEach(function (p) { p.remove(); });
    });
  }

  function sortedAlarms() {
    return Array.from(alarms.values()).sort(function (a, b) {
      var ra = SEVERITY_RANK[a.payload.severity], rb = SEVERITY_RANK[b.payload.severity];
      ra = ra == null ? 9 : ra; rb = rb == null ? 9 : rb;
      if (ra !== rb) return ra - rb;
      var ka = a.payload.state === 'acknowledged' ? 1 : 0, kb = b.payload.state === 'acknowledged' ? 1 : 0;
      if (ka !== kb) return ka - kb;
      var ta = parseTs(a.payload.raised_at) || 0, tb = parseTs(b.payload.raised_at) || 0;
      return tb - ta || (a.topic < b.topic ? -1 : 1);
    });
  }

  function renderAlarms() {
    var list = sortedAlarms();
    $('alarm-count').textContent = String(list.length);
    var open = list.filter(function (a) { return a.payload.state !== 'acknowledged'; }).length;
    document.title = (open ? '(' + open + ') ' : '') + 'ccgw - equipment room';
    $('alarms-empty').hidden = list.length > 0;
    var pendingTopics = new Set(ackPending.values());
    var html = list.map(function (a) {
      var p = a.payload;
      var sev = p.severity || 'unknown';
      var acked = p.state === 'acknowledged';
      var btn = '';
      if (canAck() && !acked) {
        var busy = pendingTopics.has(a.topic) || conn.state !== 'live';
        btn = '<button type="button" class="btn btn-ack" data-ack="' + esc(a.topic) + '" data-focus-key="' +
          esc(a.topic) + '"' + (busy ? ' disabled' : '') + ' aria-label="Acknowledge ' + esc(a.code + ' on ' + a.source) +
          '">' + (pendingTopics.has(a.topic) ? 'Acknowledging...' : 'Acknowledge') + '</button>';
      }
      var err = ackErrors.get(a.topic);
      var raised = parseTs(p.raised_at);
      return '<li class="alarm sev-' + esc(sev) + (acked ? ' acked' : '') + '" data-alarm-topic="' + esc(a.topic) +
        '" data-state="' + esc(p.state || '') + '" data-severity="' + esc(sev) + '">' +
        '<span class="alarm-sev">' + esc(sev) + '</span>' +
        '<div class="alarm-main"><div class="alarm-title"><strong>' + esc(p.message || a.code) + '</strong></div>' +
        '<div class="alarm-meta">' + esc(a.source) + ' · ' + esc(a.code) +
        (raised ? ' · raised ' + esc(clockTime(raised)) + ' (' + esc(ago(raised)) + ')' : '') +
        (acked ? ' · <span class="acked-by">acknowledged by ' + esc(p.acked_by || '?') +
          (p.note ? ': “' + esc(p.note) + '”' : '') + '</span>' : '') + '</div>' +
        (err ? '<div class="alarm-error" role="alert">Acknowledgement refused: ' + esc(err) + '</div>' : '') +
        '</div><div class="alarm-actions">' + (acked ? '<span class="badge badge-info">acknowledged</span>' : btn) +
        '</div></li>';
    }).join('');
    patch($('alarm-list'), html);
  }

  function renderGateways() {
    var gws = Array.from(gateways.entries()).sort();
    var h = gws.map(function (e) {
      var g = e[1];
      return '<div class="gw ' + (g.online ? 'gw-on' : 'gw-off') + '" data-gateway="' + esc(e[0]) + '">' +
        '<strong>' + esc(e[0]) + '</strong> ' + stateBadge(g.online ? 'online' : 'offline', g.online ? 'ok' : 'bad') +
        (g.version ? ' <span class="muted">version ' + esc(g.version) + '</span>' : '') +
        (g.reason ? ' <span class="muted">' + esc(g.reason) + '</span>' : '') +
        ' <span class="muted">since ' + esc(clockTime(parseTs(g.ts) || g._seen)) + '</span></div>';
    }).join('') || '<p class="empty">No gateway status yet.</p>';
    patch($('gateways'), h);
    var online = gws.length && conn.state === 'live' ? gws.every(function (e) { return e[1].online; }) : null;
    var pill = $('gw-status');
    pill.className = 'pill ' + (online == null ? 'pill-unknown' : online ? 'pill-ok' : 'pill-bad');
    pill.textContent = 'gateway: ' + (online == null ? (conn.state === 'live' ? 'unknown' : 'not connected') :
                                      online ? 'online' : 'offline');

    var rows = Array.from(instances.entries()).sort().map(function (e) {
      var i = e[1];
      var healthTone = { ok: 'ok', degraded: 'warn', failed: 'bad' }[i.health] || 'unknown';
      var stateTone = { running: 'ok', starting: 'warn', failed: 'bad', stopped: 'unknown', disabled: 'unknown' }[i.state] || 'unknown';
      return '<tr data-instance="' + esc(i.instance || e[0]) + '"><th scope="row">' + esc(i.instance || e[0]) + '</th><td>' +
        esc(i.plugin || '') + '</td><td>' + stateBadge(i.state || '?', stateTone) + '</td><td>' +
        stateBadge(i.health || '?', healthTone) + '</td><td>' + esc(i.devices != null ? i.devices : '') + '</td><td>' +
        esc(i.reason || '') + '</td></tr>';
    }).join('') || '<tr><td colspan="6" class="empty">No plugin instances reported yet.</td></tr>';
    patch($('instance-rows'), rows);
  }

  function render() {
    renderCards();
    renderAlarms();
    renderGateways();
    renderBanner();
    var who = $('who');
    who.textContent = conn.name ? conn.name + ' (' + (conn.role || '?') + ')' : conn.role ? conn.role : '';
    who.setAttribute('data-role', conn.role || '');
  }

  function showMain() {
    $('login').hidden = true;
    $('main').hidden = false;
    $('logout').hidden = !token();
  }
  function showLogin(msg) {
    $('main').hidden = true;
    $('login').hidden = false;
    $('logout').hidden = true;
    $('conn-banner').hidden = true;
    $('login-error').textContent = msg || '';
    $('token-input').value = '';
    $('token-input').focus();
  }

  // ---- wiring ----------------------------------------------------------------------
  function start() {
    var frag = tokenFromFragment();
    if (frag) setToken(frag);
    $('login-form').addEventListener('submit', function (ev) {
      ev.preventDefault();
      var t = $('token-input').value.trim();
      if (!t) return;
      setToken(t);
      conn.stop = false;
      conn.attempt = 0;
      $('login-error').textContent = '';
      connect();
    });
    $('logout').addEventListener('click', function () {
      setToken(null);
      conn.stop = true;
      if (conn.ws) { try { conn.ws.close(1000, 'signed out'); } catch (e) { /* gone */ } conn.ws = null; }
      setConnState('signed out');
      showLogin('');
    });
    $('reconnect-now').addEventListener('click', function () { conn.stop = false; connect(); });
    $('alarm-list').addEventListener('click', function (ev) {
      var b = ev.target.closest('button[data-ack]');
      if (b && !b.disabled) ackAlarm(b.getAttribute('data-ack'));
    });
    // "N s ago", staleness and the banner countdown
    setInterval(function () {
      $('clock').textContent = clockTime(Date.now());
      if (conn.state !== 'signed out') render();
    }, 1000);
    $('clock').textContent = clockTime(Date.now());
    connect();
  }

  // for tests and the curious: a read-only look at the model
  window.ccgwDashboard = {
    devices: devices, alarms: alarms, instances: instances, gateways: gateways,
    connection: function () { return { state: conn.state, role: conn.role, name: conn.name, attempt: conn.attempt }; }
  };

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
