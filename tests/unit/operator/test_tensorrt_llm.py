"""The operator's pure parts for runtime tensorrt-llm: the build Job, the engine cache claim, the
serving objects of both backends, the build decisions (sharing, failure, back-off) and status."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from conch_api import Model, Phase
from conch_engines import tensorrt_llm
from conch_operator import build, build_job, render, render_trtllm
from conch_operator.build import Action, EngineObservation
from conch_operator.settings import OperatorSettings
from conch_operator.status import Observed, compute_status
from conch_operator.view import ClusterView

SETTINGS = OperatorSettings()
NOW = datetime(2026, 9, 1, 12, 0, 0, tzinfo=timezone.utc)
CLAIM = {"metadata": {"name": "conch-engine-cache", "uid": "claim-1"}, "status": {"phase": "Bound"}}
JOB = "conch-engine-{key}-" + build_job.claim_hash("conch-engine-cache")  # the Job name for the default claim


def model(name: str = "qwen", status: dict | None = None, **spec) -> Model:
    spec.setdefault("runtime", "tensorrt-llm")
    spec.setdefault("quantization", "int4_gptq")
    tp = spec.get("engine", {}).get("tensorParallel", 1)
    spec.setdefault("gpu", {"count": tp, "product": "NVIDIA-L4"})
    spec.setdefault("source", {"huggingFace": {"repoId": "Qwen/Qwen2-7B-Instruct-GPTQ-Int4"}})
    return Model.model_validate({"metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}", "generation": 1},
                                 "spec": spec, "status": status or {}})


def key_of(m: Model) -> str:
    return render_trtllm.engine_key(m)


def job(m: Model, *, attempt: int = 1, uid: str = "job-1", conditions: list | None = None, claim_uid: str = "claim-1",
        **status) -> dict:
    manifest = build_job.build_job(m, key_of(m), attempt, SETTINGS, claim_uid)
    manifest["metadata"]["uid"] = uid
    manifest["status"] = {"conditions": conditions or [], **status}
    return manifest


def failed(at: str = "2026-09-01T11:59:00Z", reason: str = "BackoffLimitExceeded") -> list[dict]:
    return [{"type": "FailureTarget", "status": "True", "reason": reason},
            {"type": "Failed", "status": "True", "reason": reason, "message": "Job has reached the specified backoff limit",
             "lastTransitionTime": at}]


COMPLETE = [{"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True"}]


def failed_pod(message: str = "ValueError: no GPTQ checkpoint", exit_code: int = 1) -> dict:
    return {"metadata": {"name": "conch-engine-x-abc", "creationTimestamp": "2026-09-01T11:50:00Z"},
            "status": {"phase": "Failed", "containerStatuses": [{"name": "builder", "state": {"terminated": {
                "exitCode": exit_code, "reason": "Error", "message": message}}}]}}


# --------------------------------------------------------------------------------------- build Job


@pytest.mark.parametrize("tp, product", [(1, "NVIDIA-L4"), (2, "NVIDIA-A100-SXM4-80GB")])
def test_build_job_runs_on_the_serving_gpu_type(tp, product):
    m = model(engine={"tensorParallel": tp}, gpu={"count": tp, "product": product},
              tolerations=[{"key": "team", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}])
    manifest = build_job.build_job(m, key_of(m), 1, SETTINGS, "claim-1")
    key = key_of(m)
    assert manifest["metadata"]["name"] == JOB.format(key=key) and len(manifest["metadata"]["name"]) <= 63
    assert manifest["metadata"]["annotations"][build_job.CLAIM_UID_ANNOTATION] == "claim-1"
    assert "ownerReferences" not in manifest["metadata"]  # shared by every Model with this key and claim
    assert manifest["metadata"]["labels"][build_job.ENGINE_KEY_LABEL] == key
    spec = manifest["spec"]
    assert spec["activeDeadlineSeconds"] == 7200 and spec["backoffLimit"] == 2 and spec["ttlSecondsAfterFinished"] > 0
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["nodeSelector"]["nvidia.com/gpu.product"] == product
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert {"key": "team", "operator": "Equal", "value": "ml", "effect": "NoSchedule"} in pod["tolerations"]
    container = pod["containers"][0]
    assert container["resources"]["requests"]["nvidia.com/gpu"] == container["resources"]["limits"]["nvidia.com/gpu"] == str(tp)
    assert container["command"] == tensorrt_llm.builder_command(m.spec, key, None)
    assert container["image"] == SETTINGS.trtllm_builder_image
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["cache"]["persistentVolumeClaim"] == {"claimName": "conch-engine-cache"}
    assert volumes["dshm"]["emptyDir"]["medium"] == "Memory"
    mounts = {v["name"]: v["mountPath"] for v in container["volumeMounts"]}
    assert mounts == {"cache": tensorrt_llm.CACHE_MOUNT, "dshm": "/dev/shm", "tmp": "/tmp"}
    assert pod["securityContext"]["fsGroup"]  # the claim is writable by the non-root builder


def test_build_job_sources_and_overrides():
    gated = model(source={"huggingFace": {"repoId": "meta-llama/Llama-3.1-8B-Instruct",
                                          "tokenSecretRef": {"name": "hf", "key": "token"}}},
                  quantization="int4_awq", images={"engineBuilder": "registry.local/builder:dev"},
                  tensorrtLLM={"buildTimeoutSeconds": 900})
    container = build_job.build_job(gated, key_of(gated), 1, SETTINGS, "claim-1")["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}} in container["env"]
    assert container["image"] == "registry.local/builder:dev"
    assert build_job.build_job(gated, key_of(gated), 1, SETTINGS, "claim-1")["spec"]["activeDeadlineSeconds"] == 900

    local = model(source={"pvc": {"claimName": "weights", "path": "/qwen2-7b"}})
    manifest = build_job.build_job(local, key_of(local), 1, SETTINGS, "claim-1")
    pod = manifest["spec"]["template"]["spec"]
    assert {"name": "source", "persistentVolumeClaim": {"claimName": "weights", "readOnly": True}} in pod["volumes"]
    assert pod["containers"][0]["command"] == tensorrt_llm.builder_command(local.spec, key_of(local),
                                                                            "/models/source/qwen2-7b")
    assert not any(e["name"] == "HF_TOKEN" for e in pod["containers"][0]["env"])


def test_cache_claim_is_shared_and_never_owned():
    claim = build_job.cache_claim(model(tensorrtLLM={"engineCache": {"claimName": "engines", "size": "500Gi",
                                                                 "storageClassName": "nfs", "accessMode": "ReadWriteOnce"}}))
    assert claim["metadata"]["name"] == "engines" and "ownerReferences" not in claim["metadata"]
    assert claim["spec"] == {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "500Gi"}},
                             "storageClassName": "nfs"}
    default = build_job.cache_claim(model())
    assert "storageClassName" not in default["spec"]  # the cluster's default class
    assert default["spec"]["accessModes"] == ["ReadWriteMany"]


# ---------------------------------------------------------------------------------- serving objects


@pytest.mark.parametrize("tp", [1, 2])
def test_engine_backend_serves_the_ensemble(tp):
    m = model(engine={"tensorParallel": tp}, replicas=2)
    objects = {o["kind"]: o for o in render.desired_objects(m, SETTINGS)}
    assert set(objects) == {"ConfigMap", "Deployment", "Service"}
    key = key_of(m)
    files = tensorrt_llm.ensemble_repository(m.spec, key)
    assert objects["ConfigMap"]["data"] == {path.replace("/", "__"): text for path, text in files.items()}
    deployment = objects["Deployment"]
    assert deployment["spec"]["replicas"] == 2
    assert deployment["metadata"]["ownerReferences"][0]["uid"] == "uid-qwen"
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == SETTINGS.trtllm_triton_image
    assert container["command"] == tensorrt_llm.serve_command(m.spec, render.REPOSITORY_DIR)
    assert (container["command"][0] == "mpirun") == (tp > 1)
    resources = container["resources"]
    assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"] == str(tp)
    assert resources["requests"]["cpu"] and resources["requests"]["memory"]
    assert pod["nodeSelector"]["nvidia.com/gpu.product"] == "NVIDIA-L4"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["cache"]["persistentVolumeClaim"] == {"claimName": "conch-engine-cache", "readOnly": True}
    assert volumes["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": f"{2 * tp}Gi"}
    assert {"name": "cache", "mountPath": "/cache", "readOnly": True} in container["volumeMounts"]
    probe = container["startupProbe"]
    assert probe["periodSeconds"] * probe["failureThreshold"] >= 30 * 60
    assert [p["containerPort"] for p in container["ports"]] == [8000, 8001, 8002]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    # The init container assembles the repository: the image's templates, then the ConfigMap's files.
    (init,) = pod["initContainers"]
    assert "/app/all_models/inflight_batcher_llm/." in init["command"][2]
    assert init["command"][4:] == sorted(files)
    items = volumes["config"]["configMap"]["items"]
    assert {i["path"] for i in items} == set(files) and {i["key"] for i in items} == set(objects["ConfigMap"]["data"])
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations[render_trtllm.ENGINE_KEY_ANNOTATION] == key


def test_pytorch_backend_serves_the_llmapi_model():
    m = model(quantization="int4_awq", tensorrtLLM={"backend": "pytorch"},
              source={"huggingFace": {"repoId": "hugging-quants/Meta-Llama-3.1-8B-Instruct-AWQ-INT4",
                                      "tokenSecretRef": {"name": "hf", "key": "token"}}})
    objects = {o["kind"]: o for o in render.desired_objects(m, SETTINGS)}
    files = tensorrt_llm.llmapi_repository(m.spec, "/models/source")
    assert objects["ConfigMap"]["data"] == {p.replace("/", "__"): t for p, t in files.items()}
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    download, assemble = pod["initContainers"]
    assert download["command"][-3:] == ["hugging-quants/Meta-Llama-3.1-8B-Instruct-AWQ-INT4", "main", "/models/source"]
    assert {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}} in download["env"]
    assert "/app/all_models/llmapi/." in assemble["command"][2]
    assert not any(v["name"] == "cache" for v in pod["volumes"])  # nothing is built, nothing cached
    assert (render.triton_model(m), render.interface(m).value) == ("tensorrt_llm", "llmapi")
    assert (render.triton_model(model()), render.interface(model()).value) == ("ensemble", "ensemble")

    on_pvc = model(quantization="fp8", tensorrtLLM={"backend": "pytorch"},
                   source={"pvc": {"claimName": "weights", "path": "llama-fp8"}})
    assert render_trtllm.checkpoint_path(on_pvc) == "/models/source/llama-fp8"
    pod = next(o for o in render_trtllm.serving_objects(on_pvc, SETTINGS)
               if o["kind"] == "Deployment")["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["initContainers"]] == ["repository"]


def test_user_resources_keep_the_gpu_count():
    m = model(engine={"tensorParallel": 2}, resources={"requests": {"cpu": "16", "memory": "96Gi", "nvidia.com/gpu": 1},
                                                        "limits": {"memory": "128Gi"}})
    assert render_trtllm.gpu_resources(m, SETTINGS) == {
        "requests": {"cpu": "16", "memory": "96Gi", "nvidia.com/gpu": "2"},
        "limits": {"memory": "128Gi", "nvidia.com/gpu": "2"}}


# ---------------------------------------------------------------------------------------- decisions


def test_first_model_creates_the_job_and_waits_for_it():
    m = model()
    decision = build.decide(m, key_of(m), None, CLAIM, None, [], NOW, SETTINGS)
    assert decision.action == Action.CREATE_JOB and decision.attempt == 1
    assert (decision.engine.ready, decision.engine.reason) == (False, "BuildPending")
    assert decision.engine.status.cacheKey == key_of(m) and decision.engine.status.job == JOB.format(key=key_of(m))

    pending = {"metadata": {"name": "p"}, "status": {"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
         "message": "0/4 nodes are available: 4 Insufficient nvidia.com/gpu."}]}}
    waiting = build.decide(m, key_of(m), None, CLAIM, job(m, active=1), [pending], NOW, SETTINGS)
    assert waiting.action == Action.WAIT and waiting.engine.reason == "BuildPending"
    assert "Insufficient nvidia.com/gpu" in waiting.engine.message

    running = {"metadata": {"name": "p"}, "status": {"phase": "Running", "startTime": "2026-09-01T11:58:00Z"}}
    building = build.decide(m, key_of(m), None, CLAIM, job(m, active=1), [running], NOW, SETTINGS)
    assert building.action == Action.WAIT and building.engine.reason == "Building"
    assert "running in pod p since 2026-09-01T11:58:00Z" in building.engine.message


def test_success_is_recorded_then_shared():
    first = model("first", status={"conditions": [{"type": "EngineReady", "status": "False", "reason": "Building"}]})
    key = key_of(first)
    done = build.decide(first, key, None, CLAIM, job(first, conditions=COMPLETE, completionTime="2026-09-01T11:59:30Z"),
                        [], NOW, SETTINGS)
    assert done.action == Action.RECORD_BUILT
    assert (done.engine.ready, done.engine.reason) == (True, "EngineBuilt")
    record = done.record
    assert record["path"] == f"engines/{key}/engine" and record["builtAt"] == "2026-09-01T11:59:30Z"
    assert record["job"] == JOB.format(key=key) and record["claimUid"] == "claim-1"
    assert record["versions"]["tensorrtLLM"] == tensorrt_llm.TRTLLM_VERSION
    ledger = build.ledger_object("ns", key, record)
    assert build.read_record(ledger, key) == record and "ownerReferences" not in ledger["metadata"]

    # A second Model with the same engine inputs (other name, replicas, display name): same key,
    # no Job looked at or created, EngineCached.
    second = model("second", replicas=3, displayName="Qwen 2")
    assert key_of(second) == key
    cached = build.decide(second, key, record, CLAIM, None, [], NOW, SETTINGS)
    assert cached.action == Action.WAIT and (cached.engine.ready, cached.engine.reason) == (True, "EngineCached")
    # The builder's Model keeps saying EngineBuilt on later reconciles.
    first_after = model("first", status={"conditions": [{"type": "EngineReady", "status": "True", "reason": "EngineBuilt"}]})
    assert build.decide(first_after, key, record, CLAIM, None, [], NOW, SETTINGS).engine.reason == "EngineBuilt"

    # A claim deleted and created again has lost its engines: build again.
    fresh_claim = {"metadata": {"name": "conch-engine-cache", "uid": "claim-2"}}
    assert build.decide(second, key, record, fresh_claim, None, [], NOW, SETTINGS).action == Action.CREATE_JOB


def test_changed_engine_inputs_change_the_key():
    base = key_of(model())
    assert key_of(model(engine={"maxSeqLen": 8192})) != base
    assert key_of(model(gpu={"count": 1, "product": "NVIDIA-A100-SXM4-80GB"})) != base
    assert key_of(model(replicas=4, env=[{"name": "X", "value": "1"}])) == base


def test_failure_is_recorded_with_the_builders_words():
    m = model()
    key = key_of(m)
    failed_job = job(m, conditions=failed(), failed=3)
    pod = failed_pod()
    message = build.failure_message(failed_job, pod)
    assert message.startswith(f"build Job {JOB.format(key=key)} failed: BackoffLimitExceeded")
    assert "exited with code 1 (Error): ValueError: no GPTQ checkpoint" in message

    decision = build.decide(m, key, None, CLAIM, failed_job, [pod], NOW, SETTINGS, failure=message)
    assert decision.action == Action.RECORD_FAILURE
    engine = decision.engine
    assert (engine.ready, engine.reason, engine.failed) == (False, "BuildFailed", True)
    assert engine.status.attempts == 1 and engine.status.lastFailure == message
    assert engine.status.retryAfter == "2026-09-01T12:00:00Z"  # failed at 11:59 + 1 minute
    assert decision.record["jobUid"] == "job-1" and decision.record["attempts"] == 1

    # Recorded: no second record; before retryAfter nothing happens, after it the Job is replaced.
    record = decision.record
    early = build.decide(m, key, record, CLAIM, failed_job, [pod], NOW - timedelta(seconds=30), SETTINGS)
    assert early.action == Action.WAIT and early.engine.reason == "BuildFailed"
    due = build.decide(m, key, record, CLAIM, failed_job, [pod], NOW + timedelta(seconds=1), SETTINGS)
    assert due.action == Action.RETRY and due.attempt == 2
    assert due.engine.status.retryAfter is None and due.engine.status.attempts == 1
    # The failed Job already gone (TTL, or deleted by the retry): same schedule.
    assert build.decide(m, key, record, CLAIM, None, [], NOW - timedelta(seconds=30), SETTINGS).action == Action.WAIT
    assert build.decide(m, key, record, CLAIM, None, [], NOW + timedelta(seconds=1), SETTINGS).attempt == 2


def test_failure_message_is_the_termination_message():
    """The kubelet puts the log's end into the termination message when the builder wrote none
    (FallbackToLogsOnError): the operator reads no logs."""
    m = model()
    message = build.failure_message(job(m, conditions=failed(reason="DeadlineExceeded")),
                                    failed_pod(message="loading checkpoint\nCUDA out of memory\n"))
    assert "DeadlineExceeded" in message and message.endswith("CUDA out of memory")
    silent = build.failure_message(job(m, conditions=failed()), failed_pod(message=""))
    assert silent.endswith("exited with code 1 (Error)")
    huge = build.failure_message(job(m, conditions=failed()), failed_pod(message="x" * 10_000))
    assert len(huge) <= build.MAX_FAILURE_CHARS + 1


def test_back_off_doubles_and_is_capped():
    delays = [build.retry_delay(n, SETTINGS).total_seconds() for n in range(1, 9)]
    assert delays == [60, 120, 240, 480, 960, 1920, 3600, 3600]
    second = model()
    decision = build.decide(second, key_of(second), {"state": "failed", "attempts": 1, "jobUid": "old"}, CLAIM,
                            job(second, attempt=2, uid="job-2", conditions=failed(at="2026-09-01T12:00:00Z")),
                            [], NOW, SETTINGS, failure="boom")
    assert decision.record["attempts"] == 2 and decision.record["retryAfter"] == "2026-09-01T12:02:00Z"


def test_retry_due_reads_the_status():
    body = {"status": {"engine": {"retryAfter": "2026-09-01T12:00:00Z"}}}
    assert build.retry_due(body, NOW) and not build.retry_due(body, NOW - timedelta(seconds=1))
    assert not build.retry_due({"status": {}}, NOW)
    # Edited by hand into nonsense: due (the reconcile writes a proper one), never an exception.
    assert build.retry_due({"status": {"engine": {"retryAfter": "soon"}}}, NOW)
    assert build.retry_due({"status": {"engine": {"retryAfter": "2026-09-01T12:00:00"}}}, NOW)  # no zone


# ------------------------------------------------------------------------------------------ status


def test_status_while_building_then_serving():
    m = model()
    building = EngineObservation(False, "Building", "build Job x running", status=build.decide(
        m, key_of(m), None, CLAIM, None, [], NOW, SETTINGS).engine.status)
    status = compute_status(m, Observed(engine=building), "2026-09-01T12:00:00Z")
    assert status.phase == Phase.BUILDING
    conditions = {c.type: (c.status, c.reason) for c in status.conditions}
    assert conditions == {"Ready": ("False", "EngineNotReady"), "Available": ("False", "EngineNotReady"),
                          "EngineReady": ("False", "Building"), "Degraded": ("False", "AsExpected")}
    assert status.engine.cacheKey == key_of(m)
    assert status.tritonModel == "ensemble" and status.interface.value == "ensemble"
    assert status.endpoint == "http://qwen-triton.ns.svc:8000" and status.grpcAddress == "qwen-triton.ns.svc:8001"

    built = EngineObservation(True, "EngineBuilt", "built", status=building.status)
    deployment = {"status": {"replicas": 1, "readyReplicas": 1, "availableReplicas": 1,
                             "conditions": [{"type": "Available", "status": "True"}]}}
    ready = compute_status(m, Observed(engine=built, deployment=deployment), "2026-09-01T12:05:00Z")
    assert ready.phase == Phase.READY
    assert {c.type: c.status for c in ready.conditions} == {"Ready": "True", "Available": "True", "EngineReady": "True",
                                                            "Degraded": "False"}


def test_status_of_a_failed_build_is_degraded():
    m = model()
    decision = build.decide(m, key_of(m), None, CLAIM, job(m, conditions=failed()), [failed_pod()], NOW, SETTINGS,
                            failure="build Job x failed: BackoffLimitExceeded; pod p exited with code 1: boom")
    status = compute_status(m, Observed(engine=decision.engine), "2026-09-01T12:00:00Z")
    assert status.phase == Phase.DEGRADED
    degraded = status.condition("Degraded")
    assert (degraded.status, degraded.reason) == ("True", "BuildFailed") and "boom" in degraded.message
    assert status.condition("EngineReady").reason == "BuildFailed"
    assert status.engine.attempts == 1 and status.engine.retryAfter == "2026-09-01T12:00:00Z"


def test_pytorch_backend_needs_no_build():
    m = model(quantization="int4_awq", tensorrtLLM={"backend": "pytorch"})
    engine = EngineObservation(True, "NoBuildNeeded", "the pytorch backend loads the checkpoint itself")
    status = compute_status(m, Observed(engine=engine), "2026-09-01T12:00:00Z")
    assert status.condition("EngineReady").reason == "NoBuildNeeded" and status.engine is None
    assert status.phase == Phase.DEPLOYING and status.tritonModel == "tensorrt_llm"


def test_build_jobs_find_their_models():
    view = ClusterView()
    view.use_engine(("ns", "a"), "ns", "k1")
    view.use_engine(("ns", "b"), "ns", "k1")
    view.use_engine(("other", "a"), "other", "k1")
    assert view.engine_users("ns", "k1") == [("ns", "a"), ("ns", "b")]
    view.use_engine(("ns", "b"), "ns", "k2")  # b's spec changed: another engine
    assert view.engine_users("ns", "k1") == [("ns", "a")] and view.engine_users("ns", "k2") == [("ns", "b")]
    view.model_event("DELETED", {"metadata": {"namespace": "ns", "name": "a"}})
    assert view.engine_users("ns", "k1") == []


def test_status_patch_removes_what_is_gone():
    from conch_operator.reconcile import _with_removals

    previous = {"phase": "Degraded", "engine": {"attempts": 1, "retryAfter": "T", "lastFailure": "boom"}}
    new = {"phase": "Building", "engine": {"attempts": 1, "lastFailure": "boom"}}
    assert _with_removals(previous, new) == {"phase": "Building",
                                             "engine": {"attempts": 1, "lastFailure": "boom", "retryAfter": None}}
    assert _with_removals({"engine": {"attempts": 0}}, {}) == {"engine": None}


# ------------------------------------------------------------------------------- engine per claim


def test_job_and_record_are_per_claim():
    """Same engine inputs, other claims: each claim gets its own Job and record."""
    a, b = model("a"), model("b", tensorrtLLM={"engineCache": {"claimName": "team-b-engines"}})
    key = key_of(a)
    assert key_of(b) == key
    job_a, job_b = (build_job.build_job(m, key, 1, SETTINGS, "uid")["metadata"]["name"] for m in (a, b))
    assert job_a != job_b and job_a.startswith(f"conch-engine-{key}-") and len(job_b) <= 63
    assert build.record_key(key, "conch-engine-cache") == f"{key}.conch-engine-cache"
    assert build.record_key(key, "team-b-engines") != build.record_key(key, "conch-engine-cache")
    long = build.record_key(key, "x" * 253)  # ConfigMap keys hold at most 253 characters
    assert len(long) <= 253 and long != build.record_key(key, "x" * 252 + "y")

    # a's engine is built into a's claim; b's claim has no record: b builds its own.
    record = build.decide(a, key, None, CLAIM, job(a, conditions=COMPLETE), [], NOW, SETTINGS).record
    other_claim = {"metadata": {"name": "team-b-engines", "uid": "claim-b"}}
    ledger = build.ledger_object("ns", build.record_key(key, "conch-engine-cache"), record)
    assert build.read_record(ledger, build.record_key(key, "team-b-engines")) is None
    created = build.decide(b, key, None, other_claim, None, [], NOW, SETTINGS)
    assert created.action == Action.CREATE_JOB and created.engine.status.job == job_b


def test_job_made_for_an_earlier_claim_is_replaced():
    """A claim deleted and created again under its name: the old Job's success built nothing in it."""
    m = model()
    key = key_of(m)
    recreated = {"metadata": {"name": "conch-engine-cache", "uid": "claim-2"}}
    stale = job(m, conditions=COMPLETE, claim_uid="claim-1")
    decision = build.decide(m, key, None, recreated, stale, [], NOW, SETTINGS)
    assert decision.action == Action.RETRY and decision.attempt == 1 and not decision.engine.ready
    assert "earlier engine cache claim" in decision.engine.message
    # Made for this claim: recorded as built into it.
    done = build.decide(m, key, None, recreated, job(m, conditions=COMPLETE, claim_uid="claim-2"), [], NOW, SETTINGS)
    assert done.action == Action.RECORD_BUILT and done.record["claimUid"] == "claim-2"


