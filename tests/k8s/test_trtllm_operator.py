"""runtime tensorrt-llm against the real API server, controller-manager and scheduler: the engine
cache claim, the shared build Job, its success, failure and back-off, the serving objects once
the engine is ready, the pytorch backend, a restarted operator, and the example manifests.

kwok plays the kubelet: builder pods (owned by a Job) run and succeed at once, Triton pods become
Ready. There is no storage provisioner, so each test creates the PersistentVolume that the
engine cache claim binds to. A failing build is made the way a kubelet reports one: the builder
pod's status is set to Failed with the builder's termination message; the Job controller does the
rest (counts the failure, fails the Job)."""

from __future__ import annotations

import copy
import json
import time
from datetime import datetime, timezone
from typing import Iterator

import pytest
import yaml

from conch_api import Model
from conch_engines import tensorrt_llm
from conch_operator.builds import plan
from conch_operator.manifests import build_job
from support import REPO_ROOT
from support.k8s import Operator, condition, engine_cache_volume, wait_until

pytestmark = pytest.mark.k8s

QWEN_EXAMPLE = REPO_ROOT / "examples" / "qwen2-7b-instruct-gptq-int4.yaml"
LLAMA_EXAMPLE = REPO_ROOT / "examples" / "llama-3.1-8b-instruct-awq.yaml"
ENGINE_JOBS = "conch.dev/engine-key"
CLAIM = "conch-engine-cache"  # the default engine cache claim


@pytest.fixture
def engine_volume(cluster, namespace) -> Iterator[None]:
    with engine_cache_volume(cluster, namespace):
        yield


def example(path) -> dict:
    return yaml.safe_load(path.read_text())


def trt_model(name: str, **spec) -> dict:
    spec = {"runtime": "tensorrt-llm", "quantization": "int4_gptq", "gpu": {"count": 1, "product": "NVIDIA-L4"},
            "source": {"huggingFace": {"repoId": "Qwen/Qwen2-7B-Instruct-GPTQ-Int4"}}, **spec}
    return {"apiVersion": "conch.dev/v1alpha1", "kind": "Model", "metadata": {"name": name}, "spec": spec}


def engine_key(kubectl, name: str) -> str:
    model = Model.model_validate(kubectl.model(name))
    return tensorrt_llm.cache_key(tensorrt_llm.engine_inputs(model.spec))


def job_name(key: str) -> str:
    return build_job.job_name(key, CLAIM)


def build_jobs(kubectl) -> list[dict]:
    return kubectl.get("jobs", selector=ENGINE_JOBS)


def ready(kubectl, name: str, timeout: float = 60) -> dict:
    def check():
        model = kubectl.model(name)
        status = (model or {}).get("status", {})
        return model if status.get("phase") == "Ready" and status.get("readyReplicas", 0) >= 1 else None

    return wait_until(check, timeout, interval=0.3, message=f"Model {name} Ready")


def engine_condition(kubectl, name: str, reason: str, timeout: float = 30) -> dict:
    def check():
        model = kubectl.model(name)
        cond = condition(model, "EngineReady")
        return model if cond and cond["reason"] == reason else None

    return wait_until(check, timeout, interval=0.2, message=f"Model {name} EngineReady reason {reason}")


