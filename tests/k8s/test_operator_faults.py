"""The operator under faults of the API server it depends on, against the real control plane:
writes the API server refuses (validation, quota admission), and kube-apiserver going away and
coming back (stopped, then started again with the same flags and the same etcd)."""

from __future__ import annotations

import re
import signal
import time
from contextlib import contextmanager
from typing import Iterator

import httpx
import pytest

from support.k8s import Operator, condition, model_manifest, wait_until

pytestmark = pytest.mark.k8s

OUTAGE_S = 6  # long enough for every watch and the failing reconcile to back off several times
# int-or-string in the CRD, so the Model is stored: only the API server's decoding of the Deployment refuses it.
INVALID_QUANTITY = {"requests": {"cpu": "1", "memory": "lots"}}


def ready(kubectl, name: str, replicas: int = 1, timeout: float = 30) -> dict:
    def check():
        model = kubectl.model(name)
        status = (model or {}).get("status", {})
        return model if (status.get("phase") == "Ready" and status.get("readyReplicas") == replicas
                         and status.get("observedGeneration") == model["metadata"]["generation"]) else None

    return wait_until(check, timeout, message=f"Model {name} Ready with {replicas} replicas")


def refused(kubectl, name: str, condition_type: str = "Degraded") -> dict:
    def check():
        model = kubectl.model(name)
        cond = condition(model, condition_type)
        return model if cond and cond["reason"] == "ApplyRejected" else None

    return wait_until(check, 30, message=f"Model {name}: {condition_type} reason ApplyRejected")


def rejection_events(kubectl, name: str) -> list[dict]:
    events = kubectl.get("events") or []
    return [e for e in events if e["involvedObject"].get("name") == name and e["involvedObject"].get("kind") == "Model"
            and e["reason"] == "ApplyRejected"]


def rejected_writes(operator: Operator) -> float:
    text = httpx.get(f"http://127.0.0.1:{operator.metrics_port}/metrics").text
    found = re.search(r"^conch_operator_rejected_writes_total ([0-9.e+]+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def test_invalid_quantity_is_shown_once_and_not_retried_until_the_spec_changes(kubectl, operator):
    # The CRD lets the value through (the Model is stored); the API server refuses the Deployment.
    kubectl.apply(model_manifest("m", resources=INVALID_QUANTITY))
    model = refused(kubectl, "m", "Ready")
    ready_cond, degraded = condition(model, "Ready"), condition(model, "Degraded")
    assert ready_cond["status"] == "False" and degraded["status"] == "True" and degraded["reason"] == "ApplyRejected"
    assert model["status"]["phase"] == "Degraded"
    for message in (ready_cond["message"], degraded["message"]):
        # 400: the API server cannot even decode such a Deployment.
        assert "cannot be handled as a Deployment: quantities must match" in message
        assert "at once when the spec changes" in message
    assert kubectl.get("deployment", "m-triton") is None

    events = wait_until(lambda: rejection_events(kubectl, "m"), 10, message="ApplyRejected Event")
    assert events[0]["type"] == "Warning" and "quantities must match" in events[0]["message"]
    assert events[0]["involvedObject"]["uid"] == model["metadata"]["uid"]

    # Resyncs (every 5 s here), status events and probes pass; none sends the refused write again.
    time.sleep(7)
    assert len(rejection_events(kubectl, "m")) == 1
    assert rejected_writes(operator) == 1
    assert condition(kubectl.model("m"), "Degraded")["reason"] == "ApplyRejected"

    # A new spec is tried at once and clears the condition.
    kubectl.apply(model_manifest("m", resources={"requests": {"cpu": "1", "memory": "1Gi"}}))
    model = ready(kubectl, "m")
    assert condition(model, "Degraded")["status"] == "False" and condition(model, "Ready")["reason"] == "ReplicasReady"
    assert kubectl.get("deployment", "m-triton")["spec"]["template"]["spec"]["containers"][0]["resources"] == {
        "requests": {"cpu": "1", "memory": "1Gi"}}
    assert "Traceback" not in operator.log()


def test_refused_spec_change_leaves_the_serving_objects_alone(kubectl, operator):
    kubectl.apply(model_manifest("m"))
    ready(kubectl, "m")
    config_before = kubectl.get("configmap", "m-triton-repository")["data"]
    template_before = kubectl.get("deployment", "m-triton")["spec"]["template"]

    # A request above its limit is valid syntax (no schema can tell); the API server refuses it. The
    # same change also alters the ConfigMap, which must not be written without its Deployment.
    kubectl.apply(model_manifest("m", engine={"maxSeqLen": 8192},
                                 resources={"requests": {"cpu": "4"}, "limits": {"cpu": "2"}}))
    model = refused(kubectl, "m")
    assert "must be less than or equal to cpu limit" in condition(model, "Degraded")["message"]
    # The earlier spec's Triton keeps serving, and the gateway keeps routing to it.
    assert condition(model, "Ready")["status"] == "True" and model["status"]["readyReplicas"] == 1
    assert len(wait_until(lambda: rejection_events(kubectl, "m"), 10)) == 1
    assert kubectl.get("configmap", "m-triton-repository")["data"] == config_before
    assert kubectl.get("deployment", "m-triton")["spec"]["template"] == template_before

    kubectl.apply(model_manifest("m", engine={"maxSeqLen": 8192}, resources={"limits": {"cpu": "2"}}))
    model = ready(kubectl, "m")
    assert condition(model, "Degraded")["status"] == "False"
    assert "8192" in kubectl.get("configmap", "m-triton-repository")["data"]["m__config.pbtxt"]


def test_quota_refusal_is_retried_with_backoff_and_converges_once_lifted(cluster, kubectl, namespace, tmp_path):
    """An admission refusal (a ResourceQuota) can end without a spec change: tried again after a
    back-off that doubles (2 s, 4 s here), so the Model converges once the quota is lifted."""
    kubectl.apply({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "no-deployments"},
                   "spec": {"hard": {"count/deployments.apps": "0"}}})
    wait_until(lambda: (kubectl.get("resourcequota", "no-deployments").get("status") or {}).get("hard"), 30,
               message="quota observed by the quota controller")
    operator = Operator(cluster, namespace, tmp_path, rejected_retry_base_s=2, rejected_retry_cap_s=4).start()
    try:
        kubectl.apply(model_manifest("m"))
        model = refused(kubectl, "m", "Ready")
        assert "exceeded quota: no-deployments" in condition(model, "Ready")["message"]
        first = time.monotonic()
        time.sleep(5)
        # Attempts at 0, 2 and 6 s: never the event-driven or resync-driven storm.
        attempts = len(rejection_events(kubectl, "m"))
        assert 2 <= attempts <= 3, attempts
        kubectl("delete", "resourcequota", "no-deployments")
        ready(kubectl, "m")
        assert time.monotonic() - first < 25
        assert condition(kubectl.model("m"), "Degraded")["status"] == "False"
    finally:
        operator.stop()


