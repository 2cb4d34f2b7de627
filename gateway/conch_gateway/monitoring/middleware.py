"""Feeds the bounded history with every answered request (route template, model, status, seconds),
and counts it per model for Prometheus (`conch_model_requests_total`, `..._duration_seconds`).

The model is the one the request resolved to: the registry tells `note_model` (a resolve
listener), which writes it into a per-request record held in a context variable. A mutable record
rather than the variable itself, so a value set in a copied context (a thread pool, a task) is seen."""

from __future__ import annotations

import time
from contextvars import ContextVar

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..observability import ModelLabels, route_template
from .history import History, Sample

# Monitoring's own routes would drown the figures they report.
_SKIP = ("/api/monitoring", "/api/system", "/ws/", "/metrics", "/health")
# The same buckets as conch_http_request_duration_seconds, so both read alike in Prometheus.
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
MODEL_REQUESTS = "conch_model_requests_total"
MODEL_DURATION = "conch_model_request_duration_seconds"


class _Record:
    __slots__ = ("model",)

    def __init__(self) -> None:
        self.model: str | None = None


_current: ContextVar[_Record | None] = ContextVar("conch_monitoring_request", default=None)


def note_model(model) -> None:
    """The registry's resolve listener: this request is for `model` (a ServedModel)."""
    record = _current.get()
    if record is not None:
        record.model = model.id


class ModelRequestMetrics:
    """Requests per model, route and status: what /api/monitoring's per-model figures read from Prometheus."""

    def __init__(self, registry: CollectorRegistry, labels: ModelLabels) -> None:
        self.labels = labels  # bounded: a churn of model names must not grow the series without limit
        self.requests = Counter(MODEL_REQUESTS, "HTTP requests by the model they resolved to, route and status.",
                                ["model", "route", "status"], registry=registry)
        self.latency = Histogram(MODEL_DURATION, "Time to the end of the response, by model and route.",
                                 ["model", "route"], buckets=_BUCKETS, registry=registry)
        self._children: dict[tuple[str, str, int], tuple] = {}

    def observe(self, model: str, route: str, status: int, seconds: float) -> None:
        # As Metrics.observe_request: label lookups lock and hash, so each combination is bound once.
        label = self.labels(model)  # keyed by the bounded label, so the cache is bounded too
        children = self._children.get((label, route, status))
        if children is None:
            children = (self.requests.labels(label, route, str(status)), self.latency.labels(label, route))
            self._children[(label, route, status)] = children
        children[0].inc()
        children[1].observe(seconds)


class HistoryMiddleware:
    def __init__(self, app: ASGIApp, history: History, model_metrics: ModelRequestMetrics | None = None) -> None:
        self.app = app
        self.history = history
        self.model_metrics = model_metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(_SKIP):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        record = _Record()
        token = _current.set(record)

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            _current.reset(token)
            seconds = time.perf_counter() - started
            route = route_template(scope)
            self.history.add(Sample(time.time(), route, status, seconds, record.model, scope.get("method", "")))
            if record.model is not None and self.model_metrics is not None:
                self.model_metrics.observe(record.model, route, status, seconds)