def test_engine_is_built_once_then_served_and_shared(kubectl, operator, namespace, engine_volume):
    kubectl("apply", "-f", str(QWEN_EXAMPLE))
    name = example(QWEN_EXAMPLE)["metadata"]["name"]
    key = engine_key(kubectl, name)

    # The engine cache claim, created by the operator, owned by nobody.
    claim = wait_until(lambda: kubectl.get("pvc", "conch-engine-cache"), 30, message="engine cache claim")
    assert "ownerReferences" not in claim["metadata"]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"] and claim["spec"]["resources"]["requests"]["storage"] == "200Gi"

    # One build Job, on the GPU type that will serve, running the builder for this key.
    job = wait_until(lambda: kubectl.get("job", job_name(key)), 30, message="build Job")
    assert "ownerReferences" not in job["metadata"]
    assert job["metadata"]["annotations"][build_job.CLAIM_UID_ANNOTATION] == claim["metadata"]["uid"]
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["resources"]["requests"]["nvidia.com/gpu"] == container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["nodeSelector"]["nvidia.com/gpu.product"] == "NVIDIA-L4"
    assert container["command"][:3] == ["python3", "-m", "conch_engines.tensorrt_llm.builder"]
    assert container["command"][container["command"].index("--key") + 1] == key
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert job["spec"]["activeDeadlineSeconds"] == 7200
    assert {"name": "cache", "persistentVolumeClaim": {"claimName": "conch-engine-cache"}} in pod["volumes"]

    # kwok runs the builder pod to completion: the engine is recorded, then served.
    model = ready(kubectl, name)
    status = model["status"]
    assert condition(model, "EngineReady")["reason"] == "EngineBuilt"
    assert status["engine"]["cacheKey"] == key and status["engine"]["job"] == job_name(key)
    assert status["engine"]["path"] == f"engines/{key}/engine"
    assert status["tritonModel"] == "ensemble" and status["interface"] == "ensemble"
    assert status["endpoint"] == f"http://{name}-triton.{namespace}.svc:8000"
    assert status["grpcAddress"] == f"{name}-triton.{namespace}.svc:8001"
    builders = [p for p in kubectl.get("pods", selector=f"{ENGINE_JOBS}={key}")]
    assert builders and all(p["spec"]["nodeName"] == "gpu-l4-0" for p in builders)

    record = json.loads(kubectl.get("configmap", "conch-engines")["data"][plan.record_key(key, CLAIM)])
    assert record["state"] == "built" and record["job"] == job_name(key)
    assert record["versions"]["tensorrtLLM"] == tensorrt_llm.TRTLLM_VERSION

    deployment = kubectl.get("deployment", f"{name}-triton")
    serving = deployment["spec"]["template"]["spec"]
    triton = serving["containers"][0]
    assert triton["image"] == tensorrt_llm.TRITON_TRTLLM_IMAGE
    assert triton["resources"]["requests"]["nvidia.com/gpu"] == triton["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert serving["nodeSelector"]["nvidia.com/gpu.product"] == "NVIDIA-L4"
    assert {"name": "cache", "mountPath": "/cache", "readOnly": True} in triton["volumeMounts"]
    assert [c["name"] for c in serving["initContainers"]] == ["repository"]
    config_map = kubectl.get("configmap", f"{name}-triton-repository")
    assert "ensemble__config.pbtxt" in config_map["data"]
    assert tensorrt_llm.engine_dir(key) in config_map["data"]["tensorrt_llm__config.pbtxt"]
    assert [p["port"] for p in kubectl.get("service", f"{name}-triton")["spec"]["ports"]] == [8000, 8001, 8002]
    pods = kubectl.get("pods", selector=f"conch.dev/model={name}")
    assert [p["spec"]["nodeName"] for p in pods] == ["gpu-l4-0"]

    # Same engine inputs under another name (and other replicas): the engine is reused, no new Job.
    twin = copy.deepcopy(example(QWEN_EXAMPLE))
    twin["metadata"]["name"] = "qwen-twin"
    twin["spec"]["displayName"] = "Qwen twin"
    kubectl.apply(twin)
    model = ready(kubectl, "qwen-twin")
    assert condition(model, "EngineReady")["reason"] == "EngineCached"
    assert model["status"]["engine"]["cacheKey"] == key
    assert [j["metadata"]["uid"] for j in build_jobs(kubectl)] == [job["metadata"]["uid"]]

    # Deleting the Models leaves the engines: claim and record stay.
    kubectl("delete", "model", name, "qwen-twin", "--wait=true", "--timeout=30s")
    assert kubectl.get("pvc", CLAIM)
    assert plan.record_key(key, CLAIM) in kubectl.get("configmap", "conch-engines")["data"]


def test_gated_llama_example_builds_with_its_token(kubectl, operator, engine_volume):
    kubectl("create", "secret", "generic", "hf-token", "--from-literal=token=hf_not_a_real_token")
    kubectl("apply", "-f", str(LLAMA_EXAMPLE))
    name = example(LLAMA_EXAMPLE)["metadata"]["name"]
    key = engine_key(kubectl, name)
    job = wait_until(lambda: kubectl.get("job", job_name(key)), 30, message="build Job")
    pod = job["spec"]["template"]["spec"]
    assert pod["nodeSelector"]["nvidia.com/gpu.product"] == "NVIDIA-A100-SXM4-80GB"
    assert {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "token"}}} in \
        pod["containers"][0]["env"]
    model = ready(kubectl, name)
    assert model["status"]["engine"]["cacheKey"] == key
    assert kubectl.get("pods", selector=f"conch.dev/model={name}")[0]["spec"]["nodeName"] == "gpu-a100-0"


