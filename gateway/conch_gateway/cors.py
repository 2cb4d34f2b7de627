"""Starlette's CORSMiddleware, cheaper on the requests that carry no `Origin` (every API client but
a browser): for those Starlette builds a `Headers` view of the request, a `functools.partial` and,
on the answer, a `MutableHeaders` — only to add `Vary: Origin`. Here that header is added directly,
exactly as Starlette adds it (merged into the first `vary` header, else appended); requests with an
`Origin` (preflights, browsers) go through Starlette's own code."""

from __future__ import annotations

from starlette.middleware.cors import CORSMiddleware
from starlette.types import Message, Receive, Scope, Send


class CORSMiddlewareFast(CORSMiddleware):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = scope["headers"]
            if type(headers) is not list:
                headers = scope["headers"] = list(headers)  # as Starlette's Headers(scope=…) leaves it
            for name, _ in headers:
                if name == b"origin":
                    break
            else:
                async def send_vary(message: Message) -> None:
                    if message["type"] == "http.response.start":
                        vary_origin(message)
                    await send(message)

                await self.app(scope, receive, send_vary)
                return
        await super().__call__(scope, receive, send)


def vary_origin(message: Message) -> None:
    """What Starlette's `MutableHeaders(scope=message)["Vary"] = ", ".join([*getlist("Vary"), "Origin"])` does."""
    headers = message["headers"] = list(message.setdefault("headers", []))
    found = [i for i, (name, _) in enumerate(headers) if name == b"vary"]
    if not found:
        headers.append((b"vary", b"Origin"))
        return
    value = ", ".join([*(headers[i][1].decode("latin-1") for i in found), "Origin"]).encode("latin-1")
    for i in reversed(found[1:]):
        del headers[i]
    headers[found[0]] = (b"vary", value)
