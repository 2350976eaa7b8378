#!/usr/bin/python3
"""ws_slow - the slow-consumer policy and the bounds, with the loadgen plugin
(events and telemetry, 2 KB payloads) through the real daemon, MQTT disabled:
 - a client that stops reading is closed 1008 "too slow" once events no
   longer fit its queue (client_queue 64 / 128 KiB), and its queue never
   held more than the limit (the close log line says how much);
 - a second client on the same gateway keeps receiving events after that,
   with per-device seq without gaps (events are never dropped for it);
 - the counters (/metrics when the HTTP API is there, else the stop line)
   show the slow close and stay consistent; the daemon stops cleanly;
 - snapshot ordering under load (loadgen state updates at 2000/s on 20
   devices): a client subscribing and unsubscribing again and again never
   sees a state older than one it already had (per topic, seq never goes
   back), and every snapshot has all 20 devices;
 - a slow client of state only is not closed: its queued states are
   coalesced per topic (counted), and once it reads again it gets the
   latest state of every device.
"""
import asyncio
import json
import os
import re
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import websockets  # noqa: E402
from ws_common import SCALE, TOKENS, Client, log, run  # noqa: E402

VIEWER = TOKENS["viewer"][0]

LOADGEN = """\
  - id: load
    plugin: loadgen
    options:
      devices: 4
      class: env
      rate: 1000
      kind: {telemetry: 1, event: 1}
      payload_bytes: 2000
      start_delay_ms: 500
"""


async def test_slow_client_closed_others_unaffected(rig):
    rig.start_gw(http_extra="  client_queue: 64\n  client_queue_bytes: 131072\n  batch_ms: 5\n",
                 instances=LOADGEN)
    # the fast one: one device's events only (it must keep up in Python)
    fast = await Client.connect(rig, header_token=VIEWER)
    await fast.send({"op": "sub", "id": 1, "filter": "ccgw/v1/hq/env/lg-1/event/#"})
    await fast.wait_op("ack", 1)
    # the slow one: everything, a tiny receive buffer, and it never reads
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", rig.http_port))
    slow = await websockets.connect(rig.url(token=VIEWER), sock=sock, max_queue=1, read_limit=4096,
                                    max_size=8 << 20)
    await slow.send(json.dumps({"op": "sub", "id": 1, "filter": "ccgw/v1/#"}))
    m = await asyncio.get_running_loop().run_in_executor(
        None, lambda: rig.wait_log(rig.gw_log, r"ws client \d+ .*send queue full \((\d+) messages, (\d+) bytes\): "
                                               r"closed 1008 too slow", 40, rig.gw))
    n, nbytes = int(m.group(1)), int(m.group(2))
    log("slow client closed with", n, "messages,", nbytes, "bytes queued")
    assert n <= 64 + 1 and nbytes <= 131072 + 4096, (n, nbytes)
    # now read what is left: the close frame says 1008 too slow
    count = 0
    try:
        while True:
            await asyncio.wait_for(slow.recv(), 15 * SCALE)
            count += 1
    except websockets.ConnectionClosed:
        pass
    log("slow client read", count, "frames after the stall; close", slow.close_code, slow.close_reason)
    assert slow.close_code == 1008 and slow.close_reason == "too slow", (slow.close_code, slow.close_reason)
    # the fast client still receives, after the slow one was closed, with no gap
    mark = fast.mark()
    await fast.wait(lambda x: x.get("op") == "msg", mark, 10, "events after the slow close")
    await asyncio.sleep(1.0)
    assert fast.closed is None, fast.closed
    seqs = [x["payload"]["seq"] for x in fast.msgs if x.get("op") == "msg" and "/event/" in x["topic"]]
    assert len(seqs) > 100, len(seqs)
    gaps = [(a, b) for a, b in zip(seqs, seqs[1:]) if b != a + 1]
    assert not gaps, gaps[:5]
    log("fast client:", len(seqs), "events in order without a gap")
    await fast.close()
    # the counters
    st, _, body = rig.http("/metrics", token=TOKENS["admin"][0])
    assert st == 200, st
    metrics = {}
    for x in body.decode().splitlines():
        if x.startswith("ccgw_ws_"):
            k, v = x.rsplit(" ", 1)
            metrics[k] = float(v)
    log("metrics:", metrics)
    assert metrics["ccgw_ws_clients_slow_closed_total"] == 1, metrics
    assert metrics["ccgw_ws_clients"] == 0, metrics
    assert metrics["ccgw_ws_inbox_dropped_total"] == 0, metrics
    assert rig.stop_gw() == 0
    line = re.search(r"http stopped: .*", rig.log_text()).group(0)
    log(line)
    slow_closed = int(re.search(r"(\d+) closed too slow", line).group(1))
    assert slow_closed == 1, line
    accepted = int(re.search(r"ws clients (\d+) accepted", line).group(1))
    assert accepted == 2, line


