"""A request's life when its client leaves or the server stops.

uvicorn never cancels a request whose client has gone, so a non-streaming generation would run
on inside Triton to max_tokens for nobody. `RequestLifecycle` watches the connection once the
request body is in, and when the client goes away before the answer started it cancels the
handler — whose generation call closes its stream to Triton, which cancels the request there.
(A started streaming answer has its own watcher: `sse.EventStream`.)

The watcher starts WATCH_AFTER_S after the body is in, not at once: most answers are ready
sooner, and a task per request (made, scheduled, cancelled) was ~10% of the gateway's CPU under
load (bench/README.md). A client that leaves during those first milliseconds costs at most that
much generation for nobody. If the app itself waits for the disconnect first (a streaming
response), the watcher starts then, so the connection still has exactly one reader.

When the server stops, uvicorn waits for requests in flight up to its graceful-shutdown timeout,
then cancels them. A request cancelled that way before its answer started gets a 503
`SHUTTING_DOWN` in the error envelope (a retry reaches another replica), not uvicorn's
traceback and bare 500; streams end with their dialect's error event (`sse.relay`).
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import errors
from .sse import CLIENT_GONE


# Long enough that a quick answer never needs the watcher, short next to a generation worth cancelling.
WATCH_AFTER_S = 0.05


class RequestLifecycle:
    def __init__(self, app: ASGIApp, watch_after_s: float = WATCH_AFTER_S) -> None:
        self.app = app
        self.watch_after_s = watch_after_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        handler = asyncio.current_task()
        started = client_gone = body_done = False
        disconnect: asyncio.Future[Message] | None = None  # made with the watcher: most requests need neither
        watcher: asyncio.Task | None = None
        timer: asyncio.TimerHandle | None = None

        async def watch() -> None:
            nonlocal client_gone
            message = await receive()  # once the body is in, the next message is the disconnect
            disconnect.set_result(message)
            if not started:
                client_gone = True
                handler.cancel(CLIENT_GONE)

        def start_watching() -> None:
            nonlocal watcher, disconnect
            if watcher is None:
                timer.cancel()
                disconnect = loop.create_future()
                watcher = loop.create_task(watch())

        async def receive_request() -> Message:
            nonlocal body_done, timer
            if body_done:  # the app, too, now waits for the disconnect: the watcher receives it for both
                start_watching()
                return await asyncio.shield(disconnect)
            message = await receive()
            if message["type"] == "http.request" and not message.get("more_body", False):
                body_done = True
                timer = loop.call_later(self.watch_after_s, start_watching)
            return message

        async def send_marking_start(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive_request, send_marking_start)
        except asyncio.CancelledError:
            if started:
                raise
            handler.uncancel()
            if not client_gone:  # the server is stopping
                await errors.error_response(errors.shutting_down(), scope["path"])(scope, receive_request, send)
        finally:
            if timer is not None:
                timer.cancel()
            if watcher is not None:
                watcher.cancel()
