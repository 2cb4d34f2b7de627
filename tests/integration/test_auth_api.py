"""Authentication and authorization through the real gateway and the real Triton: API keys from a
keys file (re-read live), users and their tokens (`POST /api/auth/token`), 401/403 in the one
envelope, the official `openai` SDK's exception classes, model lists per caller, and the routes
probes and Prometheus use without a key."""

from __future__ import annotations

import time
from typing import Iterator

import httpx
import openai
import pytest
import yaml

from support.auth import bearer, key_entry, signing_entry, user_entry, write_keys
from support.k8s import wait_until
from support.stack import make_gateway, repository_models

pytestmark = pytest.mark.triton

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def keys_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("auth") / "keys.yaml"
    admin, admin_entry = key_entry("ops", role="admin")
    user, user_entry_ = key_entry("team-echo", models=["echo", "fault"])
    expired, expired_entry = key_entry("old", expires="2020-01-01")
    write_keys(path, [admin_entry, user_entry_, expired_entry],
               users=[user_entry("bob", PASSWORD, models=["echo"]), user_entry("carol", PASSWORD, role="admin")],
               signing=[signing_entry("local-1")])
    return path, {"admin": admin, "user": user, "expired": expired}


@pytest.fixture(scope="module")
def gateway(triton, keys_file) -> Iterator:
    path, _ = keys_file
    with make_gateway(repository_models(triton.url), auth="on", auth_keys_file=path, default_model="echo") as server:
        yield server


@pytest.fixture(scope="module")
def keys(keys_file):
    return keys_file[1]


def envelope(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == body["error_code"] == code
    return body


GENERATE = {"model_id": "echo", "inputs": "one two three", "parameters": {"max_new_tokens": 8}}


def test_no_credential_is_401_on_every_api_and_open_on_probes(gateway):
    for method, path, body in (
            ("POST", "/v1/generate", GENERATE),
            ("POST", "/v1/chat/completions", {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}),
            ("POST", "/generate", {"inputs": "hi"}), ("POST", "/api/v1/generate", {"prompt": "hi"}),
            ("GET", "/v1/models/echo", None), ("GET", "/health/full", None), ("GET", "/info", None)):
        response = httpx.request(method, gateway.url + path, json=body)
        envelope(response, 401, "AUTHENTICATION_FAILED")
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.json()["error"]["type"] == "authentication_error"
    # Probes and Prometheus need no key; a readiness probe on /v1/models sees an empty list.
    for path in ("/health", "/ping", "/", "/metrics", "/openapi.json"):
        assert httpx.get(gateway.url + path).status_code in (200, 503), path
    anonymous = httpx.get(f"{gateway.url}/v1/models")
    assert anonymous.status_code == 200 and anonymous.json()["data"] == []


def test_bad_credentials_are_401_with_the_reason(gateway, keys):
    cases = {"ck-000000000000-" + "0" * 64: "unknown or revoked", keys["expired"]: "expired",
             "sk-not-a-conch-key": "neither", "e30.e30.e30": "neither"}
    for credential, reason in cases.items():
        response = httpx.post(f"{gateway.url}/v1/generate", json=GENERATE, headers=bearer(credential))
        assert reason in envelope(response, 401, "AUTHENTICATION_FAILED")["error"]["message"]
    # X-API-Key works as well as Authorization: Bearer.
    assert httpx.post(f"{gateway.url}/v1/generate", json=GENERATE, headers={"X-API-Key": keys["user"]}).status_code == 200


def test_openai_sdk_raises_its_own_exception_classes(gateway, keys):
    def client(key):
        return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0)

    messages = [{"role": "user", "content": "hello there"}]
    with pytest.raises(openai.AuthenticationError) as unauthenticated:
        client("ck-000000000000-" + "0" * 64).chat.completions.create(model="echo", messages=messages)
    assert unauthenticated.value.status_code == 401 and unauthenticated.value.code == "AUTHENTICATION_FAILED"
    with pytest.raises(openai.PermissionDeniedError) as forbidden:
        client(keys["user"]).chat.completions.create(model="smollm2", messages=messages)
    assert forbidden.value.code == "AUTHORIZATION_FAILED" and "may not use model 'smollm2'" in forbidden.value.message
    answer = client(keys["user"]).chat.completions.create(model="echo", messages=messages, max_tokens=8)
    assert answer.choices[0].message.content
    with pytest.raises(openai.PermissionDeniedError):
        client(keys["user"]).embeddings.create(model="all-minilm-l6-v2", input=["x"])


def test_model_lists_show_only_what_the_caller_may_use(gateway, keys):
    user = httpx.get(f"{gateway.url}/v1/models", headers=bearer(keys["user"])).json()
    assert [m["id"] for m in user["data"]] == ["echo", "fault"]
    assert all(m["endpoint"] is None for m in user["models"])  # where models run is for admins
    admin = httpx.get(f"{gateway.url}/v1/models", headers=bearer(keys["admin"])).json()
    assert {"echo", "fault", "smollm2", "all-minilm-l6-v2"} <= {m["id"] for m in admin["data"]}
    assert all(m["endpoint"] for m in admin["models"])
    assert httpx.get(f"{gateway.url}/v1/models/smollm2", headers=bearer(keys["user"])).status_code == 404
    api_v1 = httpx.get(f"{gateway.url}/api/v1/models", headers=bearer(keys["user"])).json()
    assert [m["name"] for m in api_v1["models"]] == ["echo", "fault"]
    # Admin-only routes: 403 for a user, allowed for an admin.
    envelope(httpx.get(f"{gateway.url}/health/full", headers=bearer(keys["user"])), 403, "AUTHORIZATION_FAILED")
    assert httpx.get(f"{gateway.url}/health/full", headers=bearer(keys["admin"])).status_code in (200, 503)


