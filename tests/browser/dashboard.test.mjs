// dashboard.test.mjs - the dashboard in a real browser against the real daemon.
//
// Starts, on 127.0.0.1 in a private temp dir: the Modbus simulator
// (build/bin/modbus-sim: air conditioner room1-ac1 and sensor room1-th1), the
// door terminal simulator (build/bin/isapi-sim: lobby-door) and build/bin/ccgw
// with http on a free port, MQTT disabled, an operator and a viewer token and
// an alarm rule that fires at once. Then Debian's /usr/bin/chromium through
// playwright-core checks what a user sees: cards with numbers that change,
// the door's last access, the alarm (no acknowledge button for the viewer;
// the operator's acknowledgement turns it "acknowledged"), a refused token,
// the lost-connection banner when ccgw is killed and its removal (with data
// flowing again) when ccgw is back, and that no request left the origin.
// Everything is stopped by PID.
//
//   npm ci --prefix tests/browser
//   node tests/browser/dashboard.test.mjs --build-dir build     (or: ctest -L browser)
// Exit 0 pass, 1 fail, 77 skipped (playwright-core or chromium missing).

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const CHROMIUM = process.env.CCGW_CHROMIUM || '/usr/bin/chromium';
const argv = process.argv.slice(2);
const bdArg = argv.indexOf('--build-dir');
const buildDir = path.resolve(bdArg >= 0 && argv[bdArg + 1] ? argv[bdArg + 1] :
                              process.env.CCGW_BUILD_DIR || path.join(HERE, '..', '..', 'build'));
const BIN = (n) => path.join(buildDir, 'bin', n);
const OP_TOKEN = 'op-' + Math.random().toString(36).slice(2) + Date.now().toString(36);
const VIEW_TOKEN = 'view-' + Math.random().toString(36).slice(2) + Date.now().toString(36);
const ALARM_TOPIC = 'ccgw/v1/hq/env/room1-th1/alarm/test_temp_high';

const T0 = Date.now();
function log(...a) { console.log('[browser] +' + ((Date.now() - T0) / 1000).toFixed(1) + 's', ...a); }
function skip(why) { console.log('SKIP:', why); process.exit(77); }

let chromium;
try {
  ({ chromium } = await import(path.join(HERE, 'node_modules', 'playwright-core', 'index.mjs')));
} catch (e) {
  skip('playwright-core is not installed: run `npm ci --prefix tests/browser` (' + e.message + ')');
}
if (!fs.existsSync(CHROMIUM)) skip(CHROMIUM + ' is missing (apt-get install chromium)');
for (const b of ['ccgw', 'modbus-sim', 'isapi-sim']) {
  if (!fs.existsSync(BIN(b))) { console.error('FAIL: ' + BIN(b) + ' is missing: build the tree first'); process.exit(1); }
}
if (!fs.existsSync(path.join(buildDir, 'share', 'ccgw', 'web', 'index.html'))) {
  console.error('FAIL: ' + buildDir + '/share/ccgw/web/index.html is missing (target ccgw_web)');
  process.exit(1);
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ccgw-browser-'));
const procs = [];            // {name, child}

function start(name, cmd, args, env) {
  const out = fs.openSync(path.join(tmp, name + '.log'), 'a');
  const child = spawn(cmd, args, { cwd: tmp, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', out] });
  child.stdoutText = '';
  child.stdout.on('data', (d) => { child.stdoutText += d; fs.appendFileSync(path.join(tmp, name + '.log'), d); });
  child.exited = new Promise((res) => child.on('exit', (code, sig) => res({ code, sig })));
  procs.push({ name, child });
  return child;
}

async function stop(child, sig = 'SIGTERM') {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill(sig);
  const t = setTimeout(() => { try { child.kill('SIGKILL'); } catch { /* gone */ } }, 5000);
  await child.exited;
  clearTimeout(t);
}

async function until(what, fn, ms = 15000, step = 100) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    try { last = await fn(); if (last) return last; } catch (e) { last = e; }
    await new Promise((r) => setTimeout(r, step));
  }
  throw new Error('timed out waiting for ' + what + (last instanceof Error ? ': ' + last.message : ''));
}

async function listening(child, re) {
  const m = await until('LISTENING line', () => child.stdoutText.match(re), 10000);
  return Number(m[1]);
}

function freePort() {
  return new Promise((res, rej) => {
    const s = net.createServer();
    s.on('error', rej);
    s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => res(p)); });
  });
}

