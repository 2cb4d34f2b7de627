"""The one module that talks to Triton.

Text generation uses Triton's `generate` / `generate_stream` HTTP endpoints (tritonclient has
no generate support) over one shared keep-alive connection pool (`http.HTTPClient`); health and
metadata use tritonclient's HTTP aio client, one per Triton endpoint. An abandoned request's
connection is closed, which is how Triton's HTTP frontend learns to cancel the inference.
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator
from urllib.parse import quote, urlsplit

import orjson
import tritonclient.http.aio as triton_http

from .base import BackendFailed, BackendTimeout, BackendUnavailable
from .http import ConnectError, ConnectionClosed, HTTPClient

_SSE_PREFIX = b"data: "


class TritonClient:
    def __init__(self, *, pool_size: int = 512, connect_timeout: float = 5.0):
        self._connect_timeout = connect_timeout
        self._http = HTTPClient(limit_per_origin=pool_size, connect_timeout=connect_timeout)
        self._admin: dict[str, triton_http.InferenceServerClient] = {}

    async def start(self) -> None:
        """Connections open on first use; nothing to do ahead of it."""

    async def close(self) -> None:
        admins, self._admin = list(self._admin.values()), {}
        for client in admins:
            await client.close()
        await self._http.close()

    async def generate(self, endpoint: str, model: str, body: dict[str, Any], timeout: float) -> dict[str, Any]:
        """One request, one response (Triton's `generate`)."""
        url = f"{endpoint}/v2/models/{quote(model, safe='')}/generate"
        try:
            async with asyncio.timeout(timeout):
                status, payload = await self._http.post(url, orjson.dumps(body))
        except TimeoutError:
            raise BackendTimeout(timeout) from None
        except (ConnectError, ConnectionClosed) as exc:
            raise BackendUnavailable(_describe(exc)) from exc
        if status != 200:
            raise BackendFailed(status, _error_message(payload))
        return orjson.loads(payload)

    async def generate_stream(self, endpoint: str, model: str, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """Each server-sent event of Triton's `generate_stream`, decoded. Leaving the loop early
        closes the connection, which cancels the request in Triton."""
        url = f"{endpoint}/v2/models/{quote(model, safe='')}/generate_stream"
        try:
            async with self._http.stream(url, orjson.dumps(body)) as (status, chunks):
                if status != 200:
                    raise BackendFailed(status, _error_message(b"".join([c async for c in chunks])))
                buffer = b""
                async for chunk in chunks:
                    buffer += chunk
                    *events, buffer = buffer.split(b"\n\n")
                    for event in events:
                        if event.startswith(_SSE_PREFIX):
                            payload = orjson.loads(event[len(_SSE_PREFIX):])
                            if "error" in payload:
                                # Triton reports errors inside an already-200 stream.
                                raise BackendFailed(500, str(payload["error"]))
                            yield payload
        except (ConnectError, ConnectionClosed) as exc:
            raise BackendUnavailable(_describe(exc)) from exc

    async def model_ready(self, endpoint: str, model: str, timeout: float = 2.0) -> bool:
        try:
            async with asyncio.timeout(timeout):
                return await self._admin_client(endpoint).is_model_ready(model)
        except Exception:  # unreachable, slow, or a malformed answer: all mean "not ready"
            return False

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
