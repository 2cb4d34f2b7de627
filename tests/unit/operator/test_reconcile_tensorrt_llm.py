"""Status and reconciles of runtime tensorrt-llm: building, failed, kept Deployments while a changed spec builds."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from conch_api import Phase
from conch_operator import handlers, reconcile
from conch_operator.builds import sync
from conch_operator.memory import ModelMemory
from conch_operator.status import EngineObservation, Observed, compute_status
from conch_operator.reconcile import _with_removals
from conch_operator.view import ClusterView
from support.engine_builds import CLAIM, NOW, SETTINGS, decide, failed, failed_pod, job, key_of, model
from support.fake_kube import FakeKube


def test_status_while_building_then_serving():
    m = model()
    building = EngineObservation(False, "Building", "build Job x running", status=decide(
        m, None, CLAIM, None, [], NOW).engine.status)
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
    decision = decide(m, None, CLAIM, job(m, conditions=failed()), [failed_pod()], NOW)
    status = compute_status(m, Observed(engine=decision.engine), "2026-09-01T12:00:00Z")
    assert status.phase == Phase.DEGRADED
    degraded = status.condition("Degraded")
    assert (degraded.status, degraded.reason) == ("True", "BuildFailed") and "no GPTQ checkpoint" in degraded.message
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
    previous = {"phase": "Degraded", "engine": {"attempts": 1, "retryAfter": "T", "lastFailure": "boom"}}
    new = {"phase": "Building", "engine": {"attempts": 1, "lastFailure": "boom"}}
    assert _with_removals(previous, new) == {"phase": "Building",
                                             "engine": {"attempts": 1, "lastFailure": "boom", "retryAfter": None}}
    assert _with_removals({"engine": {"attempts": 0}}, {}) == {"engine": None}


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
    engine_state = EngineObservation(False, "Building", "build Job x running")
    monkeypatch.setattr(sync, "sync", lambda *args, **kwargs: engine_state)
    view = ClusterView()
    key = ("ns", "qwen")
    view.deployment_event("ADDED", key, SERVING)
    body = model(quantization="int4_awq", replicas=0, status=PYTORCH_READY).model_dump(mode="json", exclude_none=True)
    body["metadata"]["generation"] = 2
    kube = FakeKube()
    memory = ModelMemory()
    status = reconcile.reconcile(kube, view, memory, body, SETTINGS)
    # Scaled to 0 (its GPUs are free for the build), nothing else of it touched; status Stopped
    # and still naming what the Deployment served.
    assert [c for c in kube.calls if c[0] not in ("get", "list", "patch_status")] == [
        ("patch", "Deployment", "ns", "qwen-triton", {"spec": {"replicas": 0}})]
    assert status.phase == Phase.STOPPED and status.tritonModel == "tensorrt_llm"
    assert memory.needs_apply(body)  # not applied: the engine's readiness brings the apply

    # The watch reports the scale: no second patch.
    view.deployment_event("MODIFIED", key, {**SERVING, "spec": {"replicas": 0}})
    kube.calls.clear()
    reconcile.reconcile(kube, view, memory, body, SETTINGS)
    assert not [c for c in kube.calls if c[0] == "patch"]

    engine_state = EngineObservation(True, "EngineBuilt", "built")
    kube.calls.clear()
    status = reconcile.reconcile(kube, view, memory, body, SETTINGS)
    applied = [c[1]["kind"] for c in kube.calls if c[0] == "apply"]
    assert applied == ["ConfigMap", "Deployment", "Service"] and not memory.needs_apply(body)
    assert status.tritonModel == "ensemble"



async def test_periodic_survives_a_failing_pass():
    passes = []

    class View:
        def models(self):
            passes.append(1)
            if len(passes) == 1:
                raise RuntimeError("boom")
            return [{"metadata": {"namespace": "ns", "name": "m"}, "spec": {},
                     "status": {"engine": {"retryAfter": "not a time"}}}]

    queued = []
    memo = SimpleNamespace(view=View(), memory=ModelMemory(),
                           settings=SimpleNamespace(external_probe_interval_s=0.001, resync_interval_s=3600),
                           queue=SimpleNamespace(add=lambda key, apply: queued.append((key, apply))))
    task = asyncio.create_task(handlers._periodic(memo))
    while len(passes) < 3:
        await asyncio.sleep(0.005)
    task.cancel()
    assert queued[0] == (("ns", "m"), True)  # the malformed retryAfter counts as due
