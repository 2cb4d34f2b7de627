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
