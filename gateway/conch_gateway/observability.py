"""Prometheus metrics and the pure-ASGI middleware that records them.

Pure ASGI rather than Starlette's BaseHTTPMiddleware, which costs throughput on every request.
Each app gets its own CollectorRegistry so several apps can live in one process (tests).
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("conch_http_requests_total", "HTTP requests by route and status.",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("conch_http_request_duration_seconds", "Time to the end of the response.",
                                 ["method", "route"], buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.active = Gauge("conch_active_requests", "Requests being handled now.", registry=self.registry)
        self.tokens = Counter("conch_generated_tokens_total", "Tokens generated, as counted by the backend.",
                              ["model"], registry=self.registry)
        self.errors = Counter("conch_backend_errors_total", "Failed backend calls by model and error code.",
                              ["model", "code"], registry=self.registry)
        self.active_count = 0
        self._children: dict[tuple[str, str, str], tuple] = {}

    def observe_request(self, method: str, route: str, status: str, seconds: float) -> None:
        # Label lookups take a lock and hash the label values; bind each combination once.
        children = self._children.get((method, route, status))
        if children is None:
            children = (self.requests.labels(method, route, status), self.latency.labels(method, route))
            self._children[(method, route, status)] = children
        children[0].inc()
        children[1].observe(seconds)

    def tokens_generated(self, model: str, count: int) -> None:
        self.tokens.labels(model).inc(count)

    def backend_error(self, model: str, code: str) -> None:
        self.errors.labels(model, code).inc()


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        metrics = self.metrics
        status = 0
        started = time.perf_counter()

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        metrics.active_count += 1
        metrics.active.inc()
        try:
            await self.app(scope, receive, send_with_status)
        except BaseException:
            status = status or 500
            raise
        finally:
            metrics.active_count -= 1
            metrics.active.dec()
            route = getattr(scope.get("route"), "path", "unmatched")
            # 499 (nginx's "client closed request"): the client left before any answer was sent
            metrics.observe_request(scope["method"], route, str(status or 499), time.perf_counter() - started)
