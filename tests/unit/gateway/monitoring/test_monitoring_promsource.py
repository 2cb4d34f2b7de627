"""Turning Prometheus' per-route answers into the report's series (pure parts of promsource)."""

from __future__ import annotations

from conch_gateway.monitoring.promsource import _delta, _series


def test_series_from_query_values():
    values = {"requests": {"/v1/generate": 10.0}, "errors": {"/v1/generate": 2.0},
              "sum": {"/v1/generate": 5.0}, "count": {"/v1/generate": 10.0},
              "p50": {"/v1/generate": 0.25}, "p95": {"/v1/generate": 1.0}, "p99": {"/v1/generate": 2.5}}
    s = _series("/v1/generate", values, window_s=100)
    assert (s.key, s.requests, s.errors, s.error_rate, s.requests_per_s) == ("/v1/generate", 10, 2, 0.2, 0.1)
    assert s.latency.avg_s == 0.5 and (s.latency.p50_s, s.latency.p95_s, s.latency.p99_s) == (0.25, 1.0, 2.5)
    assert s.latency.min_s is None and s.latency.max_s is None  # a histogram keeps neither


def test_a_route_without_timings_has_no_latency():
    s = _series("", {"requests": {"": 3.0}, "errors": {}, "sum": {}, "count": {}, "p50": {}, "p95": {}, "p99": {}},
                window_s=10, key="total")
    assert (s.key, s.requests, s.errors, s.latency) == ("total", 3, 0, None)


def test_counts_are_end_minus_start_with_absent_start_as_zero():
    expr = _delta("conch_http_requests_total", "route", 300, 'status=~"[45].."')
    assert "offset 300s" in expr and " or " in expr and "* 0" in expr
    assert 'route!~"/api/monitoring' in expr and 'status=~"[45].."' in expr
