"""The management API as the chart deploys it (its own Deployment and ServiceAccount), on the real
node, over HTTP through the ingress with the admin key the chart generated: a Model created and
scaled to two replicas through the API turns into two real Triton pods, the paged list reports it
running, and its logs are both pods' lines merged by time (`<pod> <line>`), following both at once.

Then seed 003's cURL walkthrough as the seed writes it (tests/support/seed003.py): a user made with
`python -m conch_gateway.auth user` and `kubectl apply`, a token from /api/auth/token, create → start →
generate with the real curl through the ingress, while a /ws/monitor client (on the same token)
sees the model's replicas become ready one by one.

The logs need real pods — kwok's have none — so this is the end-to-end half of what
tests/unit/gateway/management/test_logmerge.py checks as a pure function. It reuses the release of
tests/e2e/test_real_pods.py (a module of its own here, so a release of its own). The management API
manages Models of the release's namespace (the chart's default), so the Model lives there rather
than in the `models` namespace those tests apply examples to."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import threading
import time
from datetime import datetime

import httpx
import pytest
from websockets.sync.client import connect

from support import seed003
from support.k8s import wait_until

from .test_real_pods import api_key, http, is_ready, release  # noqa: F401 (fixtures of that module)

# The first test of a module also starts the cluster and installs the chart (helm may wait 360 s).
pytestmark = [pytest.mark.k8s, pytest.mark.timeout(1200)]
NAME = "managed-smollm2"
GGUF = "/models/SmolLM2-135M-Instruct.Q4_1.gguf"  # in the CPU Triton image (examples/smollm2-cpu.yaml)
SELECTOR = f"conch.dev/model={NAME},app.kubernetes.io/component=triton"


def _stamp(line: str) -> tuple[float, int]:
    """kubectl's RFC 3339 stamp as (seconds, nanoseconds): trailing zeros are trimmed, so not text."""
    stamp = line.split(" ", 1)[0]
    whole, _, fraction = stamp.rstrip("Z").partition(".")
    return datetime.fromisoformat(whole + "+00:00").timestamp(), int(fraction.ljust(9, "0"))


def _expected(e2e_cluster, namespace: str, pods: list[str], tail: int) -> list[str]:
    """What the merge must give, from `kubectl logs --timestamps` of each pod: sorted by stamp, a tie
    in pod-name order, each pod's own order kept."""
    entries = []
    for rank, pod in enumerate(sorted(pods)):
        lines = e2e_cluster.kubectl("-n", namespace, "logs", pod, "-c", "triton", "--timestamps",
                                    f"--tail={tail}").stdout.split("\n")[:-1]  # lines end in \n
        entries += [(_stamp(line), rank, index, f"{pod} {line.split(' ', 1)[1] if ' ' in line else ''}")
                    for index, line in enumerate(lines)]
    return [text for *_, text in sorted(entries)]


def test_the_management_api_runs_a_model_and_merges_its_pods_logs(e2e_cluster, release, http):
    namespace = release["namespace"]
    body = {"name": NAME, "framework": "llama.cpp", "description": "created through the ingress",
            "config": {"model_path": GGUF, "n_ctx": 2048}, "resource_requirements": {"cpu_cores": 0.5}}
    try:
        created = http.post("/api/models", json=body)
        assert created.status_code == 201, created.text  # the management Deployment answered, not the gateway
        scaled = http.post("/modify_cluster_state", json={"model": NAME, "replicas": 2})
        assert scaled.status_code == 200, scaled.text

        def ready_pods() -> list[str]:
            return sorted(p["metadata"]["name"] for p in e2e_cluster.get("pods", "-n", namespace, "-l", SELECTOR)["items"]
                          if is_ready(p) and not p["metadata"].get("deletionTimestamp"))

        def running() -> bool:
            item = http.get(f"/api/models/{NAME}").json()
            return item.get("status") == "running" and item["health"] == "healthy" and len(ready_pods()) == 2

        wait_until(running, 240, interval=2, message="two replicas running, as the management API reports")
        listed = http.get("/api/models", params={"status": "running", "size": 100}).json()
        assert NAME in [i["id"] for i in listed["items"]]
        model = e2e_cluster.get("model", NAME, "-n", namespace)
        assert model["spec"]["replicas"] == 2 and model["spec"]["source"] == {"file": {"path": GGUF}}

        pods = ready_pods()
        assert len(pods) == 2 and http.get(f"/api/models/{NAME}").json()["resource_usage"]["replicas"] == 2

        # tail per pod, both pods merged by time; a line logged between the two reads would differ,
        # so compare until a quiet moment gives the same answer.
        def merged_as_kubectl_says() -> bool:
            answer = http.get(f"/api/models/{NAME}/logs", params={"tail": 8})
            assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain"), answer.text
            return answer.text.split("\n")[:-1] == _expected(e2e_cluster, namespace, pods, 8)

        wait_until(merged_as_kubectl_says, 60, interval=2, message="the merged logs equal kubectl's, by time")
        lines = http.get(f"/api/models/{NAME}/logs", params={"tail": 8}).text.splitlines()
        assert {line.split(" ", 1)[0] for line in lines} == set(pods) and len(lines) == 16

        # follow: every pod's stream at once (each pod's last line arrives, not only the first pod's).
        seen: list[str] = []
        started = time.monotonic()
        with http.stream("GET", f"/api/models/{NAME}/logs", params={"tail": 1, "follow": "true"},
                         timeout=60) as stream:
            assert stream.status_code == 200
            for line in stream.iter_lines():
                seen.append(line)
                if {s.split(" ", 1)[0] for s in seen} == set(pods) or time.monotonic() - started > 30:
                    break
        assert {s.split(" ", 1)[0] for s in seen} == set(pods), seen
        assert time.monotonic() - started < 30

        missing = http.get("/api/models/no-such-model/logs")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "MODEL_NOT_FOUND"
    finally:
        deleted = http.delete(f"/api/models/{NAME}")
        assert deleted.status_code in (204, 404), deleted.text
        wait_until(lambda: not e2e_cluster.get("pods", "-n", namespace, "-l", SELECTOR)["items"], 120, interval=1,
                   message="the Model's pods gone")
    assert http.get("/api/models", params={"size": 100}).json()["total"] == 0