# ---------------------------------------------------------------- kube-apiserver restarts


def _apiserver_answers(cluster) -> bool:
    try:
        return cluster._apiserver_ready()
    except OSError:
        return False


@contextmanager
def apiserver_down(cluster) -> Iterator[None]:
    """kube-apiserver stopped (SIGTERM, as an upgrade or a node drain does) for the body of the
    block, then started again with the same flags against the same etcd — ControlPlane's own
    restart_apiserver, with time in between for clients to notice."""
    old = cluster.components["kube-apiserver"]
    old.signal(signal.SIGTERM)
    if not old.wait(cluster.stop_timeout):
        old.signal(signal.SIGKILL)
        old.wait(5)
    try:
        yield
    finally:
        cluster._spawn("kube-apiserver")
        wait_until(lambda: _apiserver_answers(cluster), 60, interval=0.2, message="kube-apiserver ready again")


@pytest.fixture
def quiet_operator(cluster, namespace, tmp_path) -> Iterator[Operator]:
    """No resync within a test (the default is 5 s here): convergence must come from the watches
    and the retries, as in production, where a resync runs every 5 minutes."""
    running = Operator(cluster, namespace, tmp_path, resync_interval_s=600).start()
    yield running
    running.stop()


def test_operator_converges_across_an_apiserver_restart(cluster, kubectl, quiet_operator):
    operator = quiet_operator
    kubectl.apply(model_manifest("before"))
    ready(kubectl, "before")
    # Applied just before the API server goes: its reconcile runs into the outage.
    kubectl.apply(model_manifest("racing", replicas=2))
    with apiserver_down(cluster):
        time.sleep(OUTAGE_S)  # watches broken, no answers: the operator retries, backing off
        assert operator.process.poll() is None
    restarted = time.monotonic()
    # Changes right after the restart, while the operator's watches reconnect.
    kubectl.apply(model_manifest("after"))
    kubectl("scale", "model", "before", "--replicas=2")

    def applied():  # the operator's part; pods becoming Ready is the controllers' and kwok's
        deployments = {d["metadata"]["name"]: d["spec"]["replicas"] for d in kubectl.get("deployments")}
        return deployments == {"before-triton": 2, "racing-triton": 2, "after-triton": 1}

    def replicas_ready():  # the controllers' part (their watches reconnect on their own schedule)
        return all((d.get("status") or {}).get("readyReplicas") == d["spec"]["replicas"]
                   for d in kubectl.get("deployments"))

    wait_until(applied, 30, interval=0.2, message="Deployments applied after the restart")
    applied_after = time.monotonic() - restarted
    wait_until(replicas_ready, 45, interval=0.2, message="replicas ready after the restart")
    replicas_after = time.monotonic() - restarted
    for name, replicas in (("racing", 2), ("after", 1), ("before", 2)):
        ready(kubectl, name, replicas, timeout=30)
    reported_after = time.monotonic() - restarted
    print(f"after kube-apiserver was back: objects applied in {applied_after:.1f}s, replicas ready in "
          f"{replicas_after:.1f}s, Models Ready in {reported_after:.1f}s")
    # The operator's parts: applying, and reporting what the Deployments show.
    assert applied_after < 10 and reported_after - replicas_after < 5, (applied_after, replicas_after, reported_after)
    assert operator.process.poll() is None
    # No watcher of kopf died on the way (it would never come back).
    assert "has failed" not in operator.log(), operator.log()[-3000:]
