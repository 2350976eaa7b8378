#!/usr/bin/python3
"""ws_modes - /ws in the gateway's other configurations, real devices (Modbus simulator):
 - TLS: a self-signed certificate (openssl CLI, EC P-256, SAN IP:127.0.0.1);
   wss:// with the certificate as the only trust anchor gets the snapshot
   and live messages; a plain ws:// connection to the TLS port fails;
 - MQTT enabled but the broker down (nothing listens on its port): the
   WebSocket side works the same (snapshot + live); a graceful stop closes
   the clients with 1001;
 - MQTT enabled with a real mosquitto: the same state reaches both sides;
 - the port taken by another socket: ccgw says so and exits 1.
"""
import asyncio
import os
import ssl
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import websockets  # noqa: E402
from ws_common import T_AC, T_TH, TOKENS, Client, free_port, log, run  # noqa: E402

VIEWER = TOKENS["viewer"][0]


async def snapshot_and_live(rig, **kw):
    c = await Client.connect(rig, header_token=VIEWER, **kw)
    await c.send({"op": "sub", "id": 1, "filter": "ccgw/v1/hq/+/+/state"})
    ack = await c.wait_op("ack", 1)
    # the devices may still be coming up: then their state arrives live
    await c.wait(lambda m: m.get("op") == "msg" and m["topic"] == T_AC + "/state", 0, 15, "hvac state")
    await c.wait(lambda m: m.get("op") == "msg" and m["topic"] == T_TH + "/state", 0, 15, "env state")
    mark = c.mark()
    await c.send({"op": "sub", "id": 2, "filter": "ccgw/v1/hq/env/+/telemetry"})
    await c.wait_op("ack", 2, start=mark)
    _, m = await c.wait(lambda m: m.get("op") == "msg" and m["topic"] == T_TH + "/telemetry", mark, 15,
                        "live telemetry")
    log("snapshot", ack["snapshot"], "then live", m["topic"])
    await c.close()


async def test_tls(rig):
    crt, key = rig.path("server.crt"), rig.path("server.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", key, "-out", crt, "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True)
    rig.start_sim()
    rig.start_gw(cert=crt, key=key)
    assert "(TLS)" in rig.log_text()
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=crt)
    await snapshot_and_live(rig, ssl_ctx=ctx)
    # the certificate is checked: another trust anchor refuses it
    other = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    try:
        await Client.connect(rig, header_token=VIEWER, ssl_ctx=other)
        raise AssertionError("a client without the certificate connected")
    except ssl.SSLCertVerificationError:
        pass
    # plain ws:// to the TLS port does not get a WebSocket
    try:
        ws = await websockets.connect("ws://127.0.0.1:%d/ws" % rig.http_port, open_timeout=5)
        await ws.close()
        raise AssertionError("plain ws:// accepted on the TLS port")
    except (websockets.InvalidHandshake, websockets.InvalidMessage, OSError, asyncio.TimeoutError, EOFError):
        pass
    # the server still serves TLS clients afterwards
    await snapshot_and_live(rig, ssl_ctx=ctx)


async def test_mqtt_broker_down(rig):
    rig.start_sim()
    rig.start_gw(mqtt=free_port())  # enabled, nothing listens there
    await snapshot_and_live(rig)
    # a graceful stop closes the clients 1001 going away
    c = await Client.connect(rig, header_token=VIEWER)
    await c.send({"op": "sub", "id": 1, "filter": "#"})
    await c.wait_op("ack", 1)
    assert await asyncio.get_running_loop().run_in_executor(None, rig.stop_gw) == 0
    code, reason = await c.wait_closed()
    assert code == 1001, (code, reason)


async def test_mqtt_enabled(rig):
    rig.start_sim()
    rig.start_broker()
    rig.start_gw(mqtt=True)
    await snapshot_and_live(rig)
    # the broker got the same retained state (mosquitto_sub -C 1 on the retained topic)
    out = subprocess.run(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(rig.broker_port), "-t", T_AC + "/state",
                          "-C", "1", "-W", "10"], capture_output=True, text=True)
    assert out.returncode == 0 and '"class":"hvac"' in out.stdout, (out.returncode, out.stdout, out.stderr)


async def test_port_in_use(rig):
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    port = s.getsockname()[1]
    gw = rig.start_gw(port=port, instances="", wait=False)
    rc = await asyncio.get_running_loop().run_in_executor(None, lambda: gw.wait(20))
    s.close()
    assert rc == 1, rc
    assert "cannot listen on 127.0.0.1:%d" % port in rig.log_text()
    rig.gw = None


if __name__ == "__main__":
    run("ws_modes", [test_tls, test_mqtt_broker_down, test_mqtt_enabled, test_port_in_use])