class FakeKube:
    """Records writes; reads find nothing unless given."""

    def __init__(self, objects: dict | None = None):
        self.objects = objects or {}
        self.calls: list[tuple] = []

    def get(self, kind, namespace, name):
        self.calls.append(("get", kind, name))
        return self.objects.get((kind, name))

    def list(self, kind, namespace, selector=None):
        self.calls.append(("list", kind))
        return []

    def __getattr__(self, verb):  # apply, create, create_or_apply, patch, delete, merge_patch, patch_status
        def call(*args, **kwargs):
            self.calls.append((verb, *args, kwargs) if kwargs else (verb, *args))
            return {"metadata": {"uid": "new"}}
        return call


def test_retry_deletes_only_the_failed_job():
    from conch_operator import engine

    m = model()
    key = key_of(m)
    failed_job = job(m, uid="job-7", conditions=failed())
    record = {"state": "failed", "attempts": 1, "jobUid": "job-7", "retryAfter": "2026-09-01T11:00:00Z"}
    kube = FakeKube({("PersistentVolumeClaim", "conch-engine-cache"): CLAIM,
                     ("ConfigMap", build.LEDGER): build.ledger_object("ns", build.record_key(key, "conch-engine-cache"), record),
                     ("Job", JOB.format(key=key)): failed_job})
    assert engine.sync(kube, ClusterView(), m, SETTINGS, NOW).reason == "BuildPending"
    assert ("delete", "Job", "ns", JOB.format(key=key), {"uid": "job-7"}) in kube.calls
    (created,) = [c[1] for c in kube.calls if c[0] == "create"]
    assert created["metadata"]["annotations"][build_job.CLAIM_UID_ANNOTATION] == "claim-1"
    assert created["metadata"]["annotations"][build_job.ATTEMPT_ANNOTATION] == "2"


