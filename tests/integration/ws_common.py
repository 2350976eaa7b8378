"""ws_common - the rig of the WebSocket integration tests (ws_*.py).

The real daemon (build/bin/ccgw) with an `http:` section on an ephemeral
port, the project's Modbus simulator (both devices), optionally a private
mosquitto, all in one temporary directory; a small test runner; and a
WebSocket client on python3-websockets (Debian package) with helpers to wait
for messages. Paths come from the environment set by ctest
(tests/integration/CMakeLists.txt): CCGW_BIN, MODBUS_SIM_BIN,
CCGW_PLUGIN_DIR, MOSQUITTO_BIN. CCGW_IT_KEEP=1 keeps the directory.
"""
import asyncio
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request

import websockets

CCGW_BIN = os.environ.get("CCGW_BIN", "build/bin/ccgw")
SIM_BIN = os.environ.get("MODBUS_SIM_BIN", "build/bin/modbus-sim")
PLUGIN_DIR = os.environ.get("CCGW_PLUGIN_DIR", "build/lib/ccgw/plugins")
MOSQUITTO_BIN = os.environ.get("MOSQUITTO_BIN", "/usr/sbin/mosquitto")
SCALE = float(os.environ.get("CCGW_IT_TIMEOUT_SCALE", "1"))

TOKENS = {
    "admin": ("root-token-1", "admin"),
    "operator": ("duty-token-2", "operator"),
    "viewer": ("wall-token-3", "viewer"),
}
PREFIX = "ccgw/v1/hq"
T_AC = PREFIX + "/hvac/room1-ac1"
T_TH = PREFIX + "/env/room1-th1"


