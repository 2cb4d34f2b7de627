"""What the cluster shows → `Model.status`. Pure: the reconciler gathers observations, this decides
phase and conditions (Ready, Available, EngineReady, Degraded) from them — including the API
server's refusal of the objects the spec renders (reason ApplyRejected)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from conch_api import Condition, EngineStatus, Model, ModelStatus, Phase, Runtime

from . import render
from .manifests import kit


@dataclass(frozen=True)
class EngineObservation:
    """What status reports about the engine: the EngineReady condition and status.engine."""

    ready: bool
    reason: str
    message: str
    failed: bool = False
    status: EngineStatus | None = None


@dataclass(frozen=True)
class Observed:
    deployment: dict[str, Any] | None = None
    unschedulable: list[str] = field(default_factory=list)  # the scheduler's messages for pending pods
    problems: list[str] = field(default_factory=list)  # e.g. a missing PersistentVolumeClaim
    external_ready: bool | None = None  # external endpoint probe, None when not probed
    external_message: str = ""
    engine: EngineObservation | None = None  # runtime tensorrt-llm: the engine step's report
    rejected: str | None = None  # why the API server refused this spec's objects, while it does


@dataclass(frozen=True)
class Verdict:
    ready: tuple[bool, str, str]
    available: tuple[bool, str, str]
    engine: tuple[bool, str, str]
    degraded: tuple[bool, str, str]
    replicas: int = 0
    ready_replicas: int = 0
    building: bool = False  # the engine is not ready yet, nor has its build failed


def compute_status(model: Model, observed: Observed, now: str) -> ModelStatus:
    verdict = _judge(model, observed)
    served = _served(model, observed)
    previous = {c.type: c for c in model.status.conditions}
    generation = model.metadata.generation
    conditions = [
        _condition("Ready", verdict.ready, previous, now, generation),
        _condition("Available", verdict.available, previous, now, generation),
        _condition("EngineReady", verdict.engine, previous, now, generation),
        _condition("Degraded", verdict.degraded, previous, now, generation),
    ]
    return ModelStatus(
        phase=_phase(model, verdict),
        conditions=conditions,
        replicas=verdict.replicas,
        readyReplicas=verdict.ready_replicas,
        **served,
        observedGeneration=generation,
        selector=kit.selector_string(model),
        engine=observed.engine.status if observed.engine else None,
    )


def _served(model: Model, observed: Observed) -> dict[str, Any]:
    """Where the gateway finds the model and what it calls there: what the current spec renders —
    unless the Deployment of an earlier spec keeps serving while this spec's engine is built (e.g.
    backend pytorch → engine: the running Triton has `tensorrt_llm`, not yet `ensemble`). Then the
    previous status, written for that Deployment, still describes it."""
    if _serves_earlier_spec(model, observed):
        return {field: getattr(model.status, field)
                for field in ("endpoint", "grpcAddress", "tritonModel", "interface")}
    return {"endpoint": render.endpoint(model), "grpcAddress": render.grpc_address(model),
            "tritonModel": render.triton_model(model), "interface": render.interface(model)}


def _serves_earlier_spec(model: Model, observed: Observed) -> bool:
    """tensorrt-llm: serving objects are applied only once the engine is ready, so a Deployment
    seen while it is not was rendered from an earlier spec."""
    return (model.spec.runtime == Runtime.TENSORRT_LLM and observed.deployment is not None
            and not (observed.engine and observed.engine.ready))


def _judge(model: Model, observed: Observed) -> Verdict:
    verdict = _judge_runtime(model, observed)
    return _refused(verdict, observed.rejected) if observed.rejected else verdict


def _refused(verdict: Verdict, message: str) -> Verdict:
    """The API server refused this spec's objects: Degraded says why. Ready and Available keep
    telling what serves — an earlier spec's Deployment may still serve, and the gateway routes on
    Ready — and tell the refusal instead when nothing does."""
    refused = (False, "ApplyRejected", message)
    problems = [message, *([verdict.degraded[2]] if verdict.degraded[0] and verdict.degraded[2] else [])]
    return replace(verdict, ready=verdict.ready if verdict.ready[0] else refused,
                   available=verdict.available if verdict.available[0] else refused,
                   degraded=(True, "ApplyRejected", "; ".join(problems)), building=False)


def _judge_runtime(model: Model, observed: Observed) -> Verdict:
    runtime = model.spec.runtime
    if runtime == Runtime.EXTERNAL:
        ok = bool(observed.external_ready)
        message = observed.external_message or ("the endpoint answers ready" if ok else "not probed yet")
        state = (ok, "EndpointReady" if ok else "EndpointNotReady", message)
        return Verdict(ready=state, available=state, engine=(True, "External", "the engine is managed elsewhere"),
                       degraded=(not ok, "EndpointNotReady" if not ok else "AsExpected", "" if ok else message),
                       replicas=1 if ok else 0, ready_replicas=1 if ok else 0)
    if runtime == Runtime.TENSORRT_LLM:
        return _judge_tensorrt_llm(model, observed)
    return _judge_deployment(model, observed, (True, "NoBuildNeeded", "llama.cpp serves the GGUF file as it is"))


def _judge_tensorrt_llm(model: Model, observed: Observed) -> Verdict:
    """The Deployment's verdict once the engine is ready. Before, nothing serves — unless an older
    engine still does while a changed spec's engine is built (its Deployment is left running)."""
    engine = observed.engine or EngineObservation(False, "BuildPending", "the engine has not been looked at yet")
    state = (engine.ready, engine.reason, engine.message)
    verdict = _judge_deployment(model, observed, state)
    if engine.ready:
        return verdict
    if engine.failed:
        problems = [engine.message, *([verdict.degraded[2]] if verdict.degraded[0] else [])]
        verdict = replace(verdict, degraded=(True, "BuildFailed", "; ".join(problems)))
    # Nothing serves yet, or an earlier spec's Deployment does but no status told what it serves
    # (e.g. status cleared): the gateway must not call it under this spec's names.
    if model.spec.replicas > 0 and (observed.deployment is None or not model.status.tritonModel):
        waiting = (False, "EngineNotReady", f"waiting for the engine: {engine.message}")
        verdict = replace(verdict, ready=waiting, available=waiting)
    return replace(verdict, building=not engine.failed)