def test_tensor_parallel_engine_spans_gpus(kubectl, operator, engine_volume):
    kubectl.apply(trt_model("tp2", engine={"tensorParallel": 2}, gpu={"count": 2, "product": "NVIDIA-A100-SXM4-80GB"}))
    key = wait_until(lambda: kubectl.model("tp2") and engine_key(kubectl, "tp2"), 10)
    job = wait_until(lambda: kubectl.get("job", job_name(key)), 30, message="build Job")
    assert job["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "2"
    ready(kubectl, "tp2")
    triton = kubectl.get("deployment", "tp2-triton")["spec"]["template"]["spec"]["containers"][0]
    assert triton["resources"]["limits"]["nvidia.com/gpu"] == "2" and triton["command"][0] == "mpirun"


def test_pytorch_backend_serves_without_a_build(kubectl, operator):
    kubectl.apply(trt_model("llmapi", quantization="int4_awq", tensorrtLLM={"backend": "pytorch"},
                            source={"huggingFace": {"repoId": "hugging-quants/Meta-Llama-3.1-8B-Instruct-AWQ-INT4"}}))
    model = ready(kubectl, "llmapi")
    assert condition(model, "EngineReady")["reason"] == "NoBuildNeeded"
    assert model["status"]["tritonModel"] == "tensorrt_llm" and model["status"]["interface"] == "llmapi"
    assert "engine" not in model["status"]
    assert not build_jobs(kubectl) and not kubectl.get("pvc")
    pod = kubectl.get("deployment", "llmapi-triton")["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["initContainers"]] == ["download", "repository"]
    assert "tensorrt_llm__1__model.yaml" in kubectl.get("configmap", "llmapi-triton-repository")["data"]


def test_spec_change_while_the_engine_builds_leaves_what_serves(kubectl, operator, engine_volume):
    """backend pytorch → engine, on a GPU product no node has, so the build waits: the llmapi
    Deployment keeps serving and status keeps naming what it serves; a replicas change still
    reaches it (0 frees its GPUs)."""
    kubectl.apply(trt_model("switch", quantization="int4_awq", tensorrtLLM={"backend": "pytorch"},
                            source={"huggingFace": {"repoId": "hugging-quants/Meta-Llama-3.1-8B-Instruct-AWQ-INT4"}}))
    ready(kubectl, "switch")
    kubectl("patch", "model", "switch", "--type=merge", "-p", json.dumps({"spec": {
        "tensorrtLLM": {"backend": "engine"}, "gpu": {"count": 1, "product": "NVIDIA-H100-80GB-HBM3"}}}))
    status = engine_condition(kubectl, "switch", "BuildPending")["status"]
    assert status["phase"] == "Ready" and condition(kubectl.model("switch"), "Ready")["status"] == "True"
    assert (status["tritonModel"], status["interface"]) == ("tensorrt_llm", "llmapi")

    kubectl("patch", "model", "switch", "--type=merge", "-p", json.dumps({"spec": {"replicas": 0}}))
    wait_until(lambda: kubectl.get("deployment", "switch-triton")["spec"]["replicas"] == 0, 30,
               message="the kept Deployment scaled to 0")
    model = wait_until(lambda: (m := kubectl.model("switch"))["status"]["phase"] == "Stopped" and m, 30,
                       message="Model Stopped")
    assert model["status"]["tritonModel"] == "tensorrt_llm"
    # Still the pytorch Deployment: nothing but its replicas changed.
    pod = kubectl.get("deployment", "switch-triton")["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["initContainers"]] == ["download", "repository"]
    assert "Traceback" not in operator.log()


def fail_builder_pod(kubectl, job: dict, message: str) -> None:
    """What a kubelet reports when the builder exits 1 after writing its termination message."""
    selector = f"batch.kubernetes.io/controller-uid={job['metadata']['uid']}"
    pod = wait_until(lambda: (pods := kubectl.get("pods", selector=selector)) and pods[0], 30, message="builder pod")
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    status = {"phase": "Failed", "containerStatuses": [{
        "name": "builder", "image": pod["spec"]["containers"][0]["image"], "imageID": "", "ready": False,
        "restartCount": 0, "started": False,
        "state": {"terminated": {"exitCode": 1, "reason": "Error", "message": message, "startedAt": now,
                                 "finishedAt": now}}}]}
    kubectl("patch", "pod", pod["metadata"]["name"], "--subresource=status", "--type=merge",
            "-p", json.dumps({"status": status}))


def test_failed_build_backs_off_then_retries(cluster, kubectl, namespace, engine_volume, tmp_path):
    # One pod failure fails the Job; back-off 4 s, then 8 s.
    operator = Operator(cluster, namespace, tmp_path, build_backoff_limit=0, build_retry_base_s=4).start()
    try:
        # No node has this GPU: the builder pod waits for one (the status says so) until it "fails".
        kubectl.apply(trt_model("broken", gpu={"count": 1, "product": "NVIDIA-H100-80GB-HBM3"}))
        key = wait_until(lambda: kubectl.model("broken") and engine_key(kubectl, "broken"), 10)
        first = wait_until(lambda: kubectl.get("job", job_name(key)), 30, message="build Job")
        pending = engine_condition(kubectl, "broken", "BuildPending")
        wait_until(lambda: "waiting for a node" in condition(kubectl.model("broken"), "EngineReady")["message"], 30,
                   message="scheduler's words in EngineReady")
        assert pending["status"]["phase"] == "Building"

        fail_builder_pod(kubectl, first, "ValueError: act-order GPTQ checkpoints are not supported")
        model = engine_condition(kubectl, "broken", "BuildFailed")
        engine = model["status"]["engine"]
        assert engine["attempts"] == 1 and engine["job"] == job_name(key)
        assert "BackoffLimitExceeded" in engine["lastFailure"]
        assert "act-order GPTQ checkpoints are not supported" in engine["lastFailure"]
        assert model["status"]["phase"] == "Degraded"
        degraded = condition(model, "Degraded")
        assert degraded["status"] == "True" and degraded["reason"] == "BuildFailed"
        retry_after = datetime.fromisoformat(engine["retryAfter"].replace("Z", "+00:00"))

        # Nothing new before retryAfter (the failed Job stays for its logs) …
        while datetime.now(timezone.utc) < retry_after:
            jobs = build_jobs(kubectl)
            assert [j["metadata"]["uid"] for j in jobs] == [first["metadata"]["uid"]]
            time.sleep(0.3)
        # … then the failed Job is replaced by the next attempt.
        second = wait_until(lambda: (j := kubectl.get("job", job_name(key)))
                            and j["metadata"]["uid"] != first["metadata"]["uid"] and j, 30, message="second attempt")
        assert second["metadata"]["annotations"]["conch.dev/build-attempt"] == "2"
        retrying = engine_condition(kubectl, "broken", "BuildPending")
        assert retrying["status"]["engine"]["attempts"] == 1 and "retryAfter" not in retrying["status"]["engine"]

        fail_builder_pod(kubectl, second, "RuntimeError: CUDA out of memory")
        model = wait_until(lambda: (m := kubectl.model("broken"))["status"]["engine"].get("attempts") == 2 and m, 30,
                           message="second failure recorded")
        engine = model["status"]["engine"]
        assert "CUDA out of memory" in engine["lastFailure"]
        failed_at = next(c for c in kubectl.get("job", job_name(key))["status"]["conditions"]
                         if c["type"] == "Failed")["lastTransitionTime"]
        delay = (datetime.fromisoformat(engine["retryAfter"].replace("Z", "+00:00"))
                 - datetime.fromisoformat(failed_at.replace("Z", "+00:00"))).total_seconds()
        assert delay == 8  # doubled
        record = json.loads(kubectl.get("configmap", "conch-engines")["data"][plan.record_key(key, CLAIM)])
        assert record["state"] == "failed" and record["attempts"] == 2
        assert "Traceback" not in operator.log()
    finally:
        operator.stop()


def test_restart_mid_build_converges_without_duplicates(kubectl, operator, engine_volume):
    kubectl.apply(trt_model("a"), trt_model("b", replicas=1, displayName="same engine"))
    wait_until(lambda: build_jobs(kubectl), 30, message="build Job")
    operator.kill()
    operator.start()
    ready(kubectl, "a")
    ready(kubectl, "b")
    assert len(build_jobs(kubectl)) == 1
    assert len(kubectl.get("configmap", "conch-engines")["data"]) == 1
    reasons = {condition(kubectl.model(n), "EngineReady")["reason"] for n in ("a", "b")}
    assert reasons <= {"EngineBuilt", "EngineCached"}
    assert "Traceback" not in operator.log()
