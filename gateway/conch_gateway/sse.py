"""Server-sent events: the one way every streaming dialect leaves the gateway.

`relay` drives a generation stream through a dialect's encoder and guarantees the stream ends
with an event the client understands — the dialect's error event if generation fails midway,
never a silent hang — and that an abandoned stream is closed at once (which cancels it in Triton).
"""

from __future__ import annotations

import logging
from contextlib import aclosing
from typing import AsyncIterator, Callable, Iterable

from sse_starlette.sse import EventSourceResponse

from .errors import ConchError
from .services.generation import StreamDelta

log = logging.getLogger("conch.gateway")

_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}  # no proxy buffering of tokens


def event_stream(events: AsyncIterator[str], headers: dict[str, str] | None = None) -> EventSourceResponse:
    # A comment line every 15 s keeps idle proxies from closing a slow stream.
    return EventSourceResponse(events, sep="\n", ping=15, headers={**_HEADERS, **(headers or {})})


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
        except Exception:  # a bug must still end the stream in a way clients understand
            log.exception("stream failed")
            yield encode_error(ConchError(500, "INTERNAL_ERROR", "the gateway failed while streaming; see its log"))
            return
    for event in trailer():
        yield event
