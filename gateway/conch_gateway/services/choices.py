"""Several generations of one request (OpenAI's `n`, several prompts), run concurrently.

Every backend serves one sequence per request, so `n` choices are `n` requests; their streams
are merged as tokens arrive, each delta tagged with its choice index.
"""

from __future__ import annotations

import asyncio
from typing import AsyncIterator, Awaitable, Coroutine, Sequence, TypeVar

from ..backends.base import StreamDelta

_DONE = object()
T = TypeVar("T")


async def all_or_nothing(calls: Sequence[Coroutine[object, object, T]]) -> list[T]:
    """Every call's result, in order; the first failure cancels the calls still running (which
    cancels their requests in Triton) and is raised as itself, not as an exception group."""
    if len(calls) == 1:
        return [await calls[0]]
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(call) for call in calls]
    except BaseExceptionGroup as failures:
        raise _first(failures) from None
    return [task.result() for task in tasks]


async def open_all(openers: Sequence[Coroutine[object, object, AsyncIterator[StreamDelta]]]) -> list[AsyncIterator[StreamDelta]]:
    """Opens every stream (each waits for its first token); if one fails, the others still opening
    are cancelled, those already open are closed, and its error is raised."""
    if len(openers) == 1:
        return [await openers[0]]
    opened: list[AsyncIterator[StreamDelta]] = []

    async def open_one(opener: Awaitable[AsyncIterator[StreamDelta]]) -> AsyncIterator[StreamDelta]:
        stream = await opener
        opened.append(stream)
        return stream

    try:
        return await all_or_nothing([open_one(o) for o in openers])
    except BaseException:
        for stream in opened:
            await stream.aclose()
        raise


def _first(group: BaseExceptionGroup) -> BaseException:
    error = group.exceptions[0]
    return _first(error) if isinstance(error, BaseExceptionGroup) else error


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
