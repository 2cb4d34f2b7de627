"""The in-process session store: bounded, expiring, one holder of a session's lock at a time."""

from __future__ import annotations

import asyncio

import pytest

from conch_gateway.errors import ConchError
from conch_gateway.sessions.history import Session
from conch_gateway.sessions.store import MemorySessionStore


def one(text: str) -> Session:
    return Session(model="m", messages=[{"role": "user", "content": text}])


async def test_bounded_least_recently_used_first():
    store = MemorySessionStore(ttl_s=60, max_sessions=2)
    await store.save("a", one("a"))
    await store.save("b", one("b"))
    await store.load("a")  # a is now the most recent
    await store.save("c", one("c"))
    assert (await store.load("b")).messages == []
    assert (await store.load("a")).messages == one("a").messages and (await store.load("c")).model == "m"


async def test_expires():
    store = MemorySessionStore(ttl_s=0.05)
    await store.save("a", one("a"))
    await asyncio.sleep(0.1)
    assert await store.load("a") == Session()


async def test_a_busy_session_refuses_after_the_wait():
    store = MemorySessionStore(ttl_s=60, wait_s=0.05)
    async with store.lock("a", 10):
        with pytest.raises(ConchError) as refused:
            async with store.lock("a", 10):
                pass
        assert refused.value.status == 409 and refused.value.code == "SESSION_BUSY"
        async with store.lock("b", 10):  # another session is free
            pass
    async with store.lock("a", 10):  # released
        pass
