"""/api/monitoring and /api/system against the real gateway and Triton: the figures reported
are the requests this test sent (the window starts just before them, so the shared session
gateway's other traffic stays outside it)."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest

pytestmark = pytest.mark.triton


def test_metrics_match_what_was_sent(client):
    time.sleep(0.01)
    start = datetime.now(timezone.utc)
    ok, bad = 3, 2
    for _ in range(ok):
        assert client.post("/v1/generate", json={"model_id": "echo", "inputs": "Hi", "parameters": {"max_new_tokens": 2}}).status_code == 200
    for _ in range(bad):
        assert client.post("/v1/generate", json={"model_id": "echo", "inputs": "Hi", "parameters": {"max_new_tokens": -1}}).status_code in (400, 422)
    end = datetime.now(timezone.utc)
    report = client.get("/api/monitoring/metrics", params={"start_time": start.isoformat(), "end_time": end.isoformat()})
    assert report.status_code == 200, report.text
    body = report.json()
    assert body["source"] == "local"
    assert body["total"]["requests"] == ok + bad
    assert body["total"]["errors"] == bad
    assert body["total"]["error_rate"] == pytest.approx(bad / (ok + bad))
    series = {s["key"]: s for s in body["series"]}
    assert series["/v1/generate"]["requests"] == ok + bad
    latency = series["/v1/generate"]["latency"]
    assert 0 < latency["min_s"] <= latency["avg_s"] <= latency["max_s"] <= (end - start).total_seconds()
    window = (datetime.fromisoformat(body["end_time"]) - datetime.fromisoformat(body["start_time"])).total_seconds()
    assert body["total"]["requests_per_s"] == pytest.approx((ok + bad) / window, rel=1e-3)  # ISO times round to µs


def test_per_model_figures_match_what_each_model_was_sent(client):
    """Two models of the real Triton: echo answers; fault answers "ok" or fails on "FAIL: ..." —
    an error after the model was resolved, so it is that model's error. A request for a model not
    served counts in the total only."""
    def generate(model: str, text: str) -> int:
        return client.post("/v1/generate", json={"model_id": model, "inputs": text,
                                                 "parameters": {"max_new_tokens": 2}}).status_code

    time.sleep(0.01)
    start = datetime.now(timezone.utc)
    assert [generate("echo", "Hi") for _ in range(3)] == [200] * 3
    assert [generate("fault", "Hi") for _ in range(2)] == [200] * 2
    failed = [generate("fault", "FAIL: on purpose") for _ in range(2)]
    assert all(status >= 500 for status in failed), failed
    assert generate("no-such-model", "Hi") == 400
    end = datetime.now(timezone.utc)
    window = {"start_time": start.isoformat(), "end_time": end.isoformat()}

    body = client.get("/api/monitoring/metrics", params=window).json()
    assert body["total"]["requests"] == 8 and body["total"]["errors"] == 3
    models = {m["key"]: m for m in body["models"]}
    assert set(models) == {"echo", "fault"}  # the unknown name resolved to no model
    assert (models["echo"]["requests"], models["echo"]["errors"]) == (3, 0)
    assert (models["fault"]["requests"], models["fault"]["errors"]) == (4, 2)
    assert models["fault"]["error_rate"] == pytest.approx(0.5)
    for figures in models.values():
        latency = figures["latency"]
        assert 0 < latency["min_s"] <= latency["p50_s"] <= latency["max_s"] <= (end - start).total_seconds()

    # One model: its total, its routes and itself only.
    one = client.get("/api/monitoring/metrics", params={**window, "model_id": "fault"}).json()
    assert one["model_id"] == "fault"
    assert (one["total"]["requests"], one["total"]["errors"]) == (4, 2)
    assert [(s["key"], s["requests"]) for s in one["series"]] == [("/v1/generate", 4)]
    assert [m["key"] for m in one["models"]] == ["fault"]
    # /performance answers the same question over the last time_range seconds.
    recent = client.get("/api/monitoring/performance", params={"model_id": "echo", "time_range": 600}).json()
    assert recent["models"][0]["key"] == "echo" and recent["total"]["requests"] >= 3
    assert client.get("/api/monitoring/performance", params={"model_id": ""}).status_code == 422


def test_a_reversed_window_is_refused_in_the_envelope(client):
    answer = client.get("/api/monitoring/metrics", params={"start_time": "2026-01-02T00:00:00Z",
                                                           "end_time": "2026-01-01T00:00:00Z"})
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "INVALID_REQUEST"


def test_system_status_counts_models_and_reports_usage(client):
    status = client.get("/api/system/status").json()
    models = client.get("/v1/models").json()["data"]
    assert status["models_total"] == sum(status["models"].values()) >= len(models) > 0
    assert status["uptime_s"] > 0
    assert 0 < status["resources"]["memory_used_bytes"] < status["resources"]["memory_total_bytes"]


def test_gpu_without_a_gpu_is_an_empty_list_with_a_reason(client):
    body = client.get("/api/system/gpu").json()
    assert body["gpus"] == [] and body["reason"]
