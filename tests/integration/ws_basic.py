#!/usr/bin/python3
"""ws_basic - /ws against the real daemon and the Modbus simulator, MQTT disabled:
 - sub with a wildcard filter: the snapshot (retained, matching only) comes
   first, then `ack` with its count, then live messages of the real devices;
 - unsub stops them; ping/pong; every error code of the contract; auth by
   header, by ?token= and by the first `auth` message; a bad token is closed
   1008; the token's filters limit what it sees;
 - cmd with a reply (hvac.set_setpoint, written to the simulator) and
   ack_alarm (a real alarm forced through the simulator), forbidden for a
   viewer, and the audit trail;
 - static files: index.html at /, content types, no path traversal, 404 JSON;
 - the HTTP API through the same port: /healthz without a token, 401 without
   one elsewhere, /metrics (with the ws counters), a command answered later
   (pending, completed from the instance thread), 413 over max_request_bytes,
   405, keep-alive with several requests on one connection;
 - anonymous_role viewer: no token needed to subscribe, commands forbidden;
   max_clients refuses one more connection and accepts again after a close.
"""
import asyncio
import json
import os
import sys

import websockets

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ws_common import (PREFIX, T_AC, T_TH, TOKENS, Client, log, run, topic_matches)  # noqa: E402

ADMIN = TOKENS["admin"][0]
OPER = TOKENS["operator"][0]
VIEWER = TOKENS["viewer"][0]


async def test_sub_snapshot_then_live(rig):
    rig.start_sim()
    rig.start_gw()
    # let both devices publish their state first, so the snapshot has them
    rig.wait_log(rig.gw_log, r"instances running 1", 20, rig.gw)
    await asyncio.sleep(1.5)
    c = await Client.connect(rig, header_token=VIEWER)
    flt = PREFIX + "/+/+/state"
    await c.send({"op": "sub", "id": 1, "filter": flt})
    ack = await c.wait_op("ack", 1)
    n = ack["snapshot"]
    i_ack = c.msgs.index(ack)
    snap = c.msgs[:i_ack]
    log("snapshot", n, [m["topic"] for m in snap])
    assert n == len(snap) and n >= 2, (n, snap)
    assert all(m["op"] == "msg" and m["retained"] is True and topic_matches(flt, m["topic"]) for m in snap), snap
    topics = {m["topic"] for m in snap}
    assert T_AC + "/state" in topics and T_TH + "/state" in topics, topics
    for m in snap:
        p = m["payload"]
        assert p["site"] == "hq" and p["class"] in ("hvac", "env") and p["seq"] >= 1 and "boot" in p, p
    # live: a change made behind the gateway's back (the simulator's mode register)
    # shows up as a new state; telemetry is not subscribed so it must not come
    mark = c.mark()
    await c.send({"op": "sub", "id": 2, "filter": T_TH + "/telemetry"})
    await c.wait_op("ack", 2, start=mark)
    _, tel = await c.wait(lambda m: m.get("op") == "msg" and m["topic"] == T_TH + "/telemetry"
                          and m["retained"] is False, mark, 10, "live telemetry")
    assert "temperature" in json.dumps(tel["payload"]), tel
    assert not any(m.get("op") == "msg" and m["topic"] == T_AC + "/telemetry" for m in c.msgs), "unsubscribed topic"
    # unsub: no more telemetry after the ack (allow what was already queued before it)
    mark = c.mark()
    await c.send({"op": "unsub", "id": 3, "filter": T_TH + "/telemetry"})
    i, _ = await c.wait(lambda m: m.get("op") == "ack" and m.get("id") == 3, mark, 10, "unsub ack")
    await asyncio.sleep(1.5)
    late = [m for m in c.msgs[i + 1:] if m.get("op") == "msg" and m["topic"].endswith("/telemetry")]
    assert not late, late
    # ping
    await c.send({"op": "ping", "id": 9})
    assert (await c.wait_op("pong", 9))["id"] == 9
    # batches: several messages per frame happen (the snapshot at least)
    log("frames", c.frames, "messages", len(c.msgs))
    await c.close()