def test_delete_names_the_uid_and_a_conflict_is_done(monkeypatch):
    from conch_operator.kube import Kube, KubeError

    kube = Kube()
    sent = []

    def request(method, path, query=None, *, body=None, content_type=""):
        sent.append((method, path, body))
        raise KubeError(409, "Precondition failed: UID in precondition: job-7, UID in object meta: job-8")

    monkeypatch.setattr(kube, "_request", request)
    kube.delete("Job", "ns", "conch-engine-x", uid="job-7")  # another Model's new attempt: left alone, no error
    assert sent == [("DELETE", "/apis/batch/v1/namespaces/ns/jobs/conch-engine-x",
                     {"propagationPolicy": "Background", "preconditions": {"uid": "job-7"}})]
    kube.close()


# ------------------------------------------------------------------------ a spec change while building


def served(status) -> tuple:
    return status.endpoint, status.grpcAddress, status.tritonModel, status.interface.value if status.interface else None


PYTORCH_READY = {"phase": "Ready", "tritonModel": "tensorrt_llm", "interface": "llmapi",
                 "endpoint": "http://qwen-triton.ns.svc:8000", "grpcAddress": "qwen-triton.ns.svc:8001",
                 "conditions": [{"type": "Ready", "status": "True", "reason": "ReplicasReady"},
                                {"type": "EngineReady", "status": "True", "reason": "NoBuildNeeded"}]}
