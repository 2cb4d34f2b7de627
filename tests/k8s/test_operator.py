"""The operator against the real API server: owned objects, status, scaling, rollouts, garbage
collection, impossible specs, restarts. kwok plays the kubelet, so pods become Ready without
running anything."""

from __future__ import annotations

import time

import httpx
import pytest

from support.k8s import condition, model_manifest, wait_until

pytestmark = pytest.mark.k8s


def ready(kubectl, name: str, replicas: int = 1):
    def check():
        model = kubectl.model(name)
        status = (model or {}).get("status", {})
        return model if status.get("phase") == "Ready" and status.get("readyReplicas") == replicas else None

    return wait_until(check, 30, message=f"Model {name} Ready with {replicas} replicas")


def test_owned_objects_are_rendered(kubectl, operator, namespace):
    kubectl.apply(model_manifest("smollm2", promptFamily="chatml", engine={"maxSeqLen": 2048, "maxInputLen": 1024},
                                 resources={"requests": {"cpu": "2", "memory": "1Gi"}, "limits": {"cpu": "2"}}))
    model = ready(kubectl, "smollm2")
    uid = model["metadata"]["uid"]

    deployment = kubectl.get("deployment", "smollm2-triton")
    service = kubectl.get("service", "smollm2-triton")
    config_map = kubectl.get("configmap", "smollm2-triton-repository")
    for obj in (deployment, service, config_map):
        owner = obj["metadata"]["ownerReferences"][0]
        assert owner["uid"] == uid and owner["kind"] == "Model" and owner["controller"] is True
        assert obj["metadata"]["labels"]["conch.dev/model"] == "smollm2"

    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert [p["containerPort"] for p in container["ports"]] == [8000, 8001, 8002]
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert container["startupProbe"]["failureThreshold"] * container["startupProbe"]["periodSeconds"] >= 300
    assert {"name": "dshm", "mountPath": "/dev/shm"} in container["volumeMounts"]
    assert any(v["name"] == "dshm" and v["emptyDir"]["medium"] == "Memory" for v in pod["volumes"])
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["resources"]["limits"]["cpu"] == "2"
    assert [p["port"] for p in service["spec"]["ports"]] == [8000, 8001, 8002]

    from conch_engines.repository import parse_config

    config = parse_config(config_map["data"]["smollm2__config.pbtxt"])
    assert config.model_transaction_policy.decoupled
    assert config.parameters["gguf_path"].string_value == "/models/smollm2.gguf"
    assert config.parameters["n_ctx"].string_value == "2048" and config.parameters["n_threads"].string_value == "2"

    status = model["status"]
    assert status["endpoint"] == f"http://smollm2-triton.{namespace}.svc:8000"
    assert status["grpcAddress"] == f"smollm2-triton.{namespace}.svc:8001"  # where the gateway streams from
    assert status["tritonModel"] == "smollm2" and status["interface"] == "ensemble"
    assert status["observedGeneration"] == model["metadata"]["generation"]
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "Ready": "True", "Available": "True", "EngineReady": "True", "Degraded": "False"}


def test_status_follows_pod_readiness(kubectl, operator):
    kubectl.apply(model_manifest("m", replicas=2))
    model = ready(kubectl, "m", replicas=2)
    assert condition(model, "Ready")["message"] == "2/2 replicas ready"
    table = kubectl("get", "mdl", "m").stdout.splitlines()[1].split()
    assert table[3:6] == ["2", "2", "Ready"]


def test_kubectl_scale(kubectl, operator):
    kubectl.apply(model_manifest("m"))
    ready(kubectl, "m")
    kubectl("scale", "model", "m", "--replicas=3")
    ready(kubectl, "m", replicas=3)
    assert kubectl.get("deployment", "m-triton")["spec"]["replicas"] == 3
    kubectl("scale", "model", "m", "--replicas=0")
    stopped = wait_until(lambda: (m := kubectl.model("m"))["status"].get("phase") == "Stopped" and m, 30)
    assert condition(stopped, "Ready")["reason"] == "ScaledToZero"
    assert wait_until(lambda: not kubectl.get("pods", selector="conch.dev/model=m"), 30)


def test_spec_change_rolls_out(kubectl, operator):
    kubectl.apply(model_manifest("m"))
    ready(kubectl, "m")
    before = kubectl.get("deployment", "m-triton")["spec"]["template"]["metadata"]["annotations"]["conch.dev/config-hash"]
    kubectl.apply(model_manifest("m", engine={"maxSeqLen": 8192}))

    def rolled():
        deployment = kubectl.get("deployment", "m-triton")
        annotation = deployment["spec"]["template"]["metadata"]["annotations"]["conch.dev/config-hash"]
        status = deployment.get("status", {})
        done = status.get("updatedReplicas") == 1 and status.get("readyReplicas") == 1 and status.get("replicas") == 1
        return annotation != before and done

    wait_until(rolled, 30, message="rollout to the new config")
    assert "8192" in kubectl.get("configmap", "m-triton-repository")["data"]["m__config.pbtxt"]
    assert len(kubectl.get("replicasets", selector="conch.dev/model=m")) == 2
    model = ready(kubectl, "m")
    assert model["status"]["observedGeneration"] == model["metadata"]["generation"] == 2