def test_every_dialect_checks_the_model(gateway, keys):
    user = bearer(keys["user"])
    refusals = [httpx.post(f"{gateway.url}/v1/generate", headers=user, json={**GENERATE, "model_id": "smollm2"}),
                httpx.post(f"{gateway.url}/v1/completions", headers=user, json={"model": "smollm2", "prompt": "x"}),
                httpx.post(f"{gateway.url}/generate", headers=user, json={"inputs": "x", "model": "smollm2"}),
                httpx.post(f"{gateway.url}/api/v1/generate", headers=user, json={"prompt": "x", "model": "smollm2"}),
                httpx.post(f"{gateway.url}/v1/chat/completions", headers=user,
                           json={"model": "smollm2", "messages": [{"role": "user", "content": "x"}], "stream": True})]
    for response in refusals:
        envelope(response, 403, "AUTHORIZATION_FAILED")
    batch = httpx.post(f"{gateway.url}/api/v1/batch/generate", headers=user, timeout=60, json={"requests": [
        {"prompt": "a b", "model": "echo", "max_tokens": 4}, {"prompt": "x", "model": "smollm2"}]}).json()
    assert batch["results"][0]["text"] and batch["results"][1]["error"]["code"] == "AUTHORIZATION_FAILED"


def test_users_get_tokens_that_act_as_them(gateway):
    answer = httpx.post(f"{gateway.url}/api/auth/token", json={"username": "bob", "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    token = answer.json()
    assert token["token_type"] == "bearer" and token["expires_in"] == 3600
    ok = httpx.post(f"{gateway.url}/v1/generate", json=GENERATE, headers=bearer(token["access_token"]))
    assert ok.status_code == 200, ok.text
    envelope(httpx.post(f"{gateway.url}/v1/generate", json={**GENERATE, "model_id": "fault"},
                        headers=bearer(token["access_token"])), 403, "AUTHORIZATION_FAILED")
    wrong = httpx.post(f"{gateway.url}/api/auth/token", json={"username": "bob", "password": "guess"})
    assert "wrong password" in envelope(wrong, 401, "AUTHENTICATION_FAILED")["error"]["message"]
    envelope(httpx.post(f"{gateway.url}/api/auth/token", json={"username": "bob"}), 422, "INVALID_REQUEST")
    tampered = token["access_token"][:-4] + ("AAAA" if not token["access_token"].endswith("AAAA") else "BBBB")
    envelope(httpx.post(f"{gateway.url}/v1/generate", json=GENERATE, headers=bearer(tampered)), 401,
             "AUTHENTICATION_FAILED")


def test_guessing_a_password_is_rate_limited(gateway):
    statuses = [httpx.post(f"{gateway.url}/api/auth/token", json={"username": "carol", "password": f"guess {i}"}).status_code
                for i in range(11)]
    assert statuses == [401] * 10 + [429]


def test_keys_file_changes_count_at_once(gateway, keys_file):
    """Adding, then revoking a key: no restart, each within a second."""
    path, current = keys_file
    document = yaml.safe_load(path.read_text())
    new, entry = key_entry("added-later", models=["echo"])
    assert httpx.post(f"{gateway.url}/v1/generate", json=GENERATE, headers=bearer(new)).status_code == 401
    document["apiKeys"].append(entry)
    path.write_text(yaml.safe_dump(document))
    started = time.monotonic()
    wait_until(lambda: httpx.post(f"{gateway.url}/v1/generate", json=GENERATE, headers=bearer(new)).status_code == 200,
               5, interval=0.05, message="new key accepted")
    assert time.monotonic() - started < 1.0
    document["apiKeys"] = [e for e in document["apiKeys"] if e["name"] != "added-later"]
    path.write_text(yaml.safe_dump(document))
    started = time.monotonic()
    wait_until(lambda: httpx.post(f"{gateway.url}/v1/generate", json=GENERATE, headers=bearer(new)).status_code == 401,
               5, interval=0.05, message="revoked key refused")
    assert time.monotonic() - started < 1.0
    assert httpx.post(f"{gateway.url}/v1/generate", json=GENERATE, headers=bearer(current["user"])).status_code == 200


def test_auth_failures_are_counted(gateway):
    from prometheus_client.parser import text_string_to_metric_families

    httpx.post(f"{gateway.url}/v1/generate", json=GENERATE, headers=bearer("sk-nope"))
    families = text_string_to_metric_families(httpx.get(f"{gateway.url}/metrics").text)
    failures = {s.labels["reason"]: s.value for f in families if f.name == "conch_auth_failures"
                for s in f.samples if s.name == "conch_auth_failures_total"}
    assert failures.get("malformed", 0) >= 1


def test_auth_off_on_loopback_by_default(triton):
    """`make up`: loopback, no setting: open, as before; the log says so."""
    with make_gateway(repository_models(triton.url)) as server:
        assert httpx.post(f"{server.url}/v1/generate", json=GENERATE).status_code == 200
        assert httpx.post(f"{server.url}/api/auth/token", json={"username": "a", "password": "b"}).json()[
            "error_code"] == "AUTH_DISABLED"
