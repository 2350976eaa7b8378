#!/usr/bin/python3
"""ws_fanout - the fan-out hub with many clients (loadgen, MQTT disabled):
 - one message is encoded once and shared by every queue holding it: clients
   that stop reading, are closed 1008 "too slow" or vanish (abort) while
   their queues hold shared messages, next to clients that read the same
   messages; under ASan/LSan the daemon's clean exit shows every shared
   message and batch frame freed exactly once (no use after free, no leak);
 - subscription groups: clients with the same subscriptions and token
   filters are matched once per message (ccgw_ws_sub_groups), a token's
   filters still apply (ups-only sees no env message), a message matching
   two subscriptions of a client comes once;
 - batch frames built once are written to several clients
   (ccgw_ws_frames_reused_total);
 - the queue budget: each client's live byte limit is min(client_queue_bytes,
   max(16 KiB, queue_budget_bytes / clients)) (ccgw_ws_queue_limit_bytes),
   all queues together stay within the budget (ccgw_ws_queued_bytes), and
   telemetry beyond it is dropped oldest-first without closing anyone.
"""
import asyncio
import json
import os
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
      rate: %d
      kind: {%s}
      payload_bytes: %d
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


async def stalled(rig, flt, token=VIEWER):
    """A client that subscribes and never reads (tiny receive buffer)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", rig.http_port))
    ws = await websockets.connect(rig.url(token=token), sock=sock, max_queue=1, read_limit=4096,
                                  max_size=8 << 20)
    await ws.send(json.dumps({"op": "sub", "id": 1, "filter": flt}))
    return ws


async def poll_metrics(rig, pred, timeout, what):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout * SCALE
    while True:
        m = await loop.run_in_executor(None, metrics, rig)
        if pred(m):
            return m
        assert loop.time() < deadline, "%s: %s" % (what, m)
        await asyncio.sleep(0.3)


async def test_shared_messages_clients_drop_mid_queue(rig):
    rig.start_gw(http_extra="  client_queue: 64\n  client_queue_bytes: 131072\n",
                 instances=LOADGEN % (600, "telemetry: 1, event: 1", 500))
    tele = "ccgw/v1/hq/env/+/telemetry"
    # the one that must get every event: its own group
    fast = await Client.connect(rig, header_token=VIEWER)
    await fast.send({"op": "sub", "id": 1, "filter": "ccgw/v1/hq/env/lg-1/event/#"})
    await fast.wait_op("ack", 1)
    # a token whose filters exclude env: a group of its own, sees nothing here
    ups = await Client.connect(rig, header_token="ups-token-4")
    await ups.send({"op": "sub", "id": 1, "filter": "ccgw/v1/#"})
    await ups.wait_op("ack", 1)
    # readers of telemetry (one group), two with an overlapping second subscription (another group;
    # telemetry only, so that a reader slowed down by a loaded machine loses telemetry, not its connection)
    readers = []
    for i in range(12):
        r = await Client.connect(rig, header_token=VIEWER)
        await r.send({"op": "sub", "id": 1, "filter": tele})
        if i < 2:
            await r.send({"op": "sub", "id": 2, "filter": "ccgw/v1/hq/env/lg-2/telemetry"})
        readers.append(r)
    for r in readers:
        await r.wait_op("ack", 1)
    # stalled clients holding the same shared messages: telemetry only (dropped oldest-first, kept open)
    # and everything (events: closed 1008 too slow)
    stall_tele = [await stalled(rig, tele) for _ in range(16)]
    stall_all = [await stalled(rig, "ccgw/v1/hq/env/#") for _ in range(8)]
    m = await poll_metrics(rig, lambda m: m["ccgw_ws_clients_slow_closed_total"] >= 8
                           and m["ccgw_ws_dropped_telemetry_total"] >= 200, 40, "stalled clients")
    log("groups", m["ccgw_ws_sub_groups"], "queued bytes", m["ccgw_ws_queued_bytes"], "reused frames",
        m["ccgw_ws_frames_reused_total"])
    # fast, ups, readers, readers+lg-2, stall_tele (= readers' group); stall_all's group is gone with them
    assert m["ccgw_ws_sub_groups"] == 4, m
    # vanish mid-queue: half now, the rest after another second of traffic
    for ws in stall_tele[:8]:
        ws.transport.abort()
    await asyncio.sleep(1.0)
    for ws in stall_tele[8:] + stall_all:
        ws.transport.abort()
    await asyncio.sleep(1.0)
    m = await poll_metrics(rig, lambda m: m["ccgw_ws_clients"] == 14, 20, "aborted clients gone")
    assert m["ccgw_ws_sub_groups"] == 4, m
    assert m["ccgw_ws_frames_reused_total"] > 0, m
    # the fast client: every event of lg-1, in order, no gap
    await asyncio.sleep(0.5)
    seqs = [x["payload"]["seq"] for x in fast.msgs if x.get("op") == "msg"]
    assert len(seqs) > 50, len(seqs)
    gaps = [(a, b) for a, b in zip(seqs, seqs[1:]) if b != a + 1]
    assert not gaps, gaps[:5]
    assert fast.closed is None, fast.closed
    # the token's filters: no env message for ups-only
    assert not [x for x in ups.msgs if x.get("op") == "msg" and "/env/" in x["topic"]], ups.msgs[:3]
    # the readers: telemetry (maybe with drops, never reordered per device, never twice); the two with
    # lg-2/telemetry too get lg-2's telemetry once only
    for i, r in enumerate(readers):
        last = {}
        n = 0
        for x in r.msgs:
            if x.get("op") != "msg":
                continue
            n += 1
            t, seq = x["topic"], x["payload"]["seq"]
            assert seq > last.get(t, 0), "reader %d: %s seq %d after %d" % (i, t, seq, last.get(t, 0))
            last[t] = seq
        assert n > 50, (i, n)
        assert r.closed is None, (i, r.closed)
    log("fast:", len(seqs), "events without a gap; readers:", [len(r.msgs) for r in readers])
    for r in readers + [fast, ups]:
        await r.close()
    await poll_metrics(rig, lambda m: m["ccgw_ws_clients"] == 0 and m["ccgw_ws_sub_groups"] == 0
                       and m["ccgw_ws_queued_bytes"] == 0, 10, "all gone, nothing queued")


async def test_queue_budget(rig):
    budget = 262144
    rig.start_gw(http_extra="  queue_budget_bytes: %d\n" % budget,
                 instances=LOADGEN % (2000, "telemetry: 1", 2000))
    m = metrics(rig)
    assert m["ccgw_ws_queue_budget_bytes"] == budget and m["ccgw_ws_queue_limit_bytes"] == 4194304, m
    tele = "ccgw/v1/hq/env/+/telemetry"
    first = [await stalled(rig, tele) for _ in range(4)]
    m = await poll_metrics(rig, lambda m: m["ccgw_ws_dropped_telemetry_total"] >= 200, 30, "drops")
    assert m["ccgw_ws_queue_limit_bytes"] == budget // 4, m
    for _ in range(5):
        m = metrics(rig)
        assert 0 < m["ccgw_ws_queued_bytes"] <= budget, m
        await asyncio.sleep(0.2)
    # 20 clients: the share (13,107 B) is below the 16 KiB floor
    more = [await stalled(rig, tele) for _ in range(16)]
    m = await poll_metrics(rig, lambda m: m["ccgw_ws_clients"] == 20, 10, "20 clients")
    assert m["ccgw_ws_queue_limit_bytes"] == 16384, m
    await asyncio.sleep(1.0)
    m = metrics(rig)
    assert 0 < m["ccgw_ws_queued_bytes"] <= 20 * 16384, m
    assert m["ccgw_ws_clients_slow_closed_total"] == 0, m
    log("budget", budget, "20 clients: limit", m["ccgw_ws_queue_limit_bytes"], "queued", m["ccgw_ws_queued_bytes"],
        "dropped", m["ccgw_ws_dropped_telemetry_total"])
    for ws in first + more:
        ws.transport.abort()
    await poll_metrics(rig, lambda m: m["ccgw_ws_clients"] == 0 and m["ccgw_ws_queue_limit_bytes"] == 4194304
                       and m["ccgw_ws_queued_bytes"] == 0, 10, "all gone, nothing queued")


if __name__ == "__main__":
    run("ws_fanout", [test_shared_messages_clients_drop_mid_queue, test_queue_budget])