def test_delete_collects_everything(kubectl, operator):
    kubectl.apply(model_manifest("m"))
    ready(kubectl, "m")
    kubectl("delete", "model", "m", "--wait=true", "--timeout=30s")
    for kind in ("deployment", "service", "configmap", "pods"):
        wait_until(lambda: not kubectl.get(kind, selector="conch.dev/model=m"), 30, message=f"{kind} collected")


def test_unschedulable_spec_is_degraded_not_crashing(kubectl, operator):
    kubectl.apply(model_manifest("m", nodeSelector={"pool": "does-not-exist"}))

    def degraded():
        model = kubectl.model("m")
        cond = condition(model, "Degraded")
        return model if cond and cond["status"] == "True" else None

    model = wait_until(degraded, 30, message="Degraded condition")
    cond = condition(model, "Degraded")
    assert cond["reason"] == "Unschedulable"
    assert "didn't match Pod's node affinity/selector" in cond["message"]
    assert model["status"]["phase"] == "Degraded" and condition(model, "Ready")["status"] == "False"
    # Fixing the spec recovers.
    kubectl.apply(model_manifest("m"))
    ready(kubectl, "m")
    assert condition(kubectl.model("m"), "Degraded")["status"] == "False"


def test_missing_volume_claim_is_degraded(kubectl, operator):
    kubectl.apply(model_manifest("m", source={"pvc": {"claimName": "weights", "path": "smollm2.gguf"}}))

    def degraded():
        cond = condition(kubectl.model("m"), "Degraded")
        return cond if cond and cond["reason"] == "SourceNotFound" else None

    cond = wait_until(degraded, 30, message="SourceNotFound")
    assert "PersistentVolumeClaim 'weights'" in cond["message"]


def test_tensorrt_llm_without_engine_storage_gets_a_clear_condition(kubectl, operator):
    """No volume for the engine cache claim: the build waits, and says why (the whole tensorrt-llm
    flow is in test_trtllm_operator.py)."""
    kubectl.apply(model_manifest("trt", runtime="tensorrt-llm", gpu={"count": 1}, quantization="int4_awq",
                                 source={"huggingFace": {"repoId": "meta-llama/Llama-3.1-8B-Instruct"}}))

    def waiting():
        cond = condition(kubectl.model("trt"), "EngineReady")
        return cond if cond and "is not bound yet" in cond["message"] else None

    cond = wait_until(waiting, 30, message="EngineReady explains the unbound engine cache claim")
    assert cond["status"] == "False" and cond["reason"] == "BuildPending"
    assert kubectl.model("trt")["status"]["phase"] == "Building"
    assert "Traceback" not in operator.log()


def test_external_model_is_probed(kubectl, operator, echo_triton):
    kubectl.apply(model_manifest("ext", runtime="external", external={"url": echo_triton.url, "tritonModel": "echo"}))
    model = ready(kubectl, "ext")
    assert model["status"]["endpoint"] == echo_triton.url
    kubectl.apply(model_manifest("gone", runtime="external",
                                 external={"url": echo_triton.url, "tritonModel": "no-such-model"}))
    cond = wait_until(lambda: condition(kubectl.model("gone"), "Degraded"), 30)
    assert cond["status"] == "True" and "does not serve model 'no-such-model'" in cond["message"]


def test_restart_mid_reconcile_converges(kubectl, operator, namespace):
    names = [f"m{i}" for i in range(20)]
    kubectl.apply(*(model_manifest(n) for n in names))
    time.sleep(0.3)
    operator.kill()  # mid-reconcile: some Models have objects, some not, statuses half written
    operator.start()
    for name in names:
        ready(kubectl, name)
    deployments = kubectl.get("deployments")
    assert sorted(d["metadata"]["name"] for d in deployments) == sorted(f"{n}-triton" for n in names)
    assert len(kubectl.get("services")) == 20
    assert len(kubectl.get("configmaps", selector="conch.dev/model")) == 20
    assert len(kubectl.get("pods", selector="conch.dev/model")) == 20


def test_operator_metrics(kubectl, operator):
    kubectl.apply(model_manifest("m"))
    ready(kubectl, "m")
    text = httpx.get(f"http://127.0.0.1:{operator.metrics_port}/metrics").text
    assert 'conch_operator_reconciles_total{result="ok",trigger="apply"}' in text
    assert 'conch_operator_reconciles_total{result="ok",trigger="status"}' in text
    assert "conch_operator_queue_depth" in text
    assert "conch_operator_reconcile_duration_seconds_bucket" in text
