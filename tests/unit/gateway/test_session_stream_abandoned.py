"""A streaming /chat whose response is never read (the client left before its first byte) still
ends its Triton stream and frees the session's lock."""

from __future__ import annotations

import asyncio

from conch_gateway.services import sessions as sessions_service
from conch_gateway.services.generation import TimeLimit
from conch_gateway.protocol.sessions import ChatRequest
from conch_gateway.sessions.history import Session
from conch_gateway.sessions.store import MemorySessionStore


class OneStream:
    def __init__(self):
        self.closed = asyncio.Event()

    async def stream(self, model, request):
        async def deltas():
            try:
                await asyncio.sleep(3600)
                yield None
            finally:
                self.closed.set()
        generator = deltas()
        closed = self.closed

        class Closing:  # an async iterator whose aclose() works before the first read, like the core's
            def __aiter__(self):
                return generator.__aiter__()

            async def aclose(self):
                await generator.aclose()
                closed.set()
        return Closing()


async def test_an_unread_stream_is_closed_and_its_session_freed(monkeypatch):
    monkeypatch.setattr(sessions_service, "UNREAD_STREAM_S", 0.05)
    generation, store = OneStream(), MemorySessionStore(ttl_s=60, wait_s=2)
    service = sessions_service.SessionService(None, generation, store, None, TimeLimit(10, 0.1, 10))

    async def prepare(body, session):
        return object(), Session(model="m", messages=[]), object()
    monkeypatch.setattr(service, "_prepare", prepare)

    response = await service.stream(ChatRequest(message="hi", stream=True), "s")  # never read
    await asyncio.wait_for(generation.closed.wait(), 2)
    # the session's lock is free again: a reset on it answers at once
    assert (await asyncio.wait_for(service.reset("s"), 1)).status == "success"
    del response
