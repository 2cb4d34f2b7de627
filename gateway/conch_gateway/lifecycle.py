"""A request's life when its client leaves or the server stops.

uvicorn never cancels a request whose client has gone, so a non-streaming generation would run
on inside Triton to max_tokens for nobody. `RequestLifecycle` watches the connection once the
request body is in, and when the client goes away before the answer started it cancels the
handler — whose generation call closes its stream to Triton, which cancels the request there.
(A started streaming answer has its own watcher: `sse.EventStream`.)

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


class RequestLifecycle:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        handler = asyncio.current_task()
        started = client_gone = False
        disconnect: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        watcher: asyncio.Task | None = None

        async def watch() -> None:
            nonlocal client_gone
            message = await receive()  # once the body is in, the next message is the disconnect
            disconnect.set_result(message)
            if not started:
                client_gone = True
                handler.cancel(CLIENT_GONE)

        async def receive_request() -> Message:
            nonlocal watcher
            if watcher is not None:  # the app, too, now waits for the disconnect the watcher receives
                return await asyncio.shield(disconnect)
            message = await receive()
            if message["type"] == "http.request" and not message.get("more_body", False):
                watcher = asyncio.create_task(watch())
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
            if watcher is not None:
                watcher.cancel()
