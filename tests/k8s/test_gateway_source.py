"""The gateway's Kubernetes model source: the routing table follows `Model` status, watched."""

from __future__ import annotations

import time

import httpx
import pytest

from support.k8s import model_manifest, wait_until

pytestmark = pytest.mark.k8s


def model_ids(gateway) -> list[str]:
    return [m["id"] for m in httpx.get(f"{gateway.url}/v1/models").json()["data"]]


def test_external_model_serves_generate_end_to_end(kubectl, operator, gateway, triton, bundled_chat_template):
    kubectl.apply(model_manifest("smollm2", runtime="external", displayName="SmolLM2-135M-Instruct-Q4_1",
                                 promptFamily="chatml", chatTemplate=bundled_chat_template,
                                 external={"url": triton.url, "tritonModel": "smollm2"}))
    wait_until(lambda: httpx.get(f"{gateway.url}/health").json()["models"].get("smollm2") == "healthy", 30,
               message="gateway sees smollm2 healthy")
    listed = httpx.get(f"{gateway.url}/v1/models").json()["models"]
    assert listed == [{"id": "smollm2", "name": "SmolLM2-135M-Instruct-Q4_1", "status": "healthy",
                       "supports": ["completion", "instruct", "chat"], "endpoint": triton.url}]
    answer = httpx.post(f"{gateway.url}/v1/generate", timeout=60, json={
        "model_id": "smollm2", "inputs": "What is the capital of France?", "scenario": "qa",
        "parameters": {"max_new_tokens": 16, "do_sample": False}}).json()
    assert "Paris" in answer["generated_text"] and answer["model"] == "SmolLM2-135M-Instruct-Q4_1"

    kubectl("delete", "model", "smollm2", "--wait=false")
    started = time.monotonic()
    wait_until(lambda: "smollm2" not in model_ids(gateway), 5, interval=0.02, message="model removed")
    assert time.monotonic() - started < 1.0
    gone = httpx.post(f"{gateway.url}/v1/generate", json={"model_id": "smollm2", "inputs": "hi"})
    assert gone.status_code == 400 and gone.json()["error_code"] == "MODEL_NOT_FOUND"


def test_known_but_not_ready_is_503(kubectl, gateway):
    # No operator runs here, so nothing will ever make this Model Ready.
    kubectl.apply(model_manifest("pending"))
    wait_until(lambda: "pending" in model_ids(gateway), 10)
    response = httpx.post(f"{gateway.url}/v1/generate", json={"model_id": "pending", "inputs": "hi"})
    assert response.status_code == 503
    body = response.json()
    assert body["error_code"] == "MODEL_NOT_READY" and "pending" in body["error"]["message"]
    assert response.headers["retry-after"]
    health = httpx.get(f"{gateway.url}/health")
    assert health.status_code == 503 and health.json()["models"] == {"pending": "pending"}


def test_status_changes_reach_routing(kubectl, operator, gateway, triton):
    kubectl.apply(model_manifest("echo", runtime="external", external={"url": triton.url, "tritonModel": "echo"}))
    wait_until(lambda: httpx.get(f"{gateway.url}/health").json()["models"].get("echo") == "healthy", 30)
    ok = httpx.post(f"{gateway.url}/v1/generate", json={"model_id": "echo", "inputs": "hi"})
    assert ok.status_code == 200
    # Point it at a model Triton does not have: the operator marks it not Ready, the gateway stops routing.
    kubectl.apply(model_manifest("echo", runtime="external", external={"url": triton.url, "tritonModel": "nope"}))
    wait_until(lambda: httpx.get(f"{gateway.url}/health").json()["models"].get("echo") != "healthy", 30)
    response = httpx.post(f"{gateway.url}/v1/generate", json={"model_id": "echo", "inputs": "hi"})
    assert response.status_code == 503 and response.json()["error_code"] == "MODEL_NOT_READY"
    assert "does not serve model 'nope'" in response.json()["error"]["message"]


def test_watch_recovers_after_apiserver_restart(cluster, kubectl, gateway, triton):
    kubectl.apply(model_manifest("before", runtime="external", external={"url": triton.url, "tritonModel": "echo"}))
    wait_until(lambda: "before" in model_ids(gateway), 10)
    cluster.restart_apiserver()
    # Changes made after the restart reach the gateway: its watch broke and it listed again.
    kubectl.apply(model_manifest("after", runtime="external", external={"url": triton.url, "tritonModel": "echo"}))
    kubectl("delete", "model", "before")
    wait_until(lambda: model_ids(gateway) == ["after"], 30, message="gateway re-listed after the restart")
    assert "watching Models failed" in gateway.log() or "listing" in gateway.log()
