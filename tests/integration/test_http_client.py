"""The gateway's keep-alive HTTP client against real sockets: a small asyncio HTTP server on
loopback plays the parts of Triton that are hard to provoke on demand."""

from __future__ import annotations

import asyncio

import pytest

from conch_gateway.backends.http import ConnectError, ConnectionClosed, HTTPClient
from support import free_port

pytestmark = pytest.mark.asyncio


class Server:
    """Answers each request according to `behaviour`; counts connections and disconnects."""

    def __init__(self, behaviour):
        self.behaviour = behaviour
        self.connections = 0
        self.disconnects = asyncio.Queue()
        self.port = free_port()

    async def __aenter__(self):
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc):
        self.server.close()
        await self.server.wait_closed()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v2/models/m/generate"

    async def _serve(self, reader, writer):
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
                body = await reader.readexactly(length)
                if await self.behaviour(body, writer, reader) == "close":
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            self.disconnects.put_nowait(1)


def reply(body: bytes, status: int = 200) -> bytes:
    return b"HTTP/1.1 %d OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (status, len(body), body)


async def test_keep_alive_reuses_one_connection():
    async def echo(body, writer, reader):
        writer.write(reply(body))

    async with Server(echo) as server:
        client = HTTPClient()
        assert await client.post(server.url, b'{"a": 1}') == (200, b'{"a": 1}')
        assert await client.post(server.url, b'{"a": 2}') == (200, b'{"a": 2}')
        assert server.connections == 1
        await client.close()


async def test_chunked_responses_are_reassembled_and_status_kept():
    async def chunked(body, writer, reader):
        writer.write(b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")

    async with Server(chunked) as server:
        client = HTTPClient()
        assert await client.post(server.url, b"{}") == (400, b"hello world")
        await client.close()


async def test_a_kept_alive_connection_closed_by_the_server_is_replaced():
    async def once(body, writer, reader):
        writer.write(reply(b"{}"))
        await writer.drain()
        return "close"  # like a server whose idle timeout has passed

    async with Server(once) as server:
        client = HTTPClient()
        await client.post(server.url, b"{}")
        await server.disconnects.get()
        assert await client.post(server.url, b"{}") == (200, b"{}")
        assert server.connections == 2
        await client.close()


async def test_a_response_cut_short_is_an_error():
    async def cut(body, writer, reader):
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"partial")
        await writer.drain()
        return "close"

    async with Server(cut) as server:
        client = HTTPClient()
        with pytest.raises(ConnectionClosed):
            await client.post(server.url, b"{}")
        await client.close()


async def test_nothing_listening():
    client = HTTPClient(connect_timeout=2)
    with pytest.raises(ConnectError, match="cannot connect"):
        await client.post(f"http://127.0.0.1:{free_port()}/x", b"{}")


async def test_an_abandoned_request_closes_its_connection():
    async def slow(body, writer, reader):
        await reader.read()  # never answers: waits until the client hangs up
        return "close"

    async with Server(slow) as server:
        client = HTTPClient()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await client.post(server.url, b"{}")
        await asyncio.wait_for(server.disconnects.get(), 5)  # the server saw the client go
        await client.close()


async def test_streaming_hands_over_chunks_as_they_come():
    gate = asyncio.Event()

    async def sse(body, writer, reader):
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        writer.write(b"7\r\ndata: 1\r\n")
        await writer.drain()
        await gate.wait()
        writer.write(b"7\r\ndata: 2\r\n0\r\n\r\n")

    async with Server(sse) as server:
        client = HTTPClient()
        async with client.stream(server.url, b"{}") as (status, chunks):
            assert status == 200
            assert await chunks.__anext__() == b"data: 1"
            gate.set()
            assert [c async for c in chunks] == [b"data: 2"]
        assert server.connections == 1
        await client.close()
