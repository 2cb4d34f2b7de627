"""Feeds the bounded history with every answered request (route template, status, seconds)."""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .history import History, Sample

# Monitoring's own routes would drown the figures they report.
_SKIP = ("/api/monitoring", "/api/system", "/ws/", "/metrics", "/health")


class HistoryMiddleware:
    def __init__(self, app: ASGIApp, history: History) -> None:
        self.app = app
        self.history = history

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(_SKIP):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            route = scope.get("route")
            key = getattr(route, "path", None) or scope["path"]
            self.history.add(Sample(time.time(), key, status, time.perf_counter() - started))
