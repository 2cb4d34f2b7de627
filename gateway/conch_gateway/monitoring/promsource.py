"""/api/monitoring figures from Prometheus' HTTP query API, in the local history's shape.

Counts are "counter at end minus counter at start" rather than increase(): a route first served
inside the window has no earlier sample, and increase() would drop the requests counted before
its first scrape; `or ... * 0` reads a series absent at the start as 0. A gateway restart inside
the window (counter reset) makes that route's figure low — the price of exact small counts.

Per-model figures (and a report restricted to one model) come from the middleware's
`conch_model_requests_total` / `conch_model_request_duration_seconds`, labelled by model and route."""

from __future__ import annotations

import asyncio
import math
from datetime import datetime

import httpx

from ..errors import invalid_request
from .protocol import LatencyStats, MetricsReport, SeriesStats

_HTTP = ("conch_http_requests_total", "conch_http_request_duration_seconds")
_MODEL = ("conch_model_requests_total", "conch_model_request_duration_seconds")
# The same routes the local history skips (middleware._SKIP), so both sources report alike.
_KEEP = 'route!~"/api/monitoring.*|/api/system.*|/ws/.*|/metrics.*|/health.*"'


def _delta(metric: str, by: str, window_s: int, match: str = "") -> str:
    selector = f"{metric}{{{_KEEP}{',' + match if match else ''}}}"
    now = f"sum by ({by}) ({selector})"
    return f"({now} - (sum by ({by}) ({selector} offset {window_s}s) or {now} * 0))"


def quoted(value: str) -> str:
    """A PromQL string literal (model ids come from the caller: no injection into the query)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


async def _query(client: httpx.AsyncClient, base: str, expr: str, at: float, label: str) -> dict[str, float]:
    """{label value: value} of one instant query; "" is the key of a query without that label."""
    response = await client.get(f"{base.rstrip('/')}/api/v1/query", params={"query": expr, "time": at})
    response.raise_for_status()
    out = {}
    for item in response.json()["data"]["result"]:
        value = float(item["value"][1])
        if not math.isnan(value):
            out[item["metric"].get(label, "")] = value
    return out


async def report(base: str, start: datetime, end: datetime, model_id: str | None = None) -> MetricsReport:
    window_s = max(1, round(end.timestamp() - start.timestamp()))
    at = end.timestamp()
    # One model: every figure from the per-model metrics, restricted to it; else the HTTP metrics.
    metrics, match = (_MODEL, f"model={quoted(model_id)}") if model_id is not None else (_HTTP, "")
    groups = {"route": _exprs("route", window_s, metrics, match), "": _exprs("", window_s, metrics, match),
              "model": _exprs("model", window_s, _MODEL, match)}
    names = [(label, name) for label, exprs in groups.items() for name in exprs]
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            answers = await asyncio.gather(*(_query(client, base, groups[label][name], at, label)
                                             for label, name in names))
    except (httpx.HTTPError, httpx.InvalidURL, KeyError, ValueError) as error:
        # The configured Prometheus is the caller's setting: a 4xx naming it, not a 500.
        raise invalid_request(f"the configured Prometheus ({base}) did not answer: {error}",
                              param="prometheus_url") from error
    values: dict[str, dict[str, dict[str, float]]] = {label: {} for label in groups}
    for (label, name), answer in zip(names, answers):
        values[label][name] = answer
    # The total from queries without the route label: percentiles of all requests, not of routes.
    return MetricsReport(start_time=start, end_time=end, source="prometheus", model_id=model_id,
                         total=_series("", values[""], window_s, key="total"),
                         series=_all(values["route"], window_s), models=_all(values["model"], window_s))


def _all(values: dict[str, dict[str, float]], window_s: int) -> list[SeriesStats]:
    return [_series(key, values, window_s) for key in sorted(values["requests"]) if round(values["requests"][key]) > 0]


def _exprs(by: str, window_s: int, metrics: tuple[str, str] = _HTTP, match: str = "") -> dict[str, str]:
    requests, duration = metrics
    le = f"{by}, le" if by else "le"
    errors = ",".join(m for m in (match, 'status=~"[45].."') if m)
    return {
        "requests": _delta(requests, by, window_s, match),
        "errors": _delta(requests, by, window_s, errors),
        "sum": _delta(f"{duration}_sum", by, window_s, match),
        "count": _delta(f"{duration}_count", by, window_s, match),
        **{f"p{q}": f"histogram_quantile(0.{q:02d}, {_delta(f'{duration}_bucket', le, window_s, match)})"
           for q in (50, 95, 99)},
    }


def _series(route: str, values: dict[str, dict[str, float]], window_s: int, key: str | None = None) -> SeriesStats:
    requests = round(values["requests"].get(route, 0.0))
    errors = round(values["errors"].get(route, 0.0))
    count = values["count"].get(route, 0.0)
    latency = None
    if count > 0:
        latency = LatencyStats(avg_s=values["sum"].get(route, 0.0) / count,
                               **{f"p{q}_s": values[f"p{q}"].get(route, 0.0) for q in (50, 95, 99)})
    return SeriesStats(key=key or route, requests=requests, errors=errors,
                       error_rate=errors / requests if requests else 0.0, requests_per_s=requests / window_s,
                       latency=latency)