def _judge_deployment(model: Model, observed: Observed, engine: tuple[bool, str, str]) -> Verdict:
    desired = model.spec.replicas
    status = (observed.deployment or {}).get("status", {})
    replicas, ready = status.get("replicas", 0), status.get("readyReplicas", 0)
    problems = (list(observed.problems) + [f"pods cannot be scheduled: {m}" for m in observed.unschedulable]
                + _deployment_problems(status))

    if desired == 0:
        stopped = (False, "ScaledToZero", "spec.replicas is 0")
        return Verdict(ready=stopped, available=stopped, engine=engine,
                       degraded=(False, "AsExpected", ""), replicas=replicas, ready_replicas=ready)
    if observed.deployment is None:
        waiting = (False, "Creating", "the Triton Deployment does not exist yet")
        return Verdict(ready=waiting, available=waiting, engine=engine,
                       degraded=(bool(problems), "ReconcileFailed" if problems else "AsExpected", "; ".join(problems)))
    is_ready = ready >= 1
    ready_state = (is_ready, "ReplicasReady" if is_ready else "ReplicasNotReady", f"{ready}/{desired} replicas ready")
    available = _deployment_condition(status, "Available")
    available_state = (available, "MinimumReplicasAvailable" if available else "ReplicasNotAvailable",
                       f"{status.get('availableReplicas', 0)}/{desired} replicas available")
    degraded_state = (bool(problems), _problem_reason(problems) if problems else "AsExpected", "; ".join(problems))
    return Verdict(ready=ready_state, available=available_state, engine=engine, degraded=degraded_state,
                   replicas=replicas, ready_replicas=ready)


def _deployment_problems(status: dict[str, Any]) -> list[str]:
    problems = []
    for cond in status.get("conditions", []) or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            problems.append(f"rollout stalled: {cond.get('message', '')}")
        if cond.get("type") == "ReplicaFailure" and cond.get("status") == "True":
            problems.append(f"replicas cannot be created: {cond.get('message', '')}")
    return problems


def _problem_reason(problems: list[str]) -> str:
    text = " ".join(problems)
    if "(spec.source" in text:  # the root cause when the source is missing: pods wait for it
        return "SourceNotFound"
    if "cannot be scheduled" in text:
        return "Unschedulable"
    return "DeploymentFailing"


def _deployment_condition(status: dict[str, Any], type_: str) -> bool:
    return any(c.get("type") == type_ and c.get("status") == "True" for c in status.get("conditions", []) or [])


def _phase(model: Model, verdict: Verdict) -> Phase:
    if model.spec.runtime != Runtime.EXTERNAL and model.spec.replicas == 0:
        return Phase.STOPPED
    if verdict.ready[0]:
        return Phase.READY
    if verdict.degraded[0]:
        return Phase.DEGRADED
    return Phase.BUILDING if verdict.building else Phase.DEPLOYING


def _condition(type_: str, state: tuple[bool, str, str], previous: dict[str, Condition], now: str,
               generation: int | None) -> Condition:
    ok, reason, message = state
    value = "True" if ok else "False"
    before = previous.get(type_)
    changed = before is None or before.status != value
    return Condition(type=type_, status=value, reason=reason, message=message,
                     lastTransitionTime=now if changed else before.lastTransitionTime, observedGeneration=generation)
