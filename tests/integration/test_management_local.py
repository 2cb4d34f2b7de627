"""Seed 003's model management on a laptop: the real local Triton in explicit model-control mode
(as `make up` runs it), the real gateway with the management routes on and authentication on."""

from __future__ import annotations

import json
import time
from typing import Iterator

import httpx
import pytest
import yaml

from conch_engines import bundled, repository
from conch_engines.embedded import bundled_model_resource
from conch_engines.triton_server import TritonPorts, TritonServer
from conch_gateway.app import create_app
from conch_gateway.settings import Settings
from support import GatewayServer, free_port_block, seed003
from support.auth import bearer, key_entry, user_entry, write_keys

pytestmark = pytest.mark.triton

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[dict]:
    state = tmp_path_factory.mktemp("state")  # make up's layout: models.yaml, repository/, triton/tritonserver.log
    model = bundled.smollm2()
    repository.write_repository(state / "repository", repository.llama_cpp_files(model.id, str(model.gguf_path), n_ctx=1024))
    triton = TritonServer(state / "repository", state / "triton", TritonPorts.from_http(free_port_block()),
                          extra_args=("--model-control-mode=explicit", "--load-model=*"))
    triton.start()
    (state / "models.yaml").write_text(yaml.safe_dump_all([bundled_model_resource(model, triton.url, None, 1024)]))
    admin, admin_entry = key_entry("ops", role="admin")
    user, user_entry_ = key_entry("team", models=["*"])
    keys = write_keys(state / "keys.yaml", [admin_entry, user_entry_], users=[user_entry("carol", PASSWORD, role="admin")])
    settings = Settings(model_source="local", local_models_file=state / "models.yaml", management=True, auth="on",
                        auth_keys_file=keys, health_probe_interval_s=0.2)
    try:
        with GatewayServer(create_app(settings)) as gateway:
            yield {"url": gateway.url, "admin": bearer(admin), "user": bearer(user), "gguf": str(model.gguf_path),
                   "triton": triton}
    finally:
        triton.stop()


@pytest.fixture
def api(stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack["url"], headers=stack["admin"], timeout=120) as client:
        yield client


