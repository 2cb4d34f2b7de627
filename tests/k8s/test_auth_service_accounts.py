"""Authentication against the real API server: API keys and users as Secrets managed with kubectl
(made by `python -m conch_gateway.auth`), watched live by the gateway; ServiceAccount tokens
reviewed by TokenReview and authorized per Model by SubjectAccessReview (verb `invoke`), so who may
call a model is an ordinary Role; JWT signing keys rotated without downtime."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Iterator

import httpx
import jwt
import pytest
import yaml

from support import REPO_ROOT
from support.auth import bearer
from support.k8s import GatewayProcess, wait_until

pytestmark = pytest.mark.k8s

PASSWORD = "correct horse battery staple"


def ready_model(kubectl, name: str, triton) -> None:
    """A Model and the status the operator would give it (no operator runs here)."""
    kubectl.apply({"apiVersion": "conch.dev/v1alpha1", "kind": "Model", "metadata": {"name": name},
                   "spec": {"runtime": "external", "promptFamily": "chatml",
                            "external": {"url": triton.url, "tritonModel": "echo"}}})
    status = {"status": {"phase": "Ready", "endpoint": triton.url, "tritonModel": "echo", "interface": "ensemble",
                         "conditions": [{"type": "Ready", "status": "True", "reason": "Test"}]}}
    kubectl("patch", "model", name, "--subresource=status", "--type=merge", "-p", yaml.safe_dump(status))


def cli(*args: str, stdin: str | None = None) -> tuple[str, str]:
    """`python -m conch_gateway.auth …`: (the manifest it prints, what it says on stderr)."""
    done = subprocess.run([sys.executable, "-m", "conch_gateway.auth", *args], cwd=REPO_ROOT, input=stdin,
                          capture_output=True, text=True, check=True, timeout=60)
    return done.stdout, done.stderr


@pytest.fixture
def gateway(cluster, namespace, kubectl, tmp_path, triton) -> Iterator[GatewayProcess]:
    ready_model(kubectl, "echo", triton)
    ready_model(kubectl, "other", triton)
    process = GatewayProcess(cluster, namespace, tmp_path)
    process.env.update({"CONCH_AUTH": "on", "CONCH_AUTH_NAMESPACE": namespace, "CONCH_AUTH_REVIEW_CACHE_S": "5"})
    process.start()
    admin_manifest, said = cli("key", "ops", "--role", "admin")
    kubectl("apply", "-f", "-", input=admin_manifest)
    process.admin = said.rsplit(": ", 1)[1].strip()  # type: ignore[attr-defined]
    wait_until(lambda: len(ids(process, process.admin)) == 2, 30, message="gateway routes both Models")
    yield process
    process.stop()


def generate(gateway, credential: str, model: str = "echo") -> httpx.Response:
    return httpx.post(f"{gateway.url}/v1/generate", headers=bearer(credential), timeout=30,
                      json={"model_id": model, "inputs": "one two", "parameters": {"max_new_tokens": 4}})


def ids(gateway, credential: str) -> list[str]:
    return [m["id"] for m in httpx.get(f"{gateway.url}/v1/models", headers=bearer(credential)).json()["data"]]


def within_a_second(check, message: str) -> None:
    started = time.monotonic()
    wait_until(check, 10, interval=0.02, message=message)
    assert time.monotonic() - started < 1.0, message


def test_api_key_secrets_created_changed_and_revoked_with_kubectl_count_at_once(kubectl, gateway):
    manifest, said = cli("key", "alice", "--models", "echo", "--requests-per-minute", "100")
    key = said.rsplit(": ", 1)[1].strip()
    secret = yaml.safe_load(manifest)
    assert key not in manifest and secret["stringData"]["sha256"]  # only the hash is kept
    assert generate(gateway, key).status_code == 401
    kubectl("apply", "-f", "-", input=manifest)
    within_a_second(lambda: generate(gateway, key).status_code == 200, "new key accepted")
    assert generate(gateway, key).headers["x-ratelimit-limit"] == "100"
    assert generate(gateway, key, "other").status_code == 403 and ids(gateway, key) == ["echo"]
    kubectl("annotate", "secret", "alice", "conch.dev/models=other", "--overwrite")
    within_a_second(lambda: generate(gateway, key, "other").status_code == 200, "annotation changes what it may use")
    kubectl("delete", "secret", "alice", "--wait=false")
    within_a_second(lambda: generate(gateway, key).status_code == 401, "deleted key refused")
    assert generate(gateway, gateway.admin).status_code == 200


def test_a_service_account_token_is_allowed_by_a_role_binding_and_refused_without(kubectl, gateway):
    kubectl("create", "serviceaccount", "bot")
    token = kubectl("create", "token", "bot", "--audience", "conch", "--duration", "10m").stdout.strip()
    refused = generate(gateway, token)
    assert refused.status_code == 403 and refused.json()["error_code"] == "AUTHORIZATION_FAILED"
    assert f"system:serviceaccount:{kubectl.namespace}:bot" in refused.json()["error"]["message"]
    assert ids(gateway, token) == []
    kubectl.apply(
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "invoke-echo"},
         "rules": [{"apiGroups": ["conch.dev"], "resources": ["models"], "resourceNames": ["echo"],
                    "verbs": ["invoke"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "bot-echo"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "invoke-echo"},
         "subjects": [{"kind": "ServiceAccount", "name": "bot", "namespace": kubectl.namespace}]})
    wait_until(lambda: generate(gateway, token).status_code == 200, 10, interval=0.2, message="RoleBinding counts")
    assert generate(gateway, token, "other").status_code == 403
    assert ids(gateway, token) == ["echo"]
    # A token made for the API server (its default audience) is not one for the gateway.
    api_token = kubectl("create", "token", "bot", "--duration", "10m").stdout.strip()
    assert generate(gateway, api_token).json()["error_code"] == "AUTHENTICATION_FAILED"
    # Nor is a forged one.
    forged = jwt.encode({"iss": "https://kubernetes.default.svc.cluster.local", "aud": "conch",
                         "sub": f"system:serviceaccount:{kubectl.namespace}:bot"}, "k" * 32, algorithm="HS256")
    assert generate(gateway, forged).status_code == 401


def test_users_log_in_and_signing_keys_rotate_without_downtime(kubectl, gateway):
    kubectl("apply", "-f", "-", input=cli("user", "bob", "--models", "echo", stdin=PASSWORD + "\n")[0])
    kubectl("apply", "-f", "-", input=cli("signing-key", "jwt-1")[0])

    def login():
        return httpx.post(f"{gateway.url}/api/auth/token", json={"username": "bob", "password": PASSWORD})

    wait_until(lambda: login().status_code == 200, 10, interval=0.1, message="user and signing key loaded")
    old = login().json()["access_token"]
    assert jwt.get_unverified_header(old)["kid"] == "jwt-1" and generate(gateway, old).status_code == 200
    time.sleep(1.1)  # creationTimestamp has one-second resolution: the newer key must be newer
    kubectl("apply", "-f", "-", input=cli("signing-key", "jwt-2")[0])
    wait_until(lambda: jwt.get_unverified_header(login().json()["access_token"])["kid"] == "jwt-2", 10, interval=0.1,
               message="the newest key signs")
    new = login().json()["access_token"]
    assert generate(gateway, old).status_code == 200 and generate(gateway, new).status_code == 200  # both valid
    kubectl("delete", "secret", "jwt-1", "--wait=false")
    within_a_second(lambda: generate(gateway, old).status_code == 401, "retired key's tokens refused")
    assert generate(gateway, new).status_code == 200
    kubectl("delete", "secret", "user-bob", "--wait=false")
    within_a_second(lambda: generate(gateway, new).status_code == 401, "deleted user's tokens refused")
