"""The one module that talks to Triton.

Text generation uses Triton's `generate` / `generate_stream` HTTP endpoints (tritonclient has
no generate support) over one shared aiohttp connection pool; health and metadata use
tritonclient's HTTP aio client, one per Triton endpoint. Closing a request's connection is how
Triton learns the client is gone: its HTTP frontend then cancels the inference.
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator
from urllib.parse import quote, urlsplit

import aiohttp
import orjson
import tritonclient.http.aio as triton_http

from .base import BackendFailed, BackendTimeout, BackendUnavailable

_JSON = {"Content-Type": "application/json"}
_SSE_PREFIX = b"data: "


class TritonClient:
    def __init__(self, *, pool_size: int = 512, connect_timeout: float = 5.0):
        self._pool_size = pool_size
        self._connect_timeout = connect_timeout
        self._session: aiohttp.ClientSession | None = None
        self._admin: dict[str, triton_http.InferenceServerClient] = {}

    async def start(self) -> None:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self._pool_size, limit_per_host=0, ttl_dns_cache=60,
                                             keepalive_timeout=30)
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=self._connect_timeout)
            self._session = aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False)

    async def close(self) -> None:
        admins, self._admin = list(self._admin.values()), {}
        for client in admins:
            await client.close()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def generate(self, endpoint: str, model: str, body: dict[str, Any], timeout: float) -> dict[str, Any]:
        """One request, one response (Triton's `generate`)."""
        url = f"{endpoint}/v2/models/{quote(model, safe='')}/generate"
        try:
            async with asyncio.timeout(timeout):
                async with self._http.post(url, data=orjson.dumps(body), headers=_JSON) as response:
                    payload = await response.read()
                    if response.status != 200:
                        raise BackendFailed(response.status, _error_message(payload))
                    return orjson.loads(payload)
        except TimeoutError:
            raise BackendTimeout(timeout) from None
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            raise BackendUnavailable(_describe(exc)) from exc

    async def generate_stream(self, endpoint: str, model: str, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """Each server-sent event of Triton's `generate_stream`, decoded. Leaving the loop early
        closes the connection, which cancels the request in Triton."""
        url = f"{endpoint}/v2/models/{quote(model, safe='')}/generate_stream"
        try:
            async with self._http.post(url, data=orjson.dumps(body), headers=_JSON) as response:
                if response.status != 200:
                    raise BackendFailed(response.status, _error_message(await response.read()))
                async for line in response.content:
                    if not line.startswith(_SSE_PREFIX):
                        continue
                    event = orjson.loads(line[len(_SSE_PREFIX):])
                    if "error" in event:
                        # Triton reports errors inside an already-200 stream.
                        raise BackendFailed(500, str(event["error"]))
                    yield event
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            raise BackendUnavailable(_describe(exc)) from exc

    async def model_ready(self, endpoint: str, model: str, timeout: float = 2.0) -> bool:
        try:
            async with asyncio.timeout(timeout):
                return await self._admin_client(endpoint).is_model_ready(model)
        except Exception:  # unreachable, slow, or a malformed answer: all mean "not ready"
            return False

    @property
    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("TritonClient.start() was not called")
        return self._session

    def _admin_client(self, endpoint: str) -> triton_http.InferenceServerClient:
        client = self._admin.get(endpoint)
        if client is None:
            parts = urlsplit(endpoint)
            client = triton_http.InferenceServerClient(
                parts.netloc, ssl=parts.scheme == "https", conn_limit=8, conn_timeout=self._connect_timeout
            )
            self._admin[endpoint] = client
        return client


def _error_message(payload: bytes) -> str:
    try:
        return str(orjson.loads(payload).get("error", payload.decode("utf-8", "replace")))
    except (orjson.JSONDecodeError, AttributeError):
        return payload.decode("utf-8", "replace")[:500] or "empty error response"


def _describe(exc: Exception) -> str:
    return str(exc) or type(exc).__name__
