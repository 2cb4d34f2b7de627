"""/ws/monitor on a real gateway (auth on) and real Triton: refused without a token, 100
clients subscribed at once, a model leaving the routing table reaches every one of them within a
second (pushed by the registry, not polled), and an alert rule made through the API fires a
system_alert once the requests the test sends cross it."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import websockets

from support.stack import make_gateway

from .conftest import all_models

pytestmark = pytest.mark.triton
KEY = "ck-0123456789ab-" + "0123456789abcdef" * 4


@pytest.fixture(scope="module")
def secured(triton):
    # A slow probe, so the local source does not put back the model the test removes.
    with make_gateway(all_models(triton), auth="on", auth_admin_key=KEY, health_probe_interval_s=600) as server:
        yield server


def test_no_token_is_refused_and_routes_need_one(secured):
    async def connect():
        async with websockets.connect(secured.url.replace("http", "ws") + "/ws/monitor") as ws:
            await ws.recv()

    with pytest.raises(websockets.exceptions.WebSocketException):
        asyncio.run(connect())
    import httpx
    assert httpx.get(secured.url + "/api/system/status").status_code == 401
    assert httpx.get(secured.url + "/api/system/status", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200


def test_hundred_clients_see_a_model_status_change_within_a_second(secured):
    url = secured.url.replace("http", "ws") + f"/ws/monitor?token={KEY}"
    registry = secured.app.state.services.registry

    async def run():
        clients = [await websockets.connect(url) for _ in range(100)]
        for ws in clients:
            await ws.send(json.dumps({"action": "subscribe", "events": ["model_status"]}))
        for ws in clients:
            assert json.loads(await ws.recv())["events"] == ["model_status_update"]
        started = time.monotonic()
        registry.remove("echo")  # the gateway thread's registry; the local source re-adds it later

        async def first_change(ws):
            while True:
                event = json.loads(await ws.recv())
                if event["data"]["model_id"] == "echo":
                    return event, time.monotonic() - started

        results = await asyncio.wait_for(asyncio.gather(*(first_change(ws) for ws in clients)), 5)
        for ws in clients:
            await ws.close()
        return results

    results = asyncio.run(run())
    assert len(results) == 100
    assert all(event["type"] == "model_status_update" and event["data"]["status"] == "deleted" for event, _ in results)
    assert max(seconds for _, seconds in results) < 1.0


def test_unknown_subscription_is_answered_with_an_error(secured):
    async def run():
        async with websockets.connect(secured.url.replace("http", "ws") + "/ws/monitor",
                                      additional_headers={"Authorization": f"Bearer {KEY}"}) as ws:
            await ws.send(json.dumps({"action": "subscribe", "events": ["nope"]}))
            return json.loads(await ws.recv())

    answer = asyncio.run(run())
    assert answer["type"] == "error" and answer["error"]["code"] == "INVALID_REQUEST"


def test_a_rule_made_through_the_api_fires_a_system_alert_when_requests_cross_it(secured):
    """Evaluated locally (no Prometheus configured) against the gateway's own history: the rule
    holds once the third request for `fault` is in its 5 s range, and stops holding when they age out."""
    import httpx

    headers = {"Authorization": f"Bearer {KEY}"}
    rule = {"name": "FaultBusy", "expr": 'sum(increase(conch_model_requests_total{model="fault"}[5s])) >= 3',
            "for": "0s", "severity": "critical", "summary": "fault got 3 requests in 5s"}
    url = secured.url.replace("http", "ws") + f"/ws/monitor?token={KEY}"

    async def run():
        async with httpx.AsyncClient(base_url=secured.url, headers=headers, timeout=30) as client, \
                websockets.connect(url) as ws:
            assert (await client.post("/api/config/alerts", json=rule)).status_code == 201
            await ws.send(json.dumps({"action": "subscribe", "events": ["system_alerts"]}))
            assert json.loads(await ws.recv())["events"] == ["system_alert"]

            async def generate():
                answer = await client.post("/v1/generate", json={"model_id": "fault", "inputs": "Hi",
                                                                 "parameters": {"max_new_tokens": 2}})
                assert answer.status_code == 200, answer.text

            for _ in range(2):
                await generate()
            with pytest.raises(asyncio.TimeoutError):  # below the threshold: evaluated, not firing
                await asyncio.wait_for(ws.recv(), 2.5)
            await generate()
            crossed = time.monotonic()
            fired = json.loads(await asyncio.wait_for(ws.recv(), 5))
            fired_after = time.monotonic() - crossed
            resolved = json.loads(await asyncio.wait_for(ws.recv(), 15))
            return fired, fired_after, resolved

    fired, fired_after, resolved = asyncio.run(run())
    assert fired["type"] == "system_alert"
    assert {k: fired["data"][k] for k in ("alert_id", "name", "severity", "message", "state", "source")} == {
        "alert_id": "FaultBusy", "name": "FaultBusy", "severity": "critical",
        "message": "fault got 3 requests in 5s", "state": "firing", "source": "local"}
    assert fired["data"]["timestamp"].endswith("Z")
    assert fired_after < 2.5  # evaluated every second
    assert resolved["type"] == "system_alert" and resolved["data"]["state"] == "resolved"
    assert resolved["data"]["alert_id"] == "FaultBusy"


def test_a_client_that_stops_reading_is_closed_with_4008_and_the_others_get_every_event(secured):
    """One client stops reading (a small receive buffer, and its library stops reading the socket
    once 4 messages wait) while the routing table changes thousands of times; another keeps
    reading. Once the kernel's socket buffers are full (megabytes on loopback: compression is off,
    so each event takes its full size) the gateway's writes to it wait, its queue of 256 overflows
    and it is dropped: when it reads again it finds fewer events than were sent, then the close
    code 4008. The reading client got every event meanwhile."""
    import socket
    import threading

    url = secured.url.replace("http", "ws") + f"/ws/monitor?token={KEY}"
    registry = secured.app.state.services.registry
    hub = secured.app.state.monitoring.hub
    # A model the other tests leave alone (the one above removed echo; the alert test sends to fault).
    toggled = next(m for m in registry.all() if m.id not in ("echo", "fault"))
    produced, stop = [0], threading.Event()

    def toggle() -> None:
        """model_status_update events (the model deleted, the model back), in bursts a reading client keeps up with."""
        try:
            while not stop.is_set() and produced[0] < 50_000:
                for _ in range(40):
                    registry.remove(toggled.id) if produced[0] % 2 == 0 else registry.upsert(toggled)
                    produced[0] += 1
                time.sleep(0.01)
        finally:
            if registry.get(toggled.id) is None:
                registry.upsert(toggled)
                produced[0] += 1

    async def run():
        raw = socket.create_connection(("127.0.0.1", secured.port))
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow = await websockets.connect(url, sock=raw, max_queue=4, ping_interval=None, compression=None)
        fast = await websockets.connect(url, compression=None)
        for ws in (slow, fast):
            await ws.send(json.dumps({"action": "subscribe", "events": ["model_status"]}))
            assert json.loads(await ws.recv())["type"] == "subscribed"
        joined = len(hub.subscribers)
        received = [0]

        async def read_fast():
            async for message in fast:
                if json.loads(message)["data"]["model_id"] == toggled.id:
                    received[0] += 1

        reader = asyncio.create_task(read_fast())
        producer = asyncio.create_task(asyncio.to_thread(toggle))
        # The slow client reads nothing meanwhile; the gateway drops it once its queue is full.
        deadline = time.monotonic() + 60
        while not any(s.dropped for s in list(hub.subscribers)) and len(hub.subscribers) == joined:
            assert time.monotonic() < deadline, f"not dropped after {produced[0]} events"
            await asyncio.sleep(0.05)
        dropped_after = produced[0]
        await asyncio.sleep(1.0)  # events go on; the reading client keeps up
        stop.set()
        await producer
        while received[0] < produced[0] and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        got_fast = received[0]
        # Now the slow client reads (with room to, so megabytes drain within the server's keepalive):
        # what was buffered before the drop, then the close code.
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 2**20)
        slow_events = 0
        with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
            while True:
                await asyncio.wait_for(slow.recv(), 15)
                slow_events += 1
        reader.cancel()
        await fast.close()
        return dropped_after, got_fast, slow_events, closed.value

    dropped_after, got_fast, slow_events, closed = asyncio.run(run())
    assert closed.rcvd is not None and closed.rcvd.code == 4008, closed
    assert closed.rcvd.reason == "too slow: events were dropped"
    assert slow_events < dropped_after, (slow_events, dropped_after)  # dropped, not buffered for it
    assert got_fast == produced[0], (got_fast, produced[0])  # the reading client lost nothing, nor waited