def log(*a):
    print("[%s]" % time.strftime("%H:%M:%S"), *a, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def sha(t):
    return hashlib.sha256(t.encode()).hexdigest()


HVAC_POINTS = """\
          points:
            - {name: supply_air.temperature, table: input, address: 0, type: int16, scale: 0.1, unit: Cel}
            - {name: return_air.temperature, table: input, address: 1, type: int16, scale: 0.1, unit: Cel}
            - {name: humidity, table: input, address: 2, type: uint16, scale: 0.1, unit: "%RH"}
            - {name: setpoint.cooling, table: holding, address: 0, type: int16, scale: 0.1, unit: Cel, writable: true, min: 16, max: 32}
            - {name: mode, table: holding, address: 2, type: uint16, enum: [off, cool, heat, dry, fan], publish: state, writable: true}
            - {name: run, table: coil, address: 0, type: bool, publish: none, writable: true}
            - {name: running, table: discrete, address: 0, type: bool, publish: state}
            - {name: fault, table: discrete, address: 1, type: bool, publish: state, alarm: {code: fault, severity: major, message: "Air conditioner fault"}}
            - {name: test.force_fault, table: holding, address: 10, type: bool, publish: none, writable: true}
          commands:
            - {name: hvac.start, point: run, value: 1, doc: "Start the air conditioner."}
            - {name: hvac.stop, point: run, value: 0, doc: "Stop the air conditioner."}
            - {name: hvac.set_setpoint, point: setpoint.cooling, doc: "Cooling setpoint, 16..32 Cel."}
            - {name: test.force_fault, point: test.force_fault, doc: "Force the fault input (simulator)."}
"""
ENV_POINTS = """\
          points:
            - {name: temperature, table: input, address: 0, type: int16, scale: 0.1, unit: Cel}
            - {name: humidity, table: input, address: 1, type: uint16, scale: 0.1, unit: "%RH"}
            - {name: water_leak, table: discrete, address: 0, type: bool, alarm: {code: water_leak, severity: critical, message: "Water leak detected"}}
            - {name: test.force_water_leak, table: holding, address: 10, type: bool, publish: none, writable: true}
"""


def device_yaml(dev_id, cls, port, unit, points, poll_ms=200):
    return (
        "        - id: %s\n          class: %s\n          transport: tcp\n          host: 127.0.0.1\n"
        "          port: %d\n          unit_id: %d\n          poll_interval_ms: %d\n          timeout_ms: 300\n"
        "          retries: 1\n          offline_after: 3\n%s" % (dev_id, cls, port, unit, poll_ms, points))


class Rig:
    """One temporary directory with the processes of a test."""

    def __init__(self, name):
        self.name = name
        self.dir = tempfile.mkdtemp(prefix="ccgw-it-%s-" % name)
        self.procs = []
        self.gw = None
        self.gw_log = None
        self.sim_port = None
        self.broker_port = None
        self.http_port = None
        self.tls = False

    def path(self, f):
        return os.path.join(self.dir, f)

    def spawn(self, name, argv):
        logf = open(self.path(name + ".log"), "ab")
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                             start_new_session=True)
        self.procs.append(p)
        return p, self.path(name + ".log")

    def wait_log(self, logpath, pattern, timeout, proc=None):
        deadline = time.monotonic() + timeout * SCALE
        rx = re.compile(pattern)
        while time.monotonic() < deadline:
            try:
                with open(logpath, errors="replace") as f:
                    for line in f:
                        m = rx.search(line)
                        if m:
                            return m
            except FileNotFoundError:
                pass
            if proc is not None and proc.poll() is not None:
                raise AssertionError("%s exited (%s) before logging /%s/" % (logpath, proc.returncode, pattern))
            time.sleep(0.05)
        raise AssertionError("timeout waiting for /%s/ in %s" % (pattern, logpath))

    def log_text(self):
        with open(self.gw_log, errors="replace") as f:
            return f.read()

    def start_sim(self):
        p, lp = self.spawn("modbus-sim", [SIM_BIN, "--tcp", "0", "--hvac-unit", "1", "--sensor-unit", "2"])
        m = self.wait_log(lp, r"LISTENING tcp [0-9.]+:(\d+)", 10, p)
        self.sim_port = int(m.group(1))

    def start_broker(self):
        self.broker_port = free_port()
        conf = self.path("mosquitto.conf")
        with open(conf, "w") as f:
            f.write("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\n" % self.broker_port)
        p, lp = self.spawn("mosquitto", [MOSQUITTO_BIN, "-c", conf])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.broker_port), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("mosquitto did not start")

    def start_gw(self, http_extra="", mqtt=False, instances=None, cert=None, key=None, anonymous=None, port=0,
                 wait=True):
        """mqtt: False (mqtt.enabled false), True (the rig's broker) or a port (nothing listening)."""
        data = self.path("data")
        os.makedirs(data, exist_ok=True)
        y = ("gateway:\n  site: hq\n  id: gw1\n  log_level: info\n  plugin_dirs: [\"%s\"]\n  data_dir: \"%s\"\n\n"
             % (PLUGIN_DIR, data))
        if mqtt is False:
            y += "mqtt:\n  enabled: false\n\n"
        else:
            mqtt_port = self.broker_port if mqtt is True else mqtt
            y += "mqtt:\n  host: 127.0.0.1\n  port: %d\n  reconnect: {min_ms: 100, max_ms: 500}\n\n" % mqtt_port
        y += "http:\n  address: 127.0.0.1\n  port: %d\n" % port
        if cert:
            y += "  cert_file: \"%s\"\n  key_file: \"%s\"\n" % (cert, key)
            self.tls = True
        if anonymous:
            y += "  anonymous_role: %s\n" % anonymous
        y += http_extra
        y += "  tokens:\n"
        for name, (tok, role) in TOKENS.items():
            y += "    - {name: %s, role: %s, sha256: %s}\n" % (name, role, sha(tok))
        y += "    - {name: ups-only, role: operator, sha256: %s, filters: [\"ccgw/v1/+/ups/#\"]}\n" % sha("ups-token-4")
        y += "\ninstances:\n"
        if instances is None:
            y += ("  - id: equipment-room\n    plugin: modbus\n    options:\n      devices:\n"
                  + device_yaml("room1-ac1", "hvac", self.sim_port, 1, HVAC_POINTS)
                  + device_yaml("room1-th1", "env", self.sim_port, 2, ENV_POINTS))
        else:
            y += instances
        cfg = self.path("ccgw.yaml")
        with open(cfg, "w") as f:
            f.write(y)
        self.gw, self.gw_log = self.spawn("ccgw", [CCGW_BIN, "--config", cfg])
        if not wait:
            return self.gw
        m = self.wait_log(self.gw_log, r"http listening on 127\.0\.0\.1:(\d+)", 20, self.gw)
        self.http_port = int(m.group(1))
        return self.gw

    def url(self, path="/ws", token=None):
        u = "%s://127.0.0.1:%d%s" % ("wss" if self.tls else "ws", self.http_port, path)
        if token:
            u += "?token=" + token
        return u

    def http(self, path, token=None, method="GET", body=None, ctx=None):
        """(status, headers, body bytes)"""
        u = "%s://127.0.0.1:%d%s" % ("https" if self.tls else "http", self.http_port, path)
        req = urllib.request.Request(u, method=method, data=body)
        if token:
            req.add_header("Authorization", "Bearer " + token)
        try:
            with urllib.request.urlopen(req, timeout=10 * SCALE, context=ctx) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def stop_gw(self, timeout=10):
        if self.gw and self.gw.poll() is None:
            self.gw.send_signal(signal.SIGTERM)
            try:
                return self.gw.wait(timeout * SCALE)
            except subprocess.TimeoutExpired:
                os.killpg(self.gw.pid, signal.SIGKILL)
                self.gw.wait()
                raise AssertionError("ccgw did not stop within %ss" % timeout)
        return self.gw.returncode if self.gw else None

    def check_clean_exit(self):
        """The daemon stops with exit 0 on SIGTERM, without sanitizer reports."""
        if not self.gw:
            return
        rc = self.stop_gw()
        text = self.log_text()
        bad = re.search(r"(ERROR: (Address|Leak|Thread)Sanitizer.*|runtime error:.*)", text)
        assert not bad, "sanitizer: " + bad.group(0)
        assert rc == 0, "ccgw exited with %s" % rc

    def close(self, ok):
        for p in reversed(self.procs):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                    p.wait(5)
                except (subprocess.TimeoutExpired, ProcessLookupError):
                    try:
                        os.killpg(p.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    p.wait()
        if ok and not os.environ.get("CCGW_IT_KEEP"):
            shutil.rmtree(self.dir, ignore_errors=True)
        else:
            log("kept", self.dir)
            if self.gw_log and os.path.exists(self.gw_log):
                with open(self.gw_log, errors="replace") as f:
                    tail = f.readlines()[-60:]
                sys.stderr.write("---- ccgw log tail ----\n" + "".join(tail))


class Client:
    """A WebSocket client that keeps every message it receives (batches unpacked)."""

    def __init__(self, ws):
        self.ws = ws
        self.msgs = []
        self.closed = None  # (code, reason)
        self.frames = 0
        self.cond = asyncio.Condition()
        self.task = asyncio.get_event_loop().create_task(self._reader())

    @classmethod
    async def connect(cls, rig, token=None, header_token=None, subprotocols=("ccgw.v1",), ssl_ctx=None, **kw):
        headers = {"Authorization": "Bearer " + header_token} if header_token else None
        if rig.tls and ssl_ctx is None:
            raise AssertionError("TLS rig: pass ssl_ctx")
        ws = await websockets.connect(rig.url(token=token), subprotocols=list(subprotocols) if subprotocols else None,
                                      extra_headers=headers, ssl=ssl_ctx, open_timeout=10 * SCALE,
                                      max_size=8 << 20, **kw)
        return cls(ws)

    async def _reader(self):
        try:
            async for raw in self.ws:
                self.frames += 1
                j = json.loads(raw)
                items = j["msgs"] if j.get("op") == "batch" else [j]
                async with self.cond:
                    self.msgs.extend(items)
                    self.cond.notify_all()
        except websockets.ConnectionClosed:
            pass
        finally:
            async with self.cond:
                self.closed = (self.ws.close_code, self.ws.close_reason)
                self.cond.notify_all()

    async def send(self, obj):
        await self.ws.send(json.dumps(obj) if not isinstance(obj, (str, bytes)) else obj)

    def mark(self):
        return len(self.msgs)

    async def wait(self, pred, start=0, timeout=10, what="a message"):
        deadline = time.monotonic() + timeout * SCALE
        async with self.cond:
            while True:
                for i in range(start, len(self.msgs)):
                    if pred(self.msgs[i]):
                        return i, self.msgs[i]
                if self.closed:
                    raise AssertionError("connection closed %s while waiting for %s" % (self.closed, what))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("timeout waiting for %s; last: %s" % (what, self.msgs[-5:]))
                try:
                    await asyncio.wait_for(self.cond.wait(), left)
                except asyncio.TimeoutError:
                    pass

    async def wait_op(self, op, id=None, start=0, timeout=10):
        return (await self.wait(lambda m: m.get("op") == op and (id is None or m.get("id") == id), start, timeout,
                                "op %s id %s" % (op, id)))[1]

    async def wait_closed(self, timeout=15):
        deadline = time.monotonic() + timeout * SCALE
        async with self.cond:
            while not self.closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("the server did not close the connection")
                try:
                    await asyncio.wait_for(self.cond.wait(), left)
                except asyncio.TimeoutError:
                    pass
        return self.closed

    async def close(self):
        await self.ws.close()
        try:
            await asyncio.wait_for(self.task, 5)
        except asyncio.TimeoutError:
            self.task.cancel()


def topic_matches(f, t):
    fl, tl = f.split("/"), t.split("/")
    for i, x in enumerate(fl):
        if x == "#":
            return True
        if i >= len(tl) or (x != "+" and x != tl[i]):
            return False
    return len(fl) == len(tl)


def run(name, tests):
    """Runs each async test function with a fresh rig; exit 1 when any failed."""
    failures = 0
    for fn in tests:
        rig = Rig(name + "-" + fn.__name__)
        log("==== %s" % fn.__name__)
        ok = False
        try:
            asyncio.run(asyncio.wait_for(fn(rig), 90 * SCALE))
            rig.check_clean_exit()
            ok = True
            log("PASS %s" % fn.__name__)
        except BaseException:
            traceback.print_exc()
            log("FAIL %s" % fn.__name__)
            failures += 1
        finally:
            rig.close(ok)
    log("%d/%d passed" % (len(tests) - failures, len(tests)))
    sys.exit(1 if failures else 0)
