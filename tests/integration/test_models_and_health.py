"""`/v1/models`, `/health`, `/health/full`, `/metrics` and CORS against the real Triton."""

from __future__ import annotations

import httpx
import pytest

pytestmark = pytest.mark.triton


def test_models_in_both_shapes(client, triton):
    body = client.get("/v1/models").json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["all-minilm-l6-v2", "echo", "fault", "smollm2", "smollm2-llmapi"]
    assert all(m["object"] == "model" for m in body["data"])
    smollm2 = next(m for m in body["models"] if m["id"] == "smollm2")
    assert smollm2 == {"id": "smollm2", "name": "SmolLM2-135M-Instruct-Q4_1", "status": "healthy",
                       "supports": ["completion", "instruct", "chat"], "endpoint": triton.url}


def test_health_carries_seed_000_and_001_fields(client):
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "healthy"
    assert body["models"] == {"all-minilm-l6-v2": "healthy", "echo": "healthy", "fault": "healthy",
                              "smollm2": "healthy", "smollm2-llmapi": "healthy"}
    assert body["total"] == 5 and body["healthy"] == 5 and body["model_loaded"] is True
    assert body["memory_usage"].endswith("GB") and "/" in body["memory_usage"]
    assert body["active_connections"] >= 1  # this request


def test_full_health_probes_triton_live(client):
    body = client.get("/health/full").json()
    assert body == {"status": "healthy", "details": {"all-minilm-l6-v2": "healthy", "echo": "healthy",
                                                     "fault": "healthy", "smollm2": "healthy",
                                                     "smollm2-llmapi": "healthy"},
                    "total": 5, "healthy": 5}


def test_health_is_degraded_when_a_model_is_missing(triton):
    from conch_api import Model
    from support import model_resource
    from support.stack import make_gateway

    ghost = Model.model_validate(model_resource("ghost", triton.url, "not-loaded"))
    echo = Model.model_validate(model_resource("echo", triton.url, "echo"))
    with make_gateway([echo, ghost]) as gateway:
        health = httpx.get(f"{gateway.url}/health")
        assert health.status_code == 200
        assert health.json()["status"] == "degraded" and health.json()["models"]["ghost"] == "unhealthy"
        full = httpx.get(f"{gateway.url}/health/full").json()
        assert full["details"] == {"echo": "healthy", "ghost": "unhealthy"} and full["healthy"] == 1
        # A model Triton does not have is a downstream problem, not a client error.
        response = httpx.post(f"{gateway.url}/v1/generate", json={"model_id": "ghost", "inputs": "hi"})
        assert response.status_code == 503 and response.json()["error_code"] == "DOWNSTREAM_REQUEST_FAILED"


def test_metrics_count_requests_and_tokens(client):
    from prometheus_client.parser import text_string_to_metric_families

    def samples():
        families = text_string_to_metric_families(client.get("/metrics").text)
        return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples}

    before = samples()
    answer = client.post("/v1/generate", json={"model_id": "echo", "inputs": "one two three"}).json()
    after = samples()
    tokens = ("conch_generated_tokens_total", (("model", "echo"),))
    assert after[tokens] - before.get(tokens, 0) == answer["tokens"] > 0
    requests = ("conch_http_requests_total", (("method", "POST"), ("route", "/v1/generate"), ("status", "200")))
    assert after[requests] - before.get(requests, 0) == 1


def test_cors(client):
    preflight = client.options("/v1/generate", headers={
        "Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] in ("*", "http://localhost:3000")
    response = client.get("/v1/models", headers={"Origin": "http://localhost:3000"})
    assert response.headers["access-control-allow-origin"] in ("*", "http://localhost:3000")
