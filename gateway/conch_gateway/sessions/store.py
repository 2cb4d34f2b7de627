"""Where sessions live: in Redis when `CONCH_REDIS_URL` is set (shared by every replica, with a
Redis lock so two /chat on one session never interleave), else in this process (bounded, LRU)."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from contextlib import asynccontextmanager
from typing import AsyncContextManager, Protocol

import orjson

from ..errors import ConchError
from ..settings import Settings
from .history import Session


def session_busy(seconds: float) -> ConchError:
    return ConchError(409, "SESSION_BUSY", f"the session answered no other message within {seconds:g}s; "
                      "send one message at a time per session", param="session_id")


def sessions_unavailable() -> ConchError:
    return ConchError(503, "SESSIONS_UNAVAILABLE", "the session store (Redis) is unreachable; retry shortly",
                      headers={"Retry-After": "1"})


class SessionStore(Protocol):
    async def load(self, key: str) -> Session: ...
    async def save(self, key: str, session: Session) -> None: ...
    async def delete(self, key: str) -> None: ...
    def lock(self, key: str, lease_s: float) -> "AsyncContextManager[None]": ...
    async def close(self) -> None: ...


class MemorySessionStore:
    def __init__(self, ttl_s: float, max_sessions: int = 10_000, wait_s: float = 600.0):
        self._ttl_s, self._max, self._wait_s = ttl_s, max_sessions, wait_s
        self._data: OrderedDict[str, tuple[float, dict]] = OrderedDict()
        self._locks: dict[str, asyncio.Lock] = {}

    async def load(self, key: str) -> Session:
        entry = self._data.get(key)
        if entry is None or entry[0] < time.monotonic():
            self._data.pop(key, None)
            return Session()
        self._data.move_to_end(key)
        return Session.from_json(entry[1])

    async def save(self, key: str, session: Session) -> None:
        self._data[key] = (time.monotonic() + self._ttl_s, orjson.loads(orjson.dumps(session.to_json())))
        self._data.move_to_end(key)
        while len(self._data) > self._max:
            old, _ = self._data.popitem(last=False)
            self._locks.pop(old, None)

    async def delete(self, key: str) -> None:
        self._data.pop(key, None)

    @asynccontextmanager
    async def lock(self, key: str, lease_s: float):
        lock = self._locks.setdefault(key, asyncio.Lock())
        try:
            async with asyncio.timeout(self._wait_s):
                await lock.acquire()
        except TimeoutError:
            raise session_busy(self._wait_s) from None
        try:
            yield
        finally:
            lock.release()

    async def close(self) -> None:
        pass


class RedisSessionStore:
    """One key per session (`conch:session:<caller>:<id>`, JSON `{model, messages}` expiring `ttl_s` after its last
    turn); the lock is redis-py's token lock (released by its owner only). Its lease outlasts the
    request's own time limit (`lease_s`), so a dead replica's lock lapses while a live one's never does."""

    def __init__(self, url: str, ttl_s: float, *, wait_s: float, timeout_s: float = 5.0):
        import redis.asyncio as redis

        self._redis = redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        self._ttl_ms = int(ttl_s * 1000)
        self._wait_s = wait_s

    async def load(self, key: str) -> Session:
        raw = await self._call(self._redis.get(_data_key(key)))
        return Session.from_json(orjson.loads(raw)) if raw else Session()

    async def save(self, key: str, session: Session) -> None:
        await self._call(self._redis.set(_data_key(key), orjson.dumps(session.to_json()), px=self._ttl_ms))

    async def delete(self, key: str) -> None:
        await self._call(self._redis.delete(_data_key(key)))

    @asynccontextmanager
    async def lock(self, key: str, lease_s: float):
        from redis.exceptions import LockError

        lock = self._redis.lock(f"conch:session-lock:{key}", timeout=lease_s, blocking_timeout=self._wait_s)
        if not await self._call(lock.acquire()):
            raise session_busy(self._wait_s)
        try:
            yield
        finally:
            try:
                await lock.release()
            except LockError:  # the lease lapsed (a generation longer than lease_s): nothing to free
                pass
            except Exception:  # Redis gone: the lease frees the lock
                pass

    async def close(self) -> None:
        await self._redis.aclose()

    @staticmethod
    async def _call(pending):
        from redis.exceptions import RedisError

        try:
            return await pending
        except RedisError as exc:
            raise sessions_unavailable() from exc


def _data_key(key: str) -> str:
    return f"conch:session:{key}"


def session_store(settings: Settings) -> SessionStore:
    if settings.redis_url is None:
        return MemorySessionStore(settings.session_ttl_s, settings.session_max_in_memory, settings.session_lock_wait_s)
    return RedisSessionStore(settings.redis_url.get_secret_value(), settings.session_ttl_s,
                             wait_s=settings.session_lock_wait_s)