def envelope(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == code, body
    return body["error"]


def wait_status(api: httpx.Client, name: str, status: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        item = api.get(f"/api/models/{name}").json()
        if item["status"] == status or time.monotonic() > deadline:
            assert item["status"] == status, item
            return item
        time.sleep(0.2)


def generate(api: httpx.Client, name: str) -> httpx.Response:
    return api.post(f"/api/models/{name}/generate", json={"prompt": "Hello", "max_tokens": 4})


def test_credentials(stack):
    url = stack["url"]
    envelope(httpx.get(f"{url}/api/models"), 401, "AUTHENTICATION_FAILED")
    assert httpx.get(f"{url}/api/models", headers=stack["user"]).status_code == 200
    envelope(httpx.post(f"{url}/api/models/smollm2/stop", headers=stack["user"]), 403, "AUTHORIZATION_FAILED")
    envelope(httpx.post(f"{url}/api/models", headers=stack["user"], json={"name": "x", "framework": "llama.cpp"}),
             403, "AUTHORIZATION_FAILED")
    envelope(httpx.post(f"{url}/modify_cluster_state", headers=stack["user"], json={"model": "smollm2", "replicas": 0}),
             403, "AUTHORIZATION_FAILED")


def test_list_shape_paging_and_filters(api):
    page = api.get("/api/models", params={"page": 1, "size": 10}).json()
    item = next(i for i in page["items"] if i["id"] == "smollm2")
    assert (item["framework"], item["status"], item["health"]) == ("llama.cpp", "running", "healthy")
    assert item["config"]["model_path"].endswith(".gguf") and item["config"]["n_ctx"] == 1024
    assert api.get("/api/models", params={"status": "stopped"}).json()["items"] == []
    assert api.get("/api/models", params={"framework": "tensorrt-llm"}).json()["total"] == 0
    envelope(api.get("/api/models", params={"size": 101}), 422, "INVALID_REQUEST")
    envelope(api.get("/api/models/nope"), 404, "MODEL_NOT_FOUND")
    envelope(api.get("/api/v1/models/nope"), 404, "MODEL_NOT_FOUND")


def test_stop_then_start_through_triton(api, stack):
    assert api.post("/api/models/smollm2/stop").status_code == 202
    wait_status(api, "smollm2", "stopped")
    envelope(generate(api, "smollm2"), 409, "MODEL_NOT_RUNNING")
    assert api.post("/api/models/smollm2/start", json={"timeout": 120}).status_code == 202
    wait_status(api, "smollm2", "running")
    answer = generate(api, "smollm2")
    assert answer.status_code == 200 and answer.json()["choices"][0]["text"], answer.text


def test_seed_001_load_and_seed_004_scaling(api):
    assert api.post("/modify_cluster_state", json={"model": "smollm2", "replicas": 0}).status_code == 200
    wait_status(api, "smollm2", "stopped")
    envelope(api.post("/api/v1/models/smollm2/load", json={"quantization": "q4_0"}), 400, "INVALID_MODEL_CONFIG")
    assert api.post("/api/v1/models/smollm2/load", json={}).status_code == 202
    wait_status(api, "smollm2", "running")
    envelope(api.post("/modify_cluster_state", json={"model": "nope", "replicas": 1}), 404, "MODEL_NOT_FOUND")


def test_create_from_a_gguf_path_generate_update_delete(api, stack):
    body = {"name": "mine", "display_name": "Mine", "framework": "llama.cpp", "description": "a copy", "priority": 5,
            "config": {"model_path": stack["gguf"], "n_ctx": 512, "n_threads": 1}, "tags": ["chat"]}
    created = api.post("/api/models", json=body)
    assert created.status_code == 201, created.text
    assert created.json()["id"] == "mine"
    envelope(api.post("/api/models", json=body), 409, "MODEL_ALREADY_EXISTS")
    item = wait_status(api, "mine", "running")
    assert (item["display_name"], item["tags"], item["priority"], item["config"]["n_ctx"]) == ("Mine", ["chat"], 5, 512)
    chat = api.post("/api/models/mine/chat/completions", json={"messages": [{"role": "user", "content": "Hi"}],
                                                               "max_tokens": 4})
    assert chat.status_code == 200 and chat.json()["model"], chat.text
    # seed 003's stream: `data: {"id", "choices": [{"text", "index"}]}` events (OpenAI's completion chunks)
    for path, request in (("/api/models/mine/generate/stream", {"prompt": "Hi", "max_tokens": 3}),
                          ("/api/models/mine/generate", {"prompt": "Hi", "max_tokens": 3, "stream": True})):
        stream = api.post(path, json=request)
        assert stream.status_code == 200 and stream.headers["content-type"].startswith("text/event-stream"), stream.text
        events = [line[len("data: "):] for line in stream.text.splitlines() if line.startswith("data: ")]
        assert events[-1] == "[DONE]", events
        chunks = [json.loads(e) for e in events[:-1]]
        assert all(c["id"] == chunks[0]["id"] and c["choices"][0]["index"] == 0 for c in chunks), chunks
        assert "".join(c["choices"][0]["text"] for c in chunks), chunks
    # optimistic concurrency: an update from a stale read is refused
    version = item["resource_version"]
    fresh = api.put("/api/models/mine", json={**body, "description": "v2", "resource_version": version})
    assert fresh.status_code == 200 and fresh.json()["description"] == "v2", fresh.text
    envelope(api.put("/api/models/mine", json={**body, "resource_version": version}), 409, "CONFLICT")
    envelope(api.put("/api/models/mine", json={**body, "name": "other"}), 400, "INVALID_MODEL_CONFIG")
    assert api.delete("/api/models/mine").status_code == 204
    envelope(api.get("/api/models/mine"), 404, "MODEL_NOT_FOUND")
    envelope(api.delete("/api/models/mine"), 404, "MODEL_NOT_FOUND")


@pytest.mark.parametrize("change,code,param", [
    ({"framework": "onnx"}, "INVALID_MODEL_CONFIG", "framework"),
    ({"config": {"model_path": "/no/such.gguf"}}, "INVALID_MODEL_CONFIG", "config.model_path"),
    ({"config": {"model_path": "/models/m.gguf", "n_gpu_layers": 32}}, "INVALID_MODEL_CONFIG", "config.n_gpu_layers"),
    ({"resource_requirements": {"gpu_memory": 4096}}, "INVALID_MODEL_CONFIG", "resource_requirements.gpu_memory"),
])
def test_bad_bodies_name_the_field(api, stack, change, code, param):
    body = {"name": "bad", "framework": "llama.cpp", "config": {"model_path": stack["gguf"]}, **change}
    error = envelope(api.post("/api/models", json=body), 400, code)
    assert error["param"] == param


def test_unknown_fields_are_refused(api, stack):
    body = {"name": "bad", "framework": "llama.cpp", "config": {"model_path": stack["gguf"], "temperature": 1}}
    envelope(api.post("/api/models", json=body), 422, "INVALID_REQUEST")


def test_logs_from_tritons_log(api):
    logs = api.get("/api/models/smollm2/logs", params={"tail": 5})
    assert logs.status_code == 200 and 0 < len(logs.text.splitlines()) <= 5, logs.text
    with api.stream("GET", "/api/models/smollm2/logs", params={"tail": 1, "follow": True}) as stream:
        first = next(stream.iter_lines())
        assert first
    envelope(api.get("/api/models/nope/logs"), 404, "MODEL_NOT_FOUND")


def test_seed_003_curl_walkthrough_as_written(api, stack):
    """Seed 003's cURL examples run by the real curl: a token from /api/auth/token, then create →
    start → generate with it (the seed's model file is the bundled GGUF)."""
    walked = seed003.walk(stack["url"], "carol", PASSWORD, stack["gguf"],
                          before_generate=lambda model_id: wait_status(api, model_id, "running"))
    try:
        assert (walked.token["token_type"], walked.token["expires_in"]) == ("bearer", 3600)
        assert walked.created["id"] == seed003.SEED_MODEL_NAME
        answer = walked.generated  # the seed's answer: id, model, choices[{text, finish_reason, index}], usage, created
        assert answer["model"] == seed003.SEED_MODEL_NAME and answer["created"] > 0 and answer["id"]
        choice = answer["choices"][0]
        assert (choice["index"], choice["finish_reason"] in ("stop", "length"), bool(choice["text"])) == (0, True, True)
        usage = answer["usage"]
        assert 0 < usage["completion_tokens"] <= 100 and usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    finally:
        api.delete(f"/api/models/{seed003.SEED_MODEL_NAME}")
