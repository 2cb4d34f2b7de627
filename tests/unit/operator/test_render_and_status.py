"""The operator's pure parts: rendering a Model into manifests and judging its status."""

from __future__ import annotations

import re

from conch_api import Model
from conch_operator import render
from conch_operator.settings import OperatorSettings
from conch_operator.status import Observed, compute_status

SETTINGS = OperatorSettings()


def model(**spec) -> Model:
    spec.setdefault("runtime", "llama-cpp")
    if spec["runtime"] == "llama-cpp":
        spec.setdefault("source", {"file": {"path": "/m/x.gguf"}})
    return Model.model_validate({"metadata": {"name": "m", "namespace": "ns", "uid": "u-1", "generation": 3},
                                 "spec": spec})


def by_kind(objects):
    return {o["kind"]: o for o in objects}


def test_llama_cpp_renders_configmap_deployment_service():
    objects = by_kind(render.desired_objects(model(replicas=2), SETTINGS))
    assert set(objects) == {"ConfigMap", "Deployment", "Service"}
    deployment = objects["Deployment"]
    assert deployment["metadata"]["name"] == "m-triton" and deployment["spec"]["replicas"] == 2
    assert deployment["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert deployment["spec"]["selector"]["matchLabels"] == {"conch.dev/model": "m", "app.kubernetes.io/component": "triton"}
    items = deployment["spec"]["template"]["spec"]["volumes"][0]["configMap"]["items"]
    assert {i["path"] for i in items} == {"m/config.pbtxt", "m/1/model.py"}
    assert set(objects["ConfigMap"]["data"]) == {i["key"] for i in items}


def test_rendering_is_deterministic():
    assert render.desired_objects(model(), SETTINGS) == render.desired_objects(model(), SETTINGS)


def test_config_change_changes_the_pod_template():
    a = by_kind(render.desired_objects(model(), SETTINGS))["Deployment"]
    b = by_kind(render.desired_objects(model(engine={"maxSeqLen": 8192, "maxInputLen": 1024}), SETTINGS))["Deployment"]
    hash_of = lambda d: d["spec"]["template"]["metadata"]["annotations"]["conch.dev/config-hash"]  # noqa: E731
    assert hash_of(a) != hash_of(b)


def test_llama_cpp_options_reach_the_triton_model_config():
    def parameters(**spec) -> dict[str, str]:
        config = by_kind(render.desired_objects(model(**spec), SETTINGS))["ConfigMap"]["data"]["m__config.pbtxt"]
        found = re.findall(r'key: "(\w+)"\s+value \{\s+string_value: "([^"]*)"', config)
        return dict(found)

    defaults = parameters()
    assert (defaults["slots"], defaults["max_queue"], defaults["prefix_cache"], defaults["batch_invariant"]) == \
        ("8", "64", "true", "false")
    tuned = parameters(engine={"maxBatchSize": 3}, llamaCpp={"maxQueue": 5, "prefixCache": False, "batchInvariant": True})
    assert (tuned["slots"], tuned["max_queue"], tuned["prefix_cache"], tuned["batch_invariant"]) == \
        ("3", "5", "false", "true")


def test_sources_mount_where_the_config_points():
    pvc = by_kind(render.desired_objects(model(source={"pvc": {"claimName": "w", "path": "/a/x.gguf"}}), SETTINGS))
    assert "/models/source/a/x.gguf" in pvc["ConfigMap"]["data"]["m__config.pbtxt"]
    volumes = pvc["Deployment"]["spec"]["template"]["spec"]["volumes"]
    assert {"name": "source", "persistentVolumeClaim": {"claimName": "w", "readOnly": True}} in volumes

    hf = by_kind(render.desired_objects(model(source={"huggingFace": {
        "repoId": "org/repo", "filename": "x.gguf", "tokenSecretRef": {"name": "hf", "key": "t"}}}), SETTINGS))
    init = hf["Deployment"]["spec"]["template"]["spec"]["initContainers"][0]
    assert init["command"][:4] == ["hf", "download", "org/repo", "x.gguf"]
    assert init["env"][1]["valueFrom"]["secretKeyRef"] == {"name": "hf", "key": "t"}


def test_external_owns_nothing():
    external = model(runtime="external", external={"url": "http://t:8000", "tritonModel": "e"})
    assert render.desired_objects(external, SETTINGS) == []
    assert render.endpoint(external) == "http://t:8000"
    assert render.grpc_address(external) is None  # streams fall back to HTTP generate_stream
    with_grpc = model(runtime="external", external={"url": "http://t:8000", "tritonModel": "e", "grpcAddress": "t:8001"})
    assert render.grpc_address(with_grpc) == "t:8001"


def deployment_status(ready=1, replicas=1, available=True):
    return {"status": {"replicas": replicas, "readyReplicas": ready, "availableReplicas": ready,
                       "conditions": [{"type": "Available", "status": "True" if available else "False"}]}}


def conditions(status):
    return {c.type: (c.status, c.reason) for c in status.conditions}


def test_ready_when_a_replica_is_ready():
    status = compute_status(model(), Observed(deployment=deployment_status()), "T")
    assert status.phase.value == "Ready" and status.readyReplicas == 1 and status.observedGeneration == 3
    assert conditions(status)["Ready"] == ("True", "ReplicasReady")
    assert conditions(status)["Degraded"] == ("False", "AsExpected")
    assert status.selector == "conch.dev/model=m,app.kubernetes.io/component=triton"


def test_unschedulable_pods_explain_themselves():
    message = "0/4 nodes are available: 4 Insufficient nvidia.com/gpu."
    status = compute_status(model(), Observed(deployment=deployment_status(ready=0, available=False),
                                              unschedulable=[message]), "T")
    assert status.phase.value == "Degraded"
    degraded = next(c for c in status.conditions if c.type == "Degraded")
    assert degraded.reason == "Unschedulable" and "Insufficient nvidia.com/gpu" in degraded.message


def test_scaled_to_zero_is_stopped():
    status = compute_status(model(replicas=0), Observed(deployment=deployment_status(ready=0, replicas=0)), "T")
    assert status.phase.value == "Stopped" and conditions(status)["Ready"] == ("False", "ScaledToZero")


def test_transition_time_only_moves_on_change():
    first = compute_status(model(), Observed(deployment=deployment_status(ready=0, available=False)), "T1")
    again = Model.model_validate({**model().model_dump(), "status": first.model_dump()})
    second = compute_status(again, Observed(deployment=deployment_status(ready=1)), "T2")
    times = {c.type: c.lastTransitionTime for c in second.conditions}
    assert times["Ready"] == "T2" and times["EngineReady"] == "T1"


def test_external_follows_its_probe():
    external = model(runtime="external", external={"url": "http://t:8000", "tritonModel": "e"})
    up = compute_status(external, Observed(external_ready=True, external_message="fine"), "T")
    down = compute_status(external, Observed(external_ready=False, external_message="refused"), "T")
    assert up.phase.value == "Ready" and up.endpoint == "http://t:8000" and up.tritonModel == "e"
    assert down.phase.value == "Degraded" and conditions(down)["Ready"] == ("False", "EndpointNotReady")


def test_tensorrt_llm_waits_for_its_engine():
    """More in test_operator_trtllm.py."""
    trt = model(runtime="tensorrt-llm", gpu={"count": 1}, source={"huggingFace": {"repoId": "a/b"}})
    status = compute_status(trt, Observed(), "T")
    assert status.phase.value == "Building" and conditions(status)["Ready"] == ("False", "EngineNotReady")


def test_cluster_view_tracks_deployments_and_unschedulable_pods():
    from conch_operator.view import ClusterView

    view = ClusterView()
    key = ("ns", "m")
    assert view.deployment(key) == (False, None)
    view.remember_deployment(key, {"metadata": {"name": "m-triton"}, "status": {"readyReplicas": 0}})
    view.deployment_event("MODIFIED", key, {"metadata": {"name": "m-triton"}, "spec": {"replicas": 2, "big": "x" * 1000},
                                            "status": {"readyReplicas": 1}})
    view.remember_deployment(key, {"metadata": {"name": "m-triton"}, "status": {"readyReplicas": 0}})
    known, deployment = view.deployment(key)
    assert known and deployment["status"]["readyReplicas"] == 1 and deployment["spec"] == {"replicas": 2}

    pending = {"metadata": {"name": "p1"}, "status": {"conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "no nodes"}]}}
    view.pod_event("ADDED", key, pending)
    assert view.unschedulable(key) == ["no nodes"]
    view.pod_event("MODIFIED", key, {"metadata": {"name": "p1"}, "status": {"conditions": [
        {"type": "PodScheduled", "status": "True"}]}})
    assert view.unschedulable(key) == []
    view.pod_event("ADDED", key, pending)
    view.pod_event("DELETED", key, pending)
    assert view.unschedulable(key) == []