function tcpOpen(port) {
  return new Promise((res) => {
    const c = net.connect(port, '127.0.0.1');
    c.on('connect', () => { c.destroy(); res(true); });
    c.on('error', () => res(false));
  });
}

// A UPS through NUT (upsd + dummy-ups, static values: on battery), when nut-server is installed and
// the nut plugin is built. Returns upsd's port, or 0 (the UPS checks are then skipped).
async function startNut() {
  const DRV = '/lib/nut/dummy-ups', UPSD = '/lib/nut/upsd';
  if (!fs.existsSync(DRV) || !fs.existsSync(UPSD) || !fs.existsSync(path.join(buildDir, 'lib', 'ccgw', 'plugins', 'nut.so'))) {
    log('NUT or the nut plugin missing: UPS checks skipped');
    return 0;
  }
  const root = process.getuid() === 0;
  const nut = path.join(tmp, 'nut');
  const state = path.join(nut, 'state');
  fs.chmodSync(tmp, 0o755);                       // user nut must reach the configs
  fs.mkdirSync(state, { recursive: true, mode: 0o770 });
  fs.chmodSync(nut, 0o755);
  const port = await freePort();
  const write = (f, text, mode, nutGroup) => {
    fs.writeFileSync(path.join(nut, f), text);
    fs.chmodSync(path.join(nut, f), mode);
    if (nutGroup && root) fs.chownSync(path.join(nut, f), 0, nutGid);
  };
  let nutUid = 0, nutGid = 0;
  if (root) {
    const line = fs.readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.startsWith('nut:'));
    if (!line) { log('no user nut: UPS checks skipped'); return 0; }
    [nutUid, nutGid] = line.split(':').slice(2, 4).map(Number);
    fs.chownSync(state, nutUid, nutGid);
  }
  write('nut.conf', 'MODE=standalone\n', 0o644, false);
  write('ups.conf', '[ups1]\n  driver = dummy-ups\n  port = ups1.dev\n  pollinterval = 1\n  desc = "ccgw browser test"\n', 0o644, false);
  write('upsd.conf', `LISTEN 127.0.0.1 ${port}\nMAXAGE 5\n`, 0o640, true);
  write('upsd.users', '', 0o640, true);
  write('ups1.dev', 'ups.status: OB DISCHRG\nbattery.charge: 55\nbattery.runtime: 840\nbattery.voltage: 24.6\n' +
        'input.voltage: 0\nups.load: 41\noutput.voltage: 229.5\n', 0o644, false);
  const env = { NUT_CONFPATH: nut, NUT_STATEPATH: state, NUT_ALTPIDPATH: state };
  const as = root ? ['-u', 'nut'] : [];
  const drv = start('dummy-ups', DRV, ['-a', 'ups1', ...as, '-F'], env);
  await until('dummy-ups socket', () => {
    if (drv.exitCode !== null) throw new Error('dummy-ups exited');
    return fs.existsSync(path.join(state, 'dummy-ups-ups1'));
  }, 10000);
  const upsd = start('upsd', UPSD, [...as, '-F'], env);
  await until('upsd on ' + port, () => {
    if (upsd.exitCode !== null) throw new Error('upsd exited');
    return tcpOpen(port);
  }, 10000);
  return port;
}

let failed = false;
function check(cond, msg) {
  if (!cond) throw new Error('assertion failed: ' + msg);
  log('ok -', msg);
}