STATES = """\
  - id: load
    plugin: loadgen
    options:
      devices: 20
      class: env
      rate: 50000
      kind: {state: 1}
      start_delay_ms: 300
"""


async def test_snapshot_never_older_than_live(rig):
    rig.start_gw(instances=STATES)
    c = await Client.connect(rig, header_token=VIEWER)
    flt = "ccgw/v1/hq/env/+/state"
    # a standing subscription that matches nothing: the tap copies every message meanwhile, so the
    # inbox is rarely empty when a sub takes its snapshot
    await c.send({"op": "sub", "id": 999, "filter": "ccgw/v1/hq/nothing/#"})
    await c.wait_op("ack", 999)
    await asyncio.sleep(1.0)
    for i in range(1, 61):
        mark = c.mark()
        await c.send({"op": "sub", "id": i, "filter": flt})
        ack = await c.wait_op("ack", i, start=mark)
        assert ack["snapshot"] == 20, ack
        await asyncio.sleep(0.03)
        await c.send({"op": "unsub", "id": 100 + i, "filter": flt})
        await c.wait_op("ack", 100 + i, start=mark)
    await asyncio.sleep(0.3)
    last = {}
    n = 0
    for m in c.msgs:
        if m.get("op") != "msg":
            continue
        n += 1
        t, seq = m["topic"], m["payload"]["seq"]
        assert seq >= last.get(t, 0), "%s went back from %d to %d" % (t, last[t], seq)
        last[t] = seq
    log(n, "state messages on", len(last), "topics, never going back")
    assert len(last) == 20 and n > 300, (len(last), n)
    await c.close()


STATES_BIG = """\
  - id: load
    plugin: loadgen
    options:
      devices: 5
      class: env
      rate: 2000
      kind: {state: 1}
      payload_bytes: 2000
      start_delay_ms: 300
"""


def metrics(rig):
    st, _, body = rig.http("/metrics", token=TOKENS["admin"][0])
    assert st == 200, st
    out = {}
    for x in body.decode().splitlines():
        if x.startswith("ccgw_ws_"):
            k, v = x.rsplit(" ", 1)
            out[k] = float(v)
    return out


async def test_slow_state_client_coalesced(rig):
    rig.start_gw(http_extra="  client_queue: 16\n  client_queue_bytes: 65536\n", instances=STATES_BIG)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", rig.http_port))
    slow = await websockets.connect(rig.url(token=VIEWER), sock=sock, max_queue=1, read_limit=4096,
                                    max_size=8 << 20)
    await slow.send(json.dumps({"op": "sub", "id": 1, "filter": "ccgw/v1/hq/env/+/state"}))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30 * SCALE
    while True:
        m = await loop.run_in_executor(None, metrics, rig)
        if m["ccgw_ws_coalesced_state_total"] >= 100:
            break
        assert loop.time() < deadline, m
        await asyncio.sleep(0.5)
    assert m["ccgw_ws_clients_slow_closed_total"] == 0 and m["ccgw_ws_clients"] == 1, m
    log("coalesced", m["ccgw_ws_coalesced_state_total"], "states while the client did not read")
    # reading again: still open, and every device's state keeps coming
    seen = set()
    t_end = loop.time() + 20 * SCALE
    while len(seen) < 5:
        assert loop.time() < t_end, seen
        raw = await asyncio.wait_for(slow.recv(), 10 * SCALE)
        j = json.loads(raw)
        for x in (j["msgs"] if j.get("op") == "batch" else [j]):
            if x.get("op") == "msg":
                seen.add(x["topic"])
    log("read again: states of", len(seen), "devices")
    assert slow.close_code is None
    slow.transport.abort()  # a client that vanishes (its close would wait behind the backlog)


if __name__ == "__main__":
    run("ws_slow", [test_slow_client_closed_others_unaffected, test_snapshot_never_older_than_live,
                    test_slow_state_client_coalesced])
