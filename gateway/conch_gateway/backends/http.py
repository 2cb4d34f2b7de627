"""A small keep-alive HTTP/1.1 client for the gateway's hot path to Triton.

Why not aiohttp: on this path it spent ~0.33 ms of CPU per call against ~0.08 ms for an asyncio
protocol driving `httptools` (the parser uvicorn uses) — a third of the gateway's whole budget
(bench/README.md). The client does only what the gateway needs: POST a JSON body, read the answer
whole or as it streams, reuse connections, and drop a connection whenever a call is abandoned
(timeout, client gone) — closing it is how Triton learns to stop.
"""

from __future__ import annotations

import asyncio
import functools
import ssl as ssl_module
from collections import deque
from dataclasses import dataclass
from typing import AsyncIterator
from urllib.parse import urlsplit

import httptools


class ConnectError(ConnectionError):
    """The server could not be reached."""


class ConnectionClosed(ConnectionError):
    """The server closed the connection before the response was complete."""


@dataclass(frozen=True)
class Origin:
    scheme: str
    host: str
    port: int

    @classmethod
    @functools.lru_cache(maxsize=4096)  # parsing costs ~5 µs a call; the endpoints are few
    def parse(cls, url: str) -> tuple["Origin", str]:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        path = parts.path or "/"
        return cls(parts.scheme, parts.hostname or "", port), path + (f"?{parts.query}" if parts.query else "")


class _Response:
    """Status, then body chunks: gathered whole, or handed over one by one when streaming."""

    def __init__(self, streaming: bool) -> None:
        loop = asyncio.get_running_loop()
        self.status = 0
        self.headers_done: asyncio.Future = loop.create_future()
        self.done: asyncio.Future = loop.create_future()
        self.body: list[bytes] = []
        self.chunks: asyncio.Queue | None = asyncio.Queue() if streaming else None
        self.complete = False

    def feed(self, chunk: bytes) -> None:
        if self.chunks is None:
            self.body.append(chunk)
        else:
            self.chunks.put_nowait(chunk)

    def finish(self) -> None:
        self.complete = True
        if self.chunks is not None:
            self.chunks.put_nowait(None)
        self.done.set_result(None)

    def fail(self, exc: Exception) -> None:
        if not self.headers_done.done():
            self.headers_done.set_exception(exc)
        if not self.complete:
            self.complete = True
            if self.chunks is not None:
                self.chunks.put_nowait(exc)
            self.done.set_exception(exc)
            self.done.exception()  # retrieved: a failure nobody awaits is not an error


