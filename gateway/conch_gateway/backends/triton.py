"""The one module that talks to Triton.

- One answer: Triton's HTTP `generate` endpoint (tritonclient has no generate support) over one
  shared keep-alive connection pool (`http.HTTPClient`) — the cheapest call in CPU.
- Streams: gRPC `ModelStreamInfer` on one HTTP/2 channel per Triton, because Triton cancels a
  request when its gRPC stream is cancelled and never when an HTTP client goes away (docs:
  request_cancellation). Models known only by an HTTP URL stream over `generate_stream`.
- Health: `GET /v2/models/<m>/ready` on the same pool (no redirect is ever followed).
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any, AsyncIterator
from urllib.parse import quote

import grpc
import orjson
from tritonclient.grpc import service_pb2_grpc

from . import grpc_tensors
from .base import BackendFailed, BackendTimeout, BackendUnavailable
from .http import ConnectError, ConnectionClosed, HTTPClient

_SSE_PREFIX = b"data: "


class TritonClient:
    def __init__(self, *, pool_size: int = 512, connect_timeout: float = 5.0):
        self._connect_timeout = connect_timeout
        self._http = HTTPClient(limit_per_origin=pool_size, connect_timeout=connect_timeout)
        self._channels: dict[str, tuple[grpc.aio.Channel, service_pb2_grpc.GRPCInferenceServiceStub]] = {}

    async def start(self) -> None:
        """Connections open on first use; nothing to do ahead of it."""

    async def close(self) -> None:
        channels, self._channels = list(self._channels.values()), {}
        for channel, _ in channels:
            await channel.close()
        await self._http.close()

    async def generate(self, endpoint: str, model: str, body: dict[str, Any], timeout: float) -> dict[str, Any]:
        """One request, one response (Triton's `generate`)."""
        return await self._post(f"{endpoint}/v2/models/{quote(model, safe='')}/generate", body, timeout)

    async def infer(self, endpoint: str, model: str, inputs: list[dict[str, Any]], timeout: float) -> dict[str, dict]:
        """KServe v2 `infer` with JSON tensors; returns each output by name (`shape`, flat `data`)."""
        answer = await self._post(f"{endpoint}/v2/models/{quote(model, safe='')}/infer", {"inputs": inputs}, timeout)
        return {output["name"]: output for output in answer.get("outputs", [])}

    async def _post(self, url: str, body: dict[str, Any], timeout: float) -> dict[str, Any]:
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
        url = _generate_stream_url(endpoint, model)
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
                                raise BackendFailed(400, str(payload["error"]))  # what Triton answers a failed model request
                            yield payload
        except (ConnectError, ConnectionClosed) as exc:
            raise BackendUnavailable(_describe(exc)) from exc

    async def stream_grpc(self, address: str, model: str, body: dict[str, Any], datatypes: dict[str, str], *,
                          batched: bool) -> AsyncIterator[dict[str, Any]]:
        """Each response of a decoupled model, decoded like `generate_stream`'s events, up to the
        final one. Leaving the loop early cancels the gRPC call, and with it the Triton request."""
        try:
            request = grpc_tensors.infer_request(model, body, datatypes, batched=batched)
        except KeyError as exc:
            raise BackendFailed(400, str(exc)) from None
        call = self._stub(address).ModelStreamInfer(wait_for_ready=False)
        try:
            await call.write(request)
            while True:
                message = await call.read()
                if message is grpc.aio.EOF:
                    raise BackendUnavailable("Triton closed the stream before the final response")
                if message.error_message:
                    raise BackendFailed(400, message.error_message)
                response = message.infer_response
                if response.outputs:
                    yield grpc_tensors.decode_outputs(response)
                if grpc_tensors.is_final(response):
                    return
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise BackendUnavailable(exc.details() or exc.code().name) from None
            raise BackendFailed(500, exc.details() or exc.code().name) from None
        finally:
            call.cancel()  # a no-op once the request is complete; otherwise Triton stops generating

    async def model_ready(self, endpoint: str, model: str, timeout: float = 2.0) -> bool:
        """Triton's model readiness, over the pooled client, which never follows a redirect: an
        endpoint that answers 3xx is not ready, and cannot steer the gateway elsewhere."""
        try:
            async with asyncio.timeout(timeout):
                status, _ = await self._http.get(f"{endpoint}/v2/models/{quote(model, safe='')}/ready")
            return status == 200
        except Exception:  # unreachable, slow, or a malformed answer: all mean "not ready"
            return False

    def _stub(self, address: str) -> service_pb2_grpc.GRPCInferenceServiceStub:
        entry = self._channels.get(address)
        if entry is None:
            channel = grpc.aio.insecure_channel(address, options=[
                ("grpc.max_receive_message_length", 64 * 1024 * 1024),
                ("grpc.keepalive_time_ms", 30_000),
            ])
            entry = self._channels[address] = (channel, service_pb2_grpc.GRPCInferenceServiceStub(channel))
        return entry[1]



def _error_message(payload: bytes) -> str:
    """Triton's error text: `{"error": …}`, or — from `generate_stream` failing before its first
    response — the same object inside a server-sent event."""
    body = payload.strip()
    if body.startswith(_SSE_PREFIX):
        body = body[len(_SSE_PREFIX):].split(b"\n", 1)[0]
    try:
        return str(orjson.loads(body).get("error", body.decode("utf-8", "replace")))
    except (orjson.JSONDecodeError, AttributeError):
        return payload.decode("utf-8", "replace")[:500] or "empty error response"


def _describe(exc: Exception) -> str:
    return str(exc) or type(exc).__name__


@functools.lru_cache(maxsize=4096)  # quoting per request costs more than the rest of the URL
def _generate_stream_url(endpoint: str, model: str) -> str:
    return f"{endpoint}/v2/models/{quote(model, safe='')}/generate_stream"