class StatusEvents:
    """A /ws/monitor client, subscribed to model_status_update, collecting events in a thread."""

    def __init__(self, url: str, token: str) -> None:
        self.ws = connect(url.replace("http", "ws", 1) + "/ws/monitor", open_timeout=30,
                          additional_headers={"Authorization": f"Bearer {token}"}).__enter__()  # closed by close()
        self.ws.send(json.dumps({"action": "subscribe", "events": ["model_status"]}))
        assert json.loads(self.ws.recv(timeout=30))["type"] == "subscribed"
        self.events: list[dict] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        try:
            for message in self.ws:
                event = json.loads(message)
                if event["type"] == "model_status_update":
                    self.events.append(event["data"])
        except Exception:  # closed by the test
            pass

    def of(self, model_id: str) -> list[dict]:
        return [e for e in list(self.events) if e["model_id"] == model_id]

    def close(self) -> None:
        self.ws.close()
        self._reader.join(10)


def test_seed_003_walkthrough_with_a_token_and_replicas_ready_on_the_websocket(e2e_cluster, release):
    namespace = release["namespace"]
    # A user with a password, made the way docs/auth.md says: the CLI prints a Secret, kubectl applies it.
    username, password = "walker", secrets.token_urlsafe(18)
    user = subprocess.run([sys.executable, "-m", "conch_gateway.auth", "user", username, "--role", "admin"],
                          input=password + "\n", capture_output=True, text=True, check=True)
    assert password not in user.stdout  # only its argon2 hash is kept
    e2e_cluster.kubectl("apply", "-n", namespace, "-f", "-", input=user.stdout)
    url = e2e_cluster.ingress_url

    def token() -> str | None:  # every gateway replica watches the Secrets: the user works within seconds
        answer = httpx.post(f"{url}/api/auth/token", json={"username": username, "password": password}, timeout=30)
        return answer.json()["access_token"] if answer.status_code == 200 else None

    wait_until(token, 30, interval=0.5, message="the new user gets a token")
    events = StatusEvents(url, token())
    name = seed003.SEED_MODEL_NAME
    headers = {"Authorization": f"Bearer {token()}"}

    def running(model_id: str) -> None:
        def is_running() -> bool:
            item = httpx.get(f"{url}/api/models/{model_id}", headers=headers, timeout=30).json()
            return item["status"] == "running" and item["health"] == "healthy"
        wait_until(is_running, 300, interval=2, message="the walkthrough's model running")

    try:
        walked = seed003.walk(url, username, password, GGUF, before_generate=running)
        assert walked.created["id"] == name and walked.started["status"] == "starting"
        assert walked.generated["model"] == name and walked.generated["choices"][0]["text"], walked.generated
        model = e2e_cluster.get("model", name, "-n", namespace)
        assert model["spec"]["source"] == {"file": {"path": GGUF}} and model["spec"]["engine"]["maxSeqLen"] == 2048

        # The replica count seen on the socket: asked for first, then each replica ready as the
        # operator reports it (the Model's status.readyReplicas), 0 → 1.
        wait_until(lambda: any(e["ready_replicas"] == 1 and e["status"] == "running" for e in events.of(name)),
                   30, interval=0.5, message="a model_status_update with the ready replica")
        seen = events.of(name)
        assert seen[0]["replicas"] == 1 and seen[0]["ready_replicas"] == 0, seen
        assert [e["ready_replicas"] for e in seen] == sorted(e["ready_replicas"] for e in seen), seen
    finally:
        events.close()
        httpx.delete(f"{url}/api/models/{name}", headers=headers, timeout=30)
        e2e_cluster.kubectl("delete", "secret", "-n", namespace, username, check=False)
        wait_until(lambda: not e2e_cluster.get("pods", "-n", namespace, "-l", f"conch.dev/model={name}")["items"],
                   120, interval=1, message="the walkthrough model's pods gone")