class _Connection(asyncio.Protocol):
    def __init__(self, origin: Origin) -> None:
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reused = False
        self.keep_alive = True
        self._parser: httptools.HttpResponseParser | None = None
        self._response: _Response | None = None

    # asyncio.Protocol
    def connection_made(self, transport) -> None:
        self.transport = transport

    def connection_lost(self, exc) -> None:
        self.closed = True
        if self._response is not None and not self._response.complete:
            self._response.fail(ConnectionClosed(str(exc) if exc else "connection closed by the server"))

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._response.fail(ConnectionClosed(f"malformed HTTP response: {exc}"))
            self.close()

    # httptools callbacks
    def on_headers_complete(self) -> None:
        self._response.status = self._parser.get_status_code()
        self._response.headers_done.set_result(None)

    def on_body(self, body: bytes) -> None:
        self._response.feed(body)

    def on_message_complete(self) -> None:
        self.keep_alive = self._parser.should_keep_alive()
        self._response.finish()

    def send(self, request: bytes, streaming: bool) -> _Response:
        self._response = _Response(streaming)
        self._parser = httptools.HttpResponseParser(self)
        self.transport.write(request)
        return self._response

    def reusable(self) -> bool:
        return not self.closed and self.keep_alive and self._response is not None and self._response.complete

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class HTTPClient:
    """Keep-alive connections per origin, at most `limit_per_origin` at a time."""

    def __init__(self, *, limit_per_origin: int = 256, connect_timeout: float = 5.0):
        self._limit = limit_per_origin
        self._connect_timeout = connect_timeout
        self._idle: dict[Origin, deque[_Connection]] = {}
        self._slots: dict[Origin, asyncio.Semaphore] = {}
        self._tls = ssl_module.create_default_context()

    async def post(self, url: str, body: bytes) -> tuple[int, bytes]:
        """The whole response. Cancelling the caller drops the connection."""
        origin, path = Origin.parse(url)
        exchange = _Exchange(self, origin, path, body, "application/json", streaming=False)
        async with exchange as (status, response):
            await response.done
            exchange.finished = True
            return status, b"".join(response.body)

    async def get(self, url: str) -> tuple[int, bytes]:
        """A GET, read whole; like every call here it never follows a redirect (a 3xx is the answer)."""
        origin, path = Origin.parse(url)
        exchange = _Exchange(self, origin, path, b"", "application/json", streaming=False, method="GET")
        async with exchange as (status, response):
            await response.done
            exchange.finished = True
            return status, b"".join(response.body)

    def stream(self, url: str, body: bytes, accept: str = "text/event-stream") -> "_Exchange":
        """`async with client.stream(url, body) as (status, chunks)`: body chunks as they arrive."""
        origin, path = Origin.parse(url)
        return _Exchange(self, origin, path, body, accept, streaming=True)

    async def close(self) -> None:
        for idle in self._idle.values():
            while idle:
                idle.pop().close()

    async def _acquire(self, origin: Origin) -> _Connection:
        slots = self._slots.get(origin)
        if slots is None:
            slots = self._slots[origin] = asyncio.Semaphore(self._limit)
        await slots.acquire()
        idle = self._idle.setdefault(origin, deque())
        while idle:
            connection = idle.pop()
            if not connection.closed:
                connection.reused = True
                return connection
        try:
            return await self._connect(origin)
        except BaseException:
            slots.release()
            raise

    async def _connect(self, origin: Origin) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, connection = await loop.create_connection(
                    lambda: _Connection(origin), origin.host, origin.port,
                    ssl=self._tls if origin.scheme == "https" else None)
        except TimeoutError:
            raise ConnectError(f"connecting to {origin.host}:{origin.port} timed out") from None
        except OSError as exc:
            raise ConnectError(f"cannot connect to {origin.host}:{origin.port}: {exc.strerror or exc}") from None
        return connection

    def _release(self, connection: _Connection, reusable: bool) -> None:
        if reusable and connection.reusable():
            self._idle[connection.origin].append(connection)
        else:
            connection.close()
        self._slots[connection.origin].release()


class _Exchange:
    """One request/response on a pooled connection (an async context manager)."""

    def __init__(self, client: HTTPClient, origin: Origin, path: str, body: bytes, accept: str, streaming: bool,
                 method: str = "POST"):
        self._client = client
        self._streaming = streaming
        self._request = (
            f"{method} {path} HTTP/1.1\r\nHost: {origin.host}:{origin.port}\r\nContent-Type: application/json\r\n"
            f"Accept: {accept}\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode("latin-1") + body
        self._origin = origin
        self._connection: _Connection | None = None
        self.finished = False

    async def __aenter__(self):
        for attempt in (1, 2):
            self._connection = await self._client._acquire(self._origin)
            response = self._connection.send(self._request, self._streaming)
            try:
                await response.headers_done
            except ConnectionClosed:
                # A kept-alive connection the server had already closed: the request never
                # reached it, so it is safe to send once more on a fresh connection.
                stale = self._connection.reused and attempt == 1
                self._client._release(self._connection, reusable=False)
                self._connection = None
                if stale:
                    continue
                raise
            except BaseException:
                self._client._release(self._connection, reusable=False)
                self._connection = None
                raise
            return response.status, (self._chunks(response) if self._streaming else response)
        raise AssertionError("unreachable")

    async def __aexit__(self, *exc) -> None:
        if self._connection is not None:
            # Reused only if the response was read to its end; otherwise closing it tells the server.
            self._client._release(self._connection, reusable=self.finished and exc[0] is None)
            self._connection = None

    async def _chunks(self, response: _Response) -> AsyncIterator[bytes]:
        while True:
            item = await response.chunks.get()
            if item is None:
                self.finished = True
                return
            if isinstance(item, Exception):
                raise item
            yield item