SERVING = {"metadata": {"name": "qwen-triton"}, "spec": {"replicas": 1},
           "status": {"replicas": 1, "readyReplicas": 1, "availableReplicas": 1,
                      "conditions": [{"type": "Available", "status": "True"}]}}


def test_status_names_what_the_kept_deployment_serves():
    """backend pytorch → engine: until the engine is built the llmapi server keeps serving, and
    status keeps telling the gateway to call `tensorrt_llm` over llmapi, not `ensemble`."""
    m = model(quantization="int4_awq", status=PYTORCH_READY)  # the engine backend now
    building = EngineObservation(False, "Building", "build Job x running")
    status = compute_status(m, Observed(engine=building, deployment=SERVING), "T")
    assert served(status) == ("http://qwen-triton.ns.svc:8000", "qwen-triton.ns.svc:8001", "tensorrt_llm", "llmapi")
    assert status.condition("Ready").status == "True" and status.phase == Phase.READY
    assert status.condition("EngineReady").reason == "Building"

    # Status never said what the running Deployment serves: not Ready rather than a guess.
    unknown = compute_status(model(), Observed(engine=building, deployment=SERVING), "T")
    assert unknown.condition("Ready").status == "False" and unknown.tritonModel is None

    # Engine ready (the new objects applied): the new names.
    ready = compute_status(m, Observed(engine=EngineObservation(True, "EngineBuilt", "built"), deployment=SERVING), "T")
    assert served(ready)[2:] == ("ensemble", "ensemble")


