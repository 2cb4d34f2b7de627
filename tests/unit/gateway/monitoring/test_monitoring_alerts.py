"""The pure parts behind system_alert and model_status_update: the local PromQL subset, the
firing/resolved state machine with `for`, and the status a routing entry reports."""

from __future__ import annotations

import asyncio

import pytest

from conch_gateway.monitoring.alerts import Active, AlertTracker, alert_id, local_holding
from conch_gateway.monitoring.config import AlertRule
from conch_gateway.monitoring.feed import ModelStatusFeed, status_of
from conch_gateway.monitoring.history import History, Sample
from conch_gateway.monitoring.hub import Hub
from conch_gateway.monitoring.rules import duration_s, parse
from conch_gateway.registry.base import ServedModel
from conch_api import TensorInterface
from conch_gateway.prompts import PromptFormat

NOW = 1000.0


def samples() -> list[Sample]:
    return [Sample(NOW - 1, "/v1/generate", 200, 0.1, "echo", "POST"),
            Sample(NOW - 2, "/v1/generate", 500, 0.1, "fault", "POST"),
            Sample(NOW - 3, "/v1/generate", 500, 0.1, "fault", "POST"),
            Sample(NOW - 100, "/v1/generate", 500, 0.1, "fault", "POST"),
            Sample(NOW - 1, "/v1/models", 200, 0.01, None, "GET")]


@pytest.mark.parametrize("expr, holds", [
    ('sum(increase(conch_model_requests_total{model="fault"}[10s])) >= 2', {(): 2}),
    ('sum(increase(conch_model_requests_total{model="fault"}[10s])) > 2', {}),
    ('sum(conch_model_requests_total{model="fault"}) == 3', {(): 3}),  # the counter: every kept request
    ('sum(rate(conch_http_requests_total{status=~"5.."}[2s])) >= 0.5', {(): 0.5}),
    ('sum(conch_http_requests_total{route!="/v1/models", method="POST"}) > 3', {(): 4}),
    ('sum(conch_http_requests_total{status!~"2.."}) > 0', {(): 3}),
])
def test_the_local_subset_counts_kept_requests(expr, holds):
    assert parse(expr).evaluate(samples(), NOW) == holds


def test_without_sum_each_label_set_is_a_series_as_in_prometheus():
    rule = parse('increase(conch_model_requests_total[10s]) >= 1')
    assert rule.evaluate(samples(), NOW) == {
        (("model", "echo"), ("route", "/v1/generate"), ("status", "200")): 1,
        (("model", "fault"), ("route", "/v1/generate"), ("status", "500")): 2}
    # A series seen before the range still exists, at 0 (requests without a model are not in it).
    zero = parse('increase(conch_model_requests_total[10s]) == 0').evaluate(samples(), NOW)
    assert zero == {}
    assert parse('increase(conch_http_requests_total{route="/v1/generate"}[1s]) == 0').evaluate(samples(), NOW) == {
        (("method", "POST"), ("route", "/v1/generate"), ("status", "500")): 0}


@pytest.mark.parametrize("expr", [
    "histogram_quantile(0.95, sum(rate(conch_http_request_duration_seconds_bucket[5m])) by (le)) > 1",
    "up == 0", "sum(conch_http_requests_total{pod=\"x\"}) > 1", "sum(conch_http_requests_total)",
    "rate(conch_http_requests_total[5m]) > 1 and on() vector(1)", 'sum(conch_http_requests_total{route=~"("}) > 1',
    "avg(conch_http_requests_total) > 1",
])
def test_what_only_prometheus_can_evaluate_is_not_parsed(expr):
    assert parse(expr) is None


def test_durations():
    assert duration_s("1h30m") == 5400 and duration_s("500ms") == 0.5 and duration_s("0s") == 0


def test_for_keeps_an_alert_pending_and_it_resolves_once():
    tracker = AlertTracker()
    alert = Active("A", "A", "warning", "m")
    assert tracker.step(0, [(alert, 5)]) == []  # pending
    assert tracker.step(4, [(alert, 5)]) == []
    fired = tracker.step(5, [(alert, 5)])
    assert [(e["alert_id"], e["state"]) for e in fired] == [("A", "firing")]
    assert tracker.step(6, [(alert, 5)]) == []  # once, not every evaluation
    assert [(e["alert_id"], e["state"]) for e in tracker.step(7, [])] == [("A", "resolved")]
    assert tracker.step(8, []) == []
    tracker.step(9, [(alert, 5)])
    assert tracker.step(10, []) == []  # it stopped holding while pending: never fired, nothing to resolve


def test_local_rules_become_alerts_with_their_summary_and_labels():
    history = History()
    for sample in samples():
        history.add(sample)
    rules = [AlertRule(name="Faulty", expr='increase(conch_model_requests_total{status="500"}[10s]) > 1',
                       severity="critical", summary="fault fails"),
             AlertRule(name="Latency", expr="histogram_quantile(0.9, x) > 1")]  # Prometheus' business
    holding = local_holding(rules, history, NOW)
    assert [(a.alert_id, a.severity, a.message, f) for a, f in holding] == [
        (alert_id("Faulty", {"model": "fault", "route": "/v1/generate", "status": "500"}), "critical", "fault fails", 0)]
    assert holding[0][0].alert_id == 'Faulty{model="fault",route="/v1/generate",status="500"}'


def entry(health: str, desired: int | None = 1, ready: int = 0) -> ServedModel:
    return ServedModel(id="m", name="m", endpoint="http://t", grpc_address=None, triton_model="m",
                       interface=TensorInterface.ENSEMBLE, prompt=PromptFormat.for_model("chatml", None),
                       routable=health == "healthy", health=health, desired_replicas=desired, ready_replicas=ready)


@pytest.mark.parametrize("health, desired, status, shown", [
    ("healthy", 2, "running", "healthy"), ("healthy", 0, "stopped", "healthy"), ("stopped", 1, "stopped", "unknown"),
    ("failed", 1, "error", "unhealthy"), ("unhealthy", None, "error", "unhealthy"), ("pending", 3, "starting", "unknown"),
])
def test_status_of_a_routing_entry(health, desired, status, shown):
    assert (status_of(entry(health, desired))["status"], status_of(entry(health, desired))["health"]) == (status, shown)


def test_the_feed_publishes_changes_only():
    async def run():
        hub = Hub()
        listener = hub.join()
        feed = ModelStatusFeed(hub)
        feed("m", entry("pending", 1))
        feed("m", entry("pending", 1))  # the same again (a relist): nothing new
        feed("m", entry("pending", 2))  # kubectl scale --replicas=2
        feed("m", entry("healthy", 2, ready=1))  # the operator reports each replica ready
        feed("m", entry("healthy", 2, ready=2))
        feed("m", entry("pending", 0))  # kubectl scale --replicas=0
        feed("m", None)
        feed("m", None)  # gone already
        feed("never-seen", None)
        return [listener.queue.get_nowait()["data"] for _ in range(listener.queue.qsize())]

    events = asyncio.run(run())
    assert [(e["model_id"], e["status"], e["replicas"], e["ready_replicas"]) for e in events] == [
        ("m", "starting", 1, 0), ("m", "starting", 2, 0), ("m", "running", 2, 1), ("m", "running", 2, 2),
        ("m", "stopped", 0, 0), ("m", "deleted", None, 0)]