async def test_errors_and_auth(rig):
    rig.start_sim()
    rig.start_gw()
    # unauthorized until auth; then auth by message
    c = await Client.connect(rig)
    await c.send({"op": "sub", "id": 1, "filter": "#"})
    e = await c.wait_op("error", 1)
    assert e["code"] == "unauthorized", e
    await c.send({"op": "auth", "id": 2, "token": OPER})
    a = await c.wait_op("ack", 2)
    assert a["role"] == "operator" and a["name"] == "operator", a
    cases = [
        ("{not json", "bad_json", None),
        (json.dumps({"op": "frobnicate", "id": 10}), "unknown_op", 10),
        (json.dumps({"op": "sub", "id": 11, "filter": "ccgw/v1/#/x"}), "bad_filter", 11),
        (json.dumps({"op": "sub", "id": 12, "filter": "ccgw/v1/a+"}), "bad_filter", 12),
        (json.dumps({"op": "sub", "id": 13}), "bad_request", 13),
        (json.dumps({"op": "cmd", "id": 14, "topic": "elsewhere/x/y/cmd/z"}), "bad_request", 14),
        (json.dumps([1, 2]), "bad_request", None),
        ("x" * 70000, "too_large", None),
    ]
    for raw, code, id_ in cases:
        mark = c.mark()
        await c.send(raw)
        _, e = await c.wait(lambda m: m.get("op") == "error", mark, 10, "error " + code)
        assert e["code"] == code and e.get("id") == id_, (raw[:40], e)
        assert isinstance(e["message"], str) and e["message"], e
    # too many subscriptions
    for i in range(64):
        await c.send({"op": "sub", "id": 100 + i, "filter": "ccgw/v1/x%d/#" % i})
    await c.wait_op("ack", 163)
    await c.send({"op": "sub", "id": 200, "filter": "ccgw/v1/one-too-many/#"})
    assert (await c.wait_op("error", 200))["code"] == "too_many_subs"
    # the connection still works
    await c.send({"op": "ping", "id": 201})
    await c.wait_op("pong", 201)
    await c.close()

    # ?token= works, the subprotocol is optional
    c = await Client.connect(rig, token=VIEWER, subprotocols=None)
    await c.send({"op": "sub", "id": 1, "filter": "ccgw/v1/#"})
    assert (await c.wait_op("ack", 1))["snapshot"] >= 1
    await c.close()

    # a bad token: error unauthorized, then close 1008
    for kw in ({"token": "nope"}, {"header_token": "nope"}):
        c = await Client.connect(rig, **kw)
        e = await c.wait_op("error")
        assert e["code"] == "unauthorized", e
        code, reason = await c.wait_closed()
        assert code == 1008 and reason == "unauthorized", (code, reason)
    c = await Client.connect(rig)
    await c.send({"op": "auth", "id": 5, "token": "wrong"})
    assert (await c.wait_op("error", 5))["code"] == "unauthorized"
    assert (await c.wait_closed())[0] == 1008
    # token filters: ups-only sees nothing of hvac/env
    c = await Client.connect(rig, token="ups-token-4")
    await c.send({"op": "sub", "id": 1, "filter": "ccgw/v1/#"})
    ack = await c.wait_op("ack", 1)
    assert ack["snapshot"] == 0, c.msgs
    await asyncio.sleep(1.0)
    assert not [m for m in c.msgs if m.get("op") == "msg"], c.msgs
    await c.close()
    text = rig.log_text()
    assert "unauthorized" in text and "unknown token" in text, "refusals are logged"
    # no auth at all within 10 s: closed 1008
    c = await Client.connect(rig)
    code, _ = await c.wait_closed(20)
    assert code == 1008, code