def test_replicas_reach_the_kept_deployment_while_the_engine_builds(monkeypatch):
    from conch_operator import engine, reconcile

    engine_state = EngineObservation(False, "Building", "build Job x running")
    monkeypatch.setattr(engine, "sync", lambda *args, **kwargs: engine_state)
    view = ClusterView()
    key = ("ns", "qwen")
    view.deployment_event("ADDED", key, SERVING)
    body = model(quantization="int4_awq", replicas=0, status=PYTORCH_READY).model_dump(mode="json", exclude_none=True)
    body["metadata"]["generation"] = 2
    kube = FakeKube()
    try:
        status = reconcile.reconcile(kube, view, body, SETTINGS)
        # Scaled to 0 (its GPUs are free for the build), nothing else of it touched; status Stopped
        # and still naming what the Deployment served.
        assert [c for c in kube.calls if c[0] not in ("get", "list", "patch_status")] == [
            ("patch", "Deployment", "ns", "qwen-triton", {"spec": {"replicas": 0}})]
        assert status.phase == Phase.STOPPED and status.tritonModel == "tensorrt_llm"
        assert reconcile.needs_apply(body)  # not applied: the engine's readiness brings the apply

        # The watch reports the scale: no second patch.
        view.deployment_event("MODIFIED", key, {**SERVING, "spec": {"replicas": 0}})
        kube.calls.clear()
        reconcile.reconcile(kube, view, body, SETTINGS)
        assert not [c for c in kube.calls if c[0] == "patch"]

        engine_state = EngineObservation(True, "EngineBuilt", "built")
        kube.calls.clear()
        status = reconcile.reconcile(kube, view, body, SETTINGS)
        applied = [c[1]["kind"] for c in kube.calls if c[0] == "apply"]
        assert applied == ["ConfigMap", "Deployment", "Service"] and not reconcile.needs_apply(body)
        assert status.tritonModel == "ensemble"
    finally:
        reconcile.forget(*key)


