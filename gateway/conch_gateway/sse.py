"""Server-sent events: the one way every streaming dialect leaves the gateway.

`relay` drives a generation stream through a dialect's encoder and guarantees the stream ends
with an event the client understands — the dialect's error event if generation fails midway,
never a silent hang — and that an abandoned stream is closed at once (which cancels it in Triton).
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import aclosing
from typing import AsyncIterator, Callable, Iterable

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from .backends.base import StreamDelta
from .errors import ConchError, shutting_down

log = logging.getLogger("conch.gateway")

CLIENT_GONE = "the client disconnected"  # the message of a cancellation that is the client's doing
_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}  # no proxy buffering of tokens
KEEPALIVE_S = 15.0  # a comment line this often keeps idle proxies from closing a slow stream
_PING = {"type": "http.response.body", "body": b": ping\n\n", "more_body": True}


class EventStream(Response):
    """`text/event-stream` of data-only events, each written as soon as it is produced.

    Leaner than sse-starlette's EventSourceResponse (a task group of three tasks and a memory
    channel per stream), which cost streams about a third of a millisecond before the first token.
    Here the request's own task writes the events and one watcher task waits for the client to go
    away — it then cancels the writer, whose `aclosing` closes the generation stream, which cancels
    the request in Triton — and sends the keep-alive comments while no event is due.
    """

    media_type = "text/event-stream"
    charset = "utf-8"

    def __init__(self, events: AsyncIterator[str], headers: dict[str, str] | None = None):
        self.events = events
        self.status_code = 200
        self.background = None
        self.init_headers({**_HEADERS, **(headers or {})})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        writer = asyncio.current_task()
        gone = asyncio.Event()
        watcher = asyncio.create_task(_watch(receive, send, writer, gone))
        try:
            async with aclosing(self.events) as events:
                async for event in events:
                    await send({"type": "http.response.body", "body": _frame(event), "more_body": True})
        except asyncio.CancelledError:
            # The client left (our watcher's doing), or the server stopped while an event was being
            # written (relay answers the usual case, a stop while waiting for a token): end quietly.
            writer.uncancel()
        except OSError:  # the server reports the client gone on write
            return
        finally:
            watcher.cancel()
        if not gone.is_set():
            await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _watch(receive: Receive, send: Send, writer: asyncio.Task, gone: asyncio.Event) -> None:
    while True:
        try:
            message = await asyncio.wait_for(receive(), KEEPALIVE_S)
        except asyncio.TimeoutError:
            try:
                await send(_PING)
            except OSError:
                message = {"type": "http.disconnect"}
            else:
                continue
        if message["type"] == "http.disconnect":
            gone.set()
            writer.cancel(CLIENT_GONE)
            return


def _frame(event: str) -> bytes:
    if "\n" not in event:
        return f"data: {event}\n\n".encode()
    return "".join(f"data: {line}\n" for line in event.split("\n")).encode() + b"\n"


def event_stream(events: AsyncIterator[str], headers: dict[str, str] | None = None) -> EventStream:
    return EventStream(events, headers)


async def relay(
    deltas: AsyncIterator[StreamDelta],
    encode: Callable[[StreamDelta], Iterable[str]],
    encode_error: Callable[[ConchError], str],
    trailer: Callable[[], Iterable[str]] = tuple,
) -> AsyncIterator[str]:
    async with aclosing(deltas):
        try:
            async for delta in deltas:
                for event in encode(delta):
                    yield event
        except ConchError as exc:
            yield encode_error(exc)
            return
        except asyncio.CancelledError as cancel:
            if cancel.args[:1] == (CLIENT_GONE,):
                raise
            # The server stopped waiting for this stream (its graceful-shutdown time ran out): the
            # client gets the dialect's error event, and closing `deltas` cancels it in Triton.
            asyncio.current_task().uncancel()
            yield encode_error(shutting_down())
            return
        except Exception:  # a bug must still end the stream in a way clients understand
            log.exception("stream failed")
            yield encode_error(ConchError(500, "INTERNAL_ERROR", "the gateway failed while streaming; see its log"))
            return
    for event in trailer():
        yield event
