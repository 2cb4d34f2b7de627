"""/api/monitoring figures from Prometheus' HTTP query API, in the local history's shape.

Counts are "counter at end minus counter at start" rather than increase(): a route first served
inside the window has no earlier sample, and increase() would drop the requests counted before
its first scrape; `or ... * 0` reads a series absent at the start as 0. A gateway restart inside
the window (counter reset) makes that route's figure low — the price of exact small counts."""

from __future__ import annotations

import math
from datetime import datetime

import httpx

from ..errors import invalid_request
from .protocol import LatencyStats, MetricsReport, SeriesStats

_REQUESTS = "conch_http_requests_total"
_DURATION = "conch_http_request_duration_seconds"
# The same routes the local history skips (middleware._SKIP), so both sources report alike.
_KEEP = 'route!~"/api/monitoring.*|/api/system.*|/ws/.*|/metrics.*|/health.*"'


def _delta(metric: str, by: str, window_s: int, match: str = "") -> str:
    selector = f"{metric}{{{_KEEP}{',' + match if match else ''}}}"
    now = f"sum by ({by}) ({selector})"
    return f"({now} - (sum by ({by}) ({selector} offset {window_s}s) or {now} * 0))"


async def _query(client: httpx.AsyncClient, base: str, expr: str, at: float) -> dict[str, float]:
    """{route: value} of one instant query; "" is the key of a query without a route label."""
    response = await client.get(f"{base.rstrip('/')}/api/v1/query", params={"query": expr, "time": at})
    response.raise_for_status()
    out = {}
    for item in response.json()["data"]["result"]:
        value = float(item["value"][1])
        if not math.isnan(value):
            out[item["metric"].get("route", "")] = value
    return out


async def report(base: str, start: datetime, end: datetime, model_id: str | None = None) -> MetricsReport:
    window_s = max(1, round(end.timestamp() - start.timestamp()))
    at = end.timestamp()
    exprs = {**_exprs("route", window_s), **{f"total_{k}": v for k, v in _exprs("", window_s).items()}}
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            values = {name: await _query(client, base, expr, at) for name, expr in exprs.items()}
    except (httpx.HTTPError, httpx.InvalidURL, KeyError, ValueError) as error:
        # The configured Prometheus is the caller's setting: a 4xx naming it, not a 500.
        raise invalid_request(f"the configured Prometheus ({base}) did not answer: {error}",
                              param="prometheus_url") from error
    series = [_series(route, values, window_s) for route in sorted(values["requests"])
              if round(values["requests"][route]) > 0]
    # The total from queries without the route label: percentiles of all requests, not of routes.
    total = _series("", {k.removeprefix("total_"): v for k, v in values.items() if k.startswith("total_")},
                    window_s, key="total")
    if model_id is not None:
        series = [s for s in series if s.key == model_id]
    return MetricsReport(start_time=start, end_time=end, source="prometheus", total=total, series=series)


def _exprs(by: str, window_s: int) -> dict[str, str]:
    le = f"{by}, le" if by else "le"
    return {
        "requests": _delta(_REQUESTS, by, window_s),
        "errors": _delta(_REQUESTS, by, window_s, 'status=~"[45].."'),
        "sum": _delta(f"{_DURATION}_sum", by, window_s),
        "count": _delta(f"{_DURATION}_count", by, window_s),
        **{f"p{q}": f"histogram_quantile(0.{q:02d}, {_delta(f'{_DURATION}_bucket', le, window_s)})"
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
