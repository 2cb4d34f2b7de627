"""Pure-ASGI middlewares of the limits: quotas per caller, and the request body's size and time.

`QuotaMiddleware` admits each authenticated request against its caller's quota (429 with
`Retry-After` beyond it), adds `X-RateLimit-*` to the answer — error or success, stream or not —
and, when the answer is complete, charges the tokens the generation core counted and frees the
caller's in-flight slot. `BodyLimitMiddleware` answers 413 to a body larger than the limit (by its
Content-Length, or as it arrives when chunked) and 408 to one that takes too long to arrive.
"""

from __future__ import annotations

import asyncio

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import errors
from ..auth import caller as callers
from ..auth.middleware import is_open
from . import usage
from .quotas import Quotas, rate_headers


class QuotaMiddleware:
    def __init__(self, app: ASGIApp, quotas: Quotas) -> None:
        self.app = app
        self.quotas = quotas

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] == "OPTIONS" or is_open(scope["method"], scope["path"]):
            await self.app(scope, receive, send)
            return
        caller = callers.current()
        quota = caller.quota
        if quota.unlimited:
            await self.app(scope, receive, send)
            return
        try:
            lease = await self.quotas.admit(caller.principal, quota)
        except errors.ConchError as exc:
            await errors.error_response(exc, scope["path"])(scope, receive, send)
            return
        headers = rate_headers(quota, lease.verdict)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *headers]
            await send(message)

        spent, token = usage.begin()
        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            usage.end(token)
            self.quotas.settle(lease, spent.tokens)


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.max_bytes:
                    await errors.error_response(self._too_large(), scope["path"])(scope, receive, send)
                    return
                break
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        received = 0
        done = False

        async def bounded_receive() -> Message:
            # Raised as HTTPException so FastAPI's body parsing lets it through to the error envelope.
            nonlocal received, done
            if done:  # after the body, receive() only waits for a disconnect: no deadline
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise HTTPException(408, f"the request body did not arrive within {self.timeout_s:g}s") from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(413, self._too_large().message)
                done = not message.get("more_body", False)
            return message

        await self.app(scope, bounded_receive, send)

    def _too_large(self) -> errors.ConchError:
        return errors.ConchError(413, "PAYLOAD_TOO_LARGE", f"the request body is larger than {self.max_bytes} bytes")