async def test_commands_and_alarm_ack(rig):
    rig.start_sim()
    rig.start_gw()
    rig.wait_log(rig.gw_log, r"instances running 1", 20, rig.gw)
    c = await Client.connect(rig, header_token=OPER)
    await c.send({"op": "sub", "id": 1, "filter": T_AC + "/#"})
    await c.wait_op("ack", 1)
    # cmd by topic, with a reply that is the MQTT reply payload
    await c.send({"op": "cmd", "id": 2, "topic": T_AC + "/cmd/hvac.set_setpoint", "args": {"value": 21.5}})
    r = await c.wait_op("reply", 2, timeout=15)
    assert r["payload"]["ok"] is True, r
    # cmd by class/device/name; an unknown command is a reply with ok false
    await c.send({"op": "cmd", "id": 3, "class": "hvac", "device": "room1-ac1", "name": "hvac.nope"})
    r = await c.wait_op("reply", 3, timeout=15)
    assert r["payload"]["ok"] is False and r["payload"]["error"]["code"] == "unknown_command", r
    await c.send({"op": "cmd", "id": 4, "class": "hvac", "device": "ghost", "name": "hvac.start"})
    r = await c.wait_op("reply", 4, timeout=15)
    assert r["payload"]["error"]["code"] == "unknown_device", r
    # raise a real alarm through the simulator (force the fault input), then acknowledge it
    await c.send({"op": "cmd", "id": 5, "topic": T_AC + "/cmd/test.force_fault", "args": {"value": True}})
    r = await c.wait_op("reply", 5, timeout=15)
    assert r["payload"]["ok"] is True, r
    _, al = await c.wait(lambda m: m.get("op") == "msg" and m["topic"] == T_AC + "/alarm/fault" and m["payload"]
                         and m["payload"].get("state") == "raised", 0, 15, "fault alarm raised")
    # a viewer may not acknowledge, nor command
    v = await Client.connect(rig, header_token=VIEWER)
    await v.send({"op": "ack_alarm", "id": 7, "topic": T_AC + "/alarm/fault"})
    assert (await v.wait_op("error", 7))["code"] == "forbidden"
    await v.send({"op": "cmd", "id": 8, "topic": T_AC + "/cmd/hvac.start"})
    assert (await v.wait_op("error", 8))["code"] == "forbidden"
    await v.close()
    mark = c.mark()
    await c.send({"op": "ack_alarm", "id": 6, "topic": T_AC + "/alarm/fault", "note": "on it"})
    r = await c.wait_op("reply", 6, start=mark, timeout=15)
    assert r["payload"]["ok"] is True, r
    _, al = await c.wait(lambda m: m.get("op") == "msg" and m["topic"] == T_AC + "/alarm/fault" and m["payload"]
                         and m["payload"].get("state") == "acknowledged", mark, 15, "alarm acknowledged")
    assert al["payload"]["acked_by"] == "operator", al
    # again: already acknowledged
    await c.send({"op": "ack_alarm", "id": 9, "class": "hvac", "device": "room1-ac1", "code": "fault"})
    r = await c.wait_op("reply", 9, timeout=15)
    assert r["payload"]["ok"] is False, r
    await c.close()
    # the connection is gone before the reply arrives (WebSocket and HTTP): the reply is dropped by id
    g = await Client.connect(rig, header_token=OPER)
    await g.send({"op": "cmd", "id": 1, "topic": T_AC + "/cmd/hvac.set_setpoint", "args": {"value": 20}})
    g.ws.transport.abort()
    import socket
    body = json.dumps({"topic": T_AC + "/cmd/hvac.set_setpoint", "args": {"value": 20}}).encode()
    raw = socket.create_connection(("127.0.0.1", rig.http_port))
    raw.sendall(b"POST /api/v1/commands HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + OPER.encode() +
                b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    raw.close()
    await asyncio.sleep(1.0)
    # the server goes on
    c = await Client.connect(rig, header_token=OPER)
    await c.send({"op": "cmd", "id": 10, "topic": T_AC + "/cmd/hvac.set_setpoint", "args": {"value": 21}})
    assert (await c.wait_op("reply", 10, timeout=15))["payload"]["ok"] is True
    await c.close()
    # the audit trail has the command, the ack and the refusals, channel ws
    audit = rig.path("data/audit.jsonl")
    with open(audit) as f:
        lines = [json.loads(x) for x in f if x.strip()]
    ws = [x for x in lines if x.get("channel") == "ws"]
    log("audit", len(ws), "ws lines")
    assert any(x["action"] == "command" and x["result"] == "ok" and x["token"] == "operator" for x in ws), ws
    assert any(x["action"] == "alarm.ack" and x["result"] == "ok" for x in ws), ws
    assert any(x["result"] == "forbidden" and x["token"] == "viewer" for x in ws), ws


async def test_static_files(rig):
    web = rig.path("web")
    os.makedirs(os.path.join(web, "js"))
    with open(os.path.join(web, "index.html"), "w") as f:
        f.write("<!doctype html><title>ccgw</title>")
    with open(os.path.join(web, "js", "app.js"), "w") as f:
        f.write("console.log('x');")
    with open(rig.path("secret.txt"), "w") as f:
        f.write("secret")
    rig.start_sim()
    rig.start_gw(http_extra="  web_root: \"%s\"\n" % web)
    st, h, b = rig.http("/")
    assert st == 200 and b.startswith(b"<!doctype html>") and h["content-type"].startswith("text/html"), (st, h)
    st, h, b = rig.http("/js/app.js")
    assert st == 200 and "javascript" in h["content-type"], (st, h)
    for bad in ("/../secret.txt", "/js/../../secret.txt", "/%2e%2e/secret.txt", "/nope.html", "/js/"):
        st, h, b = rig.http(bad)
        assert st == 404 and json.loads(b)["error"]["code"] == "not_found", (bad, st, b)
        assert b"secret" not in b
    st, h, b = rig.http("/ws")
    assert st == 400, st
    st, h, b = rig.http("/", method="HEAD")
    assert st == 200 and b == b"" and h["content-type"].startswith("text/html"), (st, h)
    # files and errors one after the other on one keep-alive connection
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", rig.http_port, timeout=10)
    for path, want in (("/", 200), ("/js/app.js", 200), ("/nope", 404), ("/", 200)):
        conn.request("GET", path)
        r = conn.getresponse()
        r.read()
        assert r.status == want, (path, r.status)
    conn.close()


async def test_http_api(rig):
    rig.start_sim()
    rig.start_gw(http_extra="  max_request_bytes: 4096\n")
    rig.wait_log(rig.gw_log, r"instances running 1", 20, rig.gw)
    st, h, b = rig.http("/healthz")
    assert st in (200, 503) and h["content-type"].startswith("application/json"), (st, h)
    assert "status" in json.loads(b)
    st, h, b = rig.http("/metrics")
    assert st == 401 and json.loads(b)["error"]["code"] == "unauthorized", (st, b)
    st, h, b = rig.http("/metrics", token="bogus")
    assert st == 401, st
    st, h, b = rig.http("/metrics", token=VIEWER)
    assert st == 200 and h["content-type"].startswith("text/plain"), (st, h)
    assert b"ccgw_ws_clients" in b, b[:300]
    st, h, b = rig.http("/api/v1/devices", token=VIEWER)
    assert st == 200 and len(json.loads(b)["devices"]) == 2, (st, b)
    for q in ("?class=hvac", "?x=1&class=hvac"):  # the query string reaches the API
        st, h, b = rig.http("/api/v1/devices" + q, token=VIEWER)
        devs = json.loads(b)["devices"]
        assert st == 200 and [d["device"] for d in devs] == ["room1-ac1"], (q, st, b)
    # a command: the reply comes from the instance thread, the response completes later
    body = json.dumps({"topic": T_AC + "/cmd/hvac.set_setpoint", "args": {"value": 22}}).encode()
    st, h, b = rig.http("/api/v1/commands", token=OPER, method="POST", body=body)
    assert st == 200 and json.loads(b)["ok"] is True, (st, b)
    st, h, b = rig.http("/api/v1/commands", token=VIEWER, method="POST", body=body)
    assert st == 403, (st, b)
    big = json.dumps({"topic": T_AC + "/cmd/hvac.start", "args": {"pad": "x" * 5000}}).encode()
    st, h, b = rig.http("/api/v1/commands", token=OPER, method="POST", body=big)
    assert st == 413 and json.loads(b)["error"]["code"] == "too_large", (st, b)
    st, h, b = rig.http("/api/v1/commands", token=OPER, method="POST", body=b"{nope")
    assert st == 400, (st, b)
    st, h, b = rig.http("/api/v1/nothing", token=VIEWER)
    assert st == 404, st
    st, h, b = rig.http("/nothing/here")
    assert st == 404 and json.loads(b)["error"]["code"] == "not_found", st
    # keep-alive: several requests on one connection
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", rig.http_port, timeout=10)
    for path in ("/healthz", "/metrics", "/api/v1/alarms", "/healthz"):
        conn.request("GET", path, headers={"Authorization": "Bearer " + VIEWER})
        r = conn.getresponse()
        data = r.read()
        assert r.status in (200, 503) and data, (path, r.status)
    conn.request("POST", "/api/v1/commands", body=body, headers={"Authorization": "Bearer " + OPER})
    r = conn.getresponse()
    assert r.status == 200 and json.loads(r.read())["ok"] is True
    conn.close()
    assert "no token" in rig.log_text() and "token refused" in rig.log_text(), "refusals are logged"


async def test_anonymous_and_max_clients(rig):
    rig.start_sim()
    rig.start_gw(http_extra="  max_clients: 2\n", anonymous="viewer")
    # no token: the anonymous viewer may subscribe, not command
    a = await Client.connect(rig)
    await a.send({"op": "sub", "id": 1, "filter": "ccgw/v1/#"})
    assert (await a.wait_op("ack", 1))["snapshot"] >= 1
    await a.send({"op": "cmd", "id": 2, "topic": T_AC + "/cmd/hvac.start"})
    assert (await a.wait_op("error", 2))["code"] == "forbidden"
    b = await Client.connect(rig, header_token=OPER)
    # a third connection is refused (max_clients 2), the two others go on
    try:
        c = await Client.connect(rig, header_token=ADMIN)
        await c.wait_closed(5)
        raise AssertionError("a third client was accepted")
    except (websockets.InvalidStatusCode, websockets.InvalidHandshake, OSError, EOFError):
        pass
    await b.send({"op": "ping", "id": 3})
    await b.wait_op("pong", 3)
    await b.close()
    await asyncio.sleep(0.3)
    c = await Client.connect(rig, header_token=ADMIN)  # room again
    await c.send({"op": "ping", "id": 4})
    await c.wait_op("pong", 4)
    await c.close()
    await a.close()
    assert "max_clients reached" in rig.log_text()


if __name__ == "__main__":
    run("ws_basic", [test_sub_snapshot_then_live, test_errors_and_auth, test_commands_and_alarm_ack,
                     test_static_files, test_http_api, test_anonymous_and_max_clients])