def test_status_only_reconcile_trusts_a_built_engine():
    from conch_operator import engine

    class NoAPI:
        def __getattr__(self, verb):
            raise AssertionError(f"status-only reconcile of a built engine called kube.{verb}")

    m = model()

    def reported(engine_key: str) -> Model:
        return model(status={"conditions": [{"type": "EngineReady", "status": "True", "reason": "EngineBuilt",
                                             "message": "engine built"}],
                             "engine": {"cacheKey": engine_key, "path": "p", "job": "j"}})

    observed = engine.sync(NoAPI(), ClusterView(), reported(key_of(m)), SETTINGS, NOW, recheck=False)
    assert (observed.ready, observed.reason, observed.status.job) == (True, "EngineBuilt", "j")
    # Another key (the spec changed) or not ready yet: looked at again.
    assert build.known_ready(reported("other"), key_of(m)) is None and build.known_ready(m, key_of(m)) is None


async def test_periodic_survives_a_failing_pass(monkeypatch):
    import asyncio
    from types import SimpleNamespace

    from conch_operator import handlers

    passes = []

    class View:
        def models(self):
            passes.append(1)
            if len(passes) == 1:
                raise RuntimeError("boom")
            return [{"metadata": {"namespace": "ns", "name": "m"}, "spec": {},
                     "status": {"engine": {"retryAfter": "not a time"}}}]

    queued = []
    monkeypatch.setattr(handlers, "VIEW", View())
    monkeypatch.setattr(handlers, "SETTINGS", SimpleNamespace(external_probe_interval_s=0.001, resync_interval_s=3600))
    task = asyncio.create_task(handlers._periodic(SimpleNamespace(queue=SimpleNamespace(
        add=lambda key, apply: queued.append((key, apply))))))
    while len(passes) < 3:
        await asyncio.sleep(0.005)
    task.cancel()
    assert queued[0] == (("ns", "m"), True)  # the malformed retryAfter counts as due
