"""Prometheus metrics and the pure-ASGI middleware that records them.

Pure ASGI rather than Starlette's BaseHTTPMiddleware, which costs throughput on every request.
Each app gets its own CollectorRegistry so several apps can live in one process (tests).
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60)
_ITL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
# Label for a path no route matched (scanners, typos): one series for all of them.
UNMATCHED_ROUTE = "unmatched"
# Past this many model ids, new ones share one series: model ids come from the cluster's Model
# resources, and a churn of renamed models must not grow Prometheus' memory without bound.
MAX_MODEL_LABELS = 200
OTHER_MODEL = "other"


class ModelLabels:
    """The `model` label for a model id: the id itself for the first MAX_MODEL_LABELS seen, then
    OTHER_MODEL."""

    def __init__(self, limit: int = MAX_MODEL_LABELS) -> None:
        self._limit = limit
        self._seen: set[str] = set()

    def __call__(self, model_id: str) -> str:
        if model_id in self._seen:
            return model_id
        if len(self._seen) >= self._limit:
            return OTHER_MODEL
        self._seen.add(model_id)
        return model_id


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
        # Generation: the questions "how long until the first token", "how fast do tokens come",
        # "how many tokens in and out" — per model, for every dialect, streaming or not.
        self.model_label = ModelLabels()
        self.ttft = Histogram("conch_time_to_first_token_seconds",
                              "Time from admission request to the first generated text (whole answer when not "
                              "streaming).", ["model", "streaming"], buckets=_TTFT_BUCKETS, registry=self.registry)
        self.itl = Histogram("conch_inter_token_latency_seconds",
                             "Time between two streamed responses, divided by the tokens the later one carries.",
                             ["model"], buckets=_ITL_BUCKETS, registry=self.registry)
        self.prompt_tokens = Counter("conch_prompt_tokens_total", "Prompt tokens, as counted by the backend.",
                                     ["model", "streaming"], registry=self.registry)
        self.completion_tokens = Counter("conch_completion_tokens_total",
                                         "Completion tokens, as counted by the backend.",
                                         ["model", "streaming"], registry=self.registry)
        self.generations = Counter("conch_generations_total", "Finished generations by model and finish reason.",
                                   ["model", "streaming", "finish_reason"], registry=self.registry)
        self.active_count = 0
        # Label lookups take a lock and hash the label values: each child is bound once, when first
        # used (so a series appears exactly when it did before). Bounded: the model label is.
        self._tokens, self._errors = _Children(self.tokens), _Children(self.errors)
        self._ttft, self._itl = _Children(self.ttft), _Children(self.itl)
        self._prompt_tokens, self._completion_tokens = _Children(self.prompt_tokens), _Children(self.completion_tokens)
        self._generations = _Children(self.generations)
        self._requests, self._latency = _Children(self.requests), _Children(self.latency)

    def observe_request(self, method: str, route: str, status: str, seconds: float) -> None:
        self._requests[(method, route, status)].inc()
        self._latency[(method, route)].observe(seconds)

    def tokens_generated(self, model: str, count: int) -> None:
        self._tokens[(self.model_label(model),)].inc(count)

    def backend_error(self, model: str, code: str) -> None:
        self._errors[(self.model_label(model), code)].inc()

    def first_token(self, model: str, streaming: bool, seconds: float) -> None:
        self._ttft[(self.model_label(model), _flag(streaming))].observe(seconds)

    def between_tokens(self, model: str, seconds: float, tokens: int) -> None:
        self._itl[(self.model_label(model),)].observe(seconds / max(1, tokens))

    def generation_done(self, model: str, streaming: bool, finish_reason: str,
                        input_tokens: int | None, output_tokens: int | None) -> None:
        label, flag = self.model_label(model), _flag(streaming)
        self._generations[(label, flag, finish_reason)].inc()
        if input_tokens:
            self._prompt_tokens[(label, flag)].inc(input_tokens)
        if output_tokens:
            self._completion_tokens[(label, flag)].inc(output_tokens)


class _Children(dict):
    """A labelled metric's children by their label values, each bound on first use."""

    def __init__(self, metric) -> None:
        super().__init__()
        self.metric = metric

    def __missing__(self, labels: tuple[str, ...]):
        child = self[labels] = self.metric.labels(*labels)
        return child


def _flag(streaming: bool) -> str:
    return "true" if streaming else "false"


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
            route = route_template(scope)
            # 499 (nginx's "client closed request"): the client left before any answer was sent
            metrics.observe_request(scope["method"], route, str(status or 499), time.perf_counter() - started)


def route_template(scope: Scope) -> str:
    """The template of the route that handled the request (`/v1/models/{model_id}`), never the raw
    path. FastAPI's own routes put themselves in the scope; plain Starlette routes (the docs pages,
    `/openapi.json`) do not, so those are found again by matching; no match is UNMATCHED_ROUTE."""
    route = scope.get("route")
    if route is not None:
        return getattr(route, "path", UNMATCHED_ROUTE)
    partial = UNMATCHED_ROUTE  # the path matched but not the method (405): still that route
    for candidate in getattr(scope.get("app"), "routes", ()):
        match, _ = candidate.matches(scope)
        if match == Match.FULL:
            return getattr(candidate, "path", UNMATCHED_ROUTE)
        if match == Match.PARTIAL and partial == UNMATCHED_ROUTE:
            partial = getattr(candidate, "path", UNMATCHED_ROUTE)
    return partial
