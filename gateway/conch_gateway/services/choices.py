"""Several generations of one request (OpenAI's `n`, several prompts), run concurrently.

Every backend serves one sequence per request, so `n` choices are `n` requests; their streams
are merged as tokens arrive, each delta tagged with its choice index.
"""

from __future__ import annotations

import asyncio
from typing import AsyncIterator, Awaitable, Sequence

from ..backends.base import StreamDelta

_DONE = object()


async def open_all(openers: Sequence[Awaitable[AsyncIterator[StreamDelta]]]) -> list[AsyncIterator[StreamDelta]]:
    """Opens every stream; if one fails, closes those that opened and raises its error."""
    results = await asyncio.gather(*openers, return_exceptions=True)
    failure = next((r for r in results if isinstance(r, BaseException)), None)
    if failure is not None:
        for result in results:
            if not isinstance(result, BaseException):
                await result.aclose()
        raise failure
    return list(results)


async def merge(streams: Sequence[AsyncIterator[StreamDelta]]) -> AsyncIterator[tuple[int, StreamDelta]]:
    """(choice index, delta) from all streams in arrival order; the first error ends it all, and
    leaving early cancels every stream still running."""
    if len(streams) == 1:  # the common case, without tasks or a queue
        async for delta in streams[0]:
            yield 0, delta
        return
    queue: asyncio.Queue = asyncio.Queue()

    async def pump(index: int, stream: AsyncIterator[StreamDelta]) -> None:
        try:
            async for delta in stream:
                await queue.put((index, delta))
            await queue.put((index, _DONE))
        except Exception as exc:
            await queue.put((index, exc))
        finally:
            await stream.aclose()

    tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(streams)]
    try:
        running = len(tasks)
        while running:
            index, item = await queue.get()
            if item is _DONE:
                running -= 1
            elif isinstance(item, Exception):
                raise item
            else:
                yield index, item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