let browser;
try {
  // ---- simulators ------------------------------------------------------------------
  const sim = start('modbus-sim', BIN('modbus-sim'), ['--tcp', '0', '--period-ms', '100']);
  const modbusPort = await listening(sim, /LISTENING tcp [0-9.]+:(\d+)/);
  const door = start('isapi-sim', BIN('isapi-sim'), ['--port', '0', '--user', 'admin', '--password', 'door-pw',
                                                      '--heartbeat-ms', '1000', '--replay', '0']);
  const doorPort = await listening(door, /LISTENING http [0-9.]+:(\d+)/);
  const httpPort = await freePort();
  log('modbus-sim', modbusPort, 'isapi-sim', doorPort, 'http', httpPort, 'tmp', tmp);
  const nutPort = await startNut();

  // ---- ccgw ----------------------------------------------------------------------------
  const cfg = path.join(tmp, 'ccgw.yaml');
  fs.writeFileSync(cfg, `# written by tests/browser/dashboard.test.mjs
gateway:
  site: hq
  id: gw1
  log_level: info
  plugin_dirs: [${JSON.stringify(path.join(buildDir, 'lib', 'ccgw', 'plugins'))}]
  data_dir: ${JSON.stringify(path.join(tmp, 'data'))}
http:
  address: 127.0.0.1
  port: ${httpPort}
  tokens:
    - name: duty-operator
      role: operator
      token: !env CCGW_TEST_OPERATOR_TOKEN
    - name: wall-screen
      role: viewer
      token: !env CCGW_TEST_VIEWER_TOKEN
instances:
  - id: equipment-room
    plugin: modbus
    options:
      devices:
        - id: room1-ac1
          class: hvac
          host: 127.0.0.1
          port: ${modbusPort}
          unit_id: 1
          poll_interval_ms: 500
          points:
            - {name: supply_air.temperature, table: input, address: 0, type: int16, scale: 0.1, unit: Cel}
            - {name: return_air.temperature, table: input, address: 1, type: int16, scale: 0.1, unit: Cel}
            - {name: humidity, table: input, address: 2, type: uint16, scale: 0.1, unit: "%RH"}
            - {name: setpoint.cooling, table: holding, address: 0, type: int16, scale: 0.1, unit: Cel}
            - {name: mode, table: holding, address: 2, type: uint16, enum: [off, cool, heat, dry, fan], publish: state}
            - {name: running, table: discrete, address: 0, type: bool, publish: state}
            - {name: fault, table: discrete, address: 1, type: bool, publish: state}
        - id: room1-th1
          class: env
          host: 127.0.0.1
          port: ${modbusPort}
          unit_id: 2
          poll_interval_ms: 500
          points:
            - {name: temperature, table: input, address: 0, type: int16, scale: 0.1, unit: Cel}
            - {name: humidity, table: input, address: 1, type: uint16, scale: 0.1, unit: "%RH"}
            - {name: water_leak, table: discrete, address: 0, type: bool}
  - id: doors
    plugin: isapi-door
    options:
      terminals:
        - id: lobby-door
          host: 127.0.0.1
          port: ${doorPort}
          username: admin
          password: !env CCGW_TEST_DOOR_PASSWORD
          heartbeat_timeout_s: 10
${nutPort ? `  - id: ups-room
    plugin: nut
    options:
      servers:
        - host: 127.0.0.1
          port: ${nutPort}
          poll_interval_ms: 500
          upses:
            - name: ups1
` : ''}alarms:
  rules:
    - code: test_temp_high
      class: env
      device: room1-th1
      value: temperature
      type: high
      threshold: 1
      severity: critical
      message: Test room above 1 °C
`);
  const ccgwEnv = { CCGW_TEST_OPERATOR_TOKEN: OP_TOKEN, CCGW_TEST_VIEWER_TOKEN: VIEW_TOKEN,
                    CCGW_TEST_DOOR_PASSWORD: 'door-pw' };
  const startCcgw = async (n) => {
    const c = start('ccgw-' + n, BIN('ccgw'), ['--config', cfg], ccgwEnv);
    await until('ccgw http on ' + httpPort, async () => {
      if (c.exitCode !== null) throw new Error('ccgw exited: see ' + path.join(tmp, 'ccgw-' + n + '.log'));
      return tcpOpen(httpPort);
    }, 20000);
    return c;
  };
  let ccgw = await startCcgw(1);
  const origin = `http://127.0.0.1:${httpPort}`;

  // ---- browser -------------------------------------------------------------------------------
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
           '--disable-component-update', '--disable-sync'],
  });
  const requests = [];
  const pageErrors = [];
  async function openPage(token, extra = '') {
    const ctx = await browser.newContext({ viewport: { width: 1600, height: 1000 } });
    ctx.on('request', (r) => requests.push(r.url()));
    const page = await ctx.newPage();
    page.on('websocket', (w) => requests.push(w.url()));
    page.on('pageerror', (e) => pageErrors.push(e.message));
    page.on('console', (m) => { if (/Content.Security.Policy/i.test(m.text())) pageErrors.push(m.text()); });
    await page.goto(origin + '/' + (token ? '#token=' + encodeURIComponent(token) + extra : ''));
    return page;
  }
  const raw = (page, dev, name) => page.evaluate(([d, n]) => {
    const el = document.querySelector(`[data-device="${d}"] [data-value="${n}"] .metric-value`);
    return el ? el.getAttribute('data-raw') : null;
  }, [dev, name]);
  const numbers = async (page) => {
    const v = {};
    for (const [d, n] of [['hvac/room1-ac1', 'supply_air.temperature'], ['hvac/room1-ac1', 'return_air.temperature'],
                          ['hvac/room1-ac1', 'humidity'], ['env/room1-th1', 'temperature'], ['env/room1-th1', 'humidity']]) {
      v[d + ' ' + n] = await raw(page, d, n);
    }
    return v;
  };

  // viewer first: the alarm is still raised, and a viewer must not get the button
  // (subscribing per class, as a wall screen of a big site would)
  const viewer = await openPage(VIEW_TOKEN, '&classes=env,hvac');
  await until('viewer: signed in', () => viewer.evaluate(() => window.ccgwDashboard.connection().role === 'viewer'));
  check(!viewer.url().includes(VIEW_TOKEN) && viewer.url().includes('classes=env,hvac'),
        'the token is removed from the address bar (the rest of the fragment stays)');
  check(await viewer.evaluate(() => sessionStorage.getItem('ccgw.token')) === VIEW_TOKEN, 'the token is kept in sessionStorage');
  const alarmSel = `li[data-alarm-topic="${ALARM_TOPIC}"]`;
  await until('viewer: alarm listed', () => viewer.$(alarmSel + '[data-state="raised"]'));
  check(await viewer.$$eval('button[data-ack]', (b) => b.length) === 0, 'the viewer sees no acknowledge button');
  check((await viewer.textContent(alarmSel)).includes('Test room above 1'), 'the alarm shows its message');
  await until('viewer: gateway status', () => viewer.$('[data-gateway="hq/gw1"]'));
  check(await viewer.$('[data-device="door/lobby-door"]') === null, 'a per-class page shows only its classes (and the gateway)');

  const op = await openPage(OP_TOKEN);
  await until('operator: signed in', () => op.evaluate(() => window.ccgwDashboard.connection().role === 'operator'));
  // cards with numbers
  await until('hvac and env cards with numbers', async () => {
    const v = await numbers(op);
    return Object.values(v).every((x) => x !== null && x !== '' && isFinite(Number(x)));
  });
  const first = await numbers(op);
  log('values', JSON.stringify(first));
  check(await op.$('[data-device="hvac/room1-ac1"]') && await op.$('[data-device="env/room1-th1"]'), 'hvac and env cards appear');
  await until('values update', async () => {
    const v = await numbers(op);
    return Object.keys(v).some((k) => v[k] !== first[k] && v[k] !== null && v[k] !== '');
  }, 20000, 250);
  check(true, 'numeric values update live');
  check((await op.textContent('[data-device="env/room1-th1"] [data-role="updated"]')).match(/last update \d+ s ago/),
        'cards say when they were last updated');
  await until('sparkline drawn', () => op.$('[data-device="env/room1-th1"] svg.spark polyline'));
  check(true, 'a trend sparkline is drawn');
  check(await op.$eval('[data-device="hvac/room1-ac1"]', (e) => e.getAttribute('data-stale')) === 'false',
        'a live device is not greyed');

  // door: an access event
  const ev = await fetch(`http://127.0.0.1:${doorPort}/sim/event`, {
    method: 'POST', body: JSON.stringify({ majorEventType: 5, subEventType: 75, employeeNoString: '1024',
                                          name: 'Alice Martin', currentVerifyMode: 'face' }) });
  check(ev.ok, 'access event injected into isapi-sim');
  await until('door card shows the access', async () =>
    ((await op.textContent('[data-device="door/lobby-door"] [data-value="last_access"]')) || '').includes('Alice Martin'));
  check(true, 'the door card shows the last access event');

  // UPS (NUT names): on battery, with its values and its own alarm
  if (nutPort) {
    const ups = '[data-device="ups/ups1"]';
    await until('UPS card with values', async () => (await raw(op, 'ups/ups1', 'battery.charge')) === '55');
    check((await op.textContent(ups + ' .badges')).includes('on battery'), 'the UPS card shows its status (on battery)');
    check(await raw(op, 'ups/ups1', 'ups.load') === '41' && await raw(op, 'ups/ups1', 'input.voltage') === '0' &&
          await raw(op, 'ups/ups1', 'battery.runtime') === '840', 'the UPS card shows load, input voltage and runtime');
    check((await op.textContent(ups + ' [data-value="battery.runtime"]')).includes('14 min'), 'runtime is shown in minutes');
    await until('on_battery alarm', () => op.$('li[data-alarm-topic="ccgw/v1/hq/ups/ups1/alarm/on_battery"][data-severity="major"]'));
    const order = await op.$$eval('li[data-alarm-topic]', (l) => l.map((e) => e.getAttribute('data-severity')));
    check(order.indexOf('critical') < order.indexOf('major'), 'critical alarms are listed before major ones (' + order.join(',') + ')');
  }

  // instances and gateway
  await until('instance health', () => op.$('tr[data-instance="equipment-room"]'));
  check((await op.textContent('tr[data-instance="equipment-room"]')).includes('running'), 'plugin instance health is listed');
  check(await op.$$eval(`${alarmSel} button[data-ack]`, (b) => b.length) === 1, 'the operator sees an acknowledge button');

  // a second operator's page that does not hear of the acknowledgement (its WebSocket drops that
  // update), so that it still offers the button and gets the gateway's refusal
  const late = await browser.newContext({ viewport: { width: 1200, height: 900 } });
  late.on('request', (r) => requests.push(r.url()));
  const op2 = await late.newPage();
  op2.on('websocket', (w) => requests.push(w.url()));
  op2.on('pageerror', (e) => pageErrors.push(e.message));
  await op2.routeWebSocket(/\/ws$/, (ws) => {
    const server = ws.connectToServer();
    const hide = (m) => !(m && m.topic === ALARM_TOPIC && m.payload && m.payload.state === 'acknowledged');
    server.onMessage((text) => {
      let f;
      try { f = JSON.parse(text); } catch { ws.send(text); return; }
      if (f.op === 'batch' && Array.isArray(f.msgs)) { f.msgs = f.msgs.filter(hide); if (f.msgs.length) ws.send(JSON.stringify(f)); }
      else if (hide(f)) ws.send(text);
    });
  });
  await op2.goto(origin + '/#token=' + encodeURIComponent(OP_TOKEN));
  await until('second operator: alarm with a button', () => op2.$(`${alarmSel}[data-state="raised"] button[data-ack]`));

  // acknowledge
  await op.click(`${alarmSel} button[data-ack]`);
  await until('alarm acknowledged (operator)', () => op.$(alarmSel + '[data-state="acknowledged"]'));
  check((await op.textContent(alarmSel)).includes('acknowledged by duty-operator'), 'the acknowledgement names the operator');
  await op2.click(`${alarmSel} button[data-ack]`);
  await until('refusal shown', () => op2.$(`${alarmSel} .alarm-error`));
  const refusal = await op2.textContent(`${alarmSel} .alarm-error`);
  log('refusal:', refusal);
  check(/refused: \w+/.test(refusal), 'a refused acknowledgement shows the gateway\'s error');
  await late.close();
  await until('alarm acknowledged (viewer, live)', () => viewer.$(alarmSel + '[data-state="acknowledged"]'));
  check(true, 'the viewer sees the acknowledgement live');

  // a refused token: the sign-in form with an error
  const bad = await openPage('not-a-token');
  await until('login form for a bad token', () => bad.isVisible('#login-form'));
  check(((await bad.textContent('#login-error')) || '').length > 0, 'a refused token shows the sign-in form with a reason');
  check(await bad.evaluate(() => sessionStorage.getItem('ccgw.token')) === null, 'a refused token is forgotten');
  await bad.context().close();

  // no token: the sign-in form; the form's token works
  const anon = await openPage(null);
  await until('login form without a token', () => anon.isVisible('#login-form'));
  await anon.fill('#token-input', VIEW_TOKEN);
  await anon.click('#login-form button[type="submit"]');
  await until('signed in through the form', () => anon.evaluate(() => window.ccgwDashboard.connection().role === 'viewer'));
  await until('form user sees the alarm', () => anon.$(alarmSel));
  check(await anon.isHidden('#login-form'), 'without a token the sign-in form is shown, and its token signs in');
  await anon.context().close();

  // connection lost and back
  const boot1 = await op.evaluate(() => Array.from(window.ccgwDashboard.gateways.values())[0]?.boot);
  check(!(await op.isVisible('#conn-banner')), 'no banner while connected');
  await stop(ccgw, 'SIGKILL');
  await until('lost-connection banner', () => op.isVisible('#conn-banner'), 10000);
  check((await op.textContent('#conn-banner')).includes('Connection to the gateway lost'), 'the banner says the connection is lost');
  ccgw = await startCcgw(2);
  await until('banner removed after restart', async () => !(await op.isVisible('#conn-banner')), 40000, 200);
  check(true, 'the banner goes away when ccgw is back');
  await until('new boot seen', async () => {
    const b = await op.evaluate(() => Array.from(window.ccgwDashboard.gateways.values())[0]?.boot);
    return b && b !== boot1;
  }, 15000);
  const after = await numbers(op);
  await until('values update after the restart', async () => {
    const v = await numbers(op);
    return Object.keys(v).some((k) => v[k] !== after[k]);
  }, 20000, 250);
  check(true, 'data flows again after the reconnect');
  await until('viewer reconnected', () => viewer.evaluate(() => window.ccgwDashboard.connection().state === 'live'), 40000, 200);
  check(!(await viewer.isVisible('#conn-banner')), 'the viewer reconnected too');

  // nothing left the origin
  const foreign = requests.filter((u) => !u.startsWith(origin + '/') && !u.startsWith(`ws://127.0.0.1:${httpPort}/`) &&
                                         !u.startsWith('data:'));
  check(requests.length > 0 && foreign.length === 0, 'no request left the origin (' + requests.length + ' requests' +
        (foreign.length ? '; foreign: ' + foreign.join(' ') : '') + ')');
  check(pageErrors.length === 0, 'no JavaScript errors or Content-Security-Policy violations' + (pageErrors.length ? ': ' + pageErrors.join('; ') : ''));
  log('PASS');
} catch (e) {
  failed = true;
  console.error('FAIL:', e && e.stack || e);
  for (const { name } of procs) {
    const f = path.join(tmp, name + '.log');
    if (fs.existsSync(f)) console.error(`---- ${name}.log (tail) ----\n` + fs.readFileSync(f, 'utf8').split('\n').slice(-30).join('\n'));
  }
} finally {
  if (browser) await browser.close().catch(() => {});
  for (const { child } of procs.reverse()) await stop(child);
  if (!failed) fs.rmSync(tmp, { recursive: true, force: true });
  else console.error('kept', tmp);
}
process.exit(failed ? 1 : 0);
