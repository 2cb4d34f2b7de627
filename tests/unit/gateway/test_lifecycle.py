"""RequestLifecycle on a hand-driven ASGI connection: a client that leaves cancels the handler
(once the watcher has started), a quick answer never needs the watcher, and the connection keeps
exactly one reader when the app waits for the disconnect itself."""

from __future__ import annotations

import asyncio
import json

from conch_gateway.lifecycle import RequestLifecycle

SCOPE = {"type": "http", "method": "POST", "path": "/v1/generate", "headers": []}


class Connection:
    """What uvicorn hands an app: the body, then (once `leave()` is called) the disconnect."""

    def __init__(self) -> None:
        self.left = asyncio.Event()
        self.receives = 0
        self.sent: list[dict] = []

    async def receive(self) -> dict:
        self.receives += 1
        if self.receives == 1:
            return {"type": "http.request", "body": b"{}", "more_body": False}
        await self.left.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict) -> None:
        self.sent.append(message)


async def answer(send, status: int = 200) -> None:
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def test_a_client_leaving_before_the_answer_cancels_the_handler():
    connection, outcome = Connection(), {}

    async def slow_app(scope, receive, send):
        await receive()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            outcome["cancelled"] = True
            raise

    lifecycle = RequestLifecycle(slow_app, watch_after_s=0.01)
    task = asyncio.create_task(lifecycle(SCOPE, connection.receive, connection.send))
    await asyncio.sleep(0.05)  # the watcher has started by now
    connection.left.set()
    await asyncio.wait_for(task, 2)
    assert outcome == {"cancelled": True}
    assert connection.sent == []  # nobody to answer


async def test_a_quick_answer_never_starts_the_watcher():
    connection = Connection()

    async def quick_app(scope, receive, send):
        await receive()
        await answer(send)

    await RequestLifecycle(quick_app, watch_after_s=0.05)(SCOPE, connection.receive, connection.send)
    assert connection.receives == 1  # no task went on to wait for a disconnect
    assert [m["type"] for m in connection.sent] == ["http.response.start", "http.response.body"]
    await asyncio.sleep(0.1)  # nor does one start later, when the timer would have fired
    assert connection.receives == 1


async def test_an_app_waiting_for_the_disconnect_shares_the_one_reader():
    connection, seen = Connection(), []

    async def streaming_app(scope, receive, send):
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        seen.append(await receive())  # what a streaming response does: wait for the client to go

    lifecycle = RequestLifecycle(streaming_app, watch_after_s=10)  # the app asks before the timer fires
    task = asyncio.create_task(lifecycle(SCOPE, connection.receive, connection.send))
    await asyncio.sleep(0.02)
    connection.left.set()
    await asyncio.wait_for(task, 2)
    assert seen == [{"type": "http.disconnect"}]
    assert connection.receives == 2  # the body, then one read of the disconnect for both


async def test_a_request_cancelled_by_the_server_stopping_gets_503_shutting_down():
    connection = Connection()
    entered = asyncio.Event()

    async def slow_app(scope, receive, send):
        await receive()
        entered.set()
        await asyncio.sleep(30)

    task = asyncio.create_task(RequestLifecycle(slow_app)(SCOPE, connection.receive, connection.send))
    await entered.wait()
    task.cancel()  # what uvicorn does to requests still running at the end of its graceful shutdown
    await asyncio.wait_for(task, 2)
    assert connection.sent[0]["status"] == 503
    assert json.loads(connection.sent[1]["body"])["error"]["code"] == "SHUTTING_DOWN"
