"""One reconcile: render the desired objects, apply them, prune what is no longer desired, observe,
and publish status. Level-based — every trigger runs the same function — so creation, updates,
operator restarts and the periodic resync all converge on the same state.

A write the API server refuses (invalid, over quota, forbidden) is no error to retry at once: it is
shown (condition reason ApplyRejected and a Warning Event on the Model) and tried again after a
back-off that doubles, or at once when the spec changes."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

from conch_api import Model, ModelStatus, Runtime

from . import external, render
from .builds import sync as engine_builds
from .kube import OWNED_KINDS, Kube, KubeError
from .manifests import kit
from .memory import ModelMemory, Rejection
from .metrics import REJECTED_WRITES
from .settings import OperatorSettings
from .status import EngineObservation, Observed, compute_status
from .view import ClusterView, Key

log = logging.getLogger("conch.operator")


def reconcile(kube: Kube, view: ClusterView, memory: ModelMemory, body: dict[str, Any], settings: OperatorSettings,
              *, apply: bool = True) -> ModelStatus | None:
    """`apply=False` only refreshes status (for events of owned objects and endpoint probes)."""
    key = (body["metadata"]["namespace"], body["metadata"]["name"])
    model = Model.model_validate(body)
    if model.metadata.deletionTimestamp:
        return None  # garbage collection removes what it owns
    previous = memory.written_status(key) or _dump(model.status)
    model = model.model_copy(update={"status": ModelStatus.model_validate(previous)})
    now = datetime.now(timezone.utc)
    rejection = memory.rejection(key, model.metadata.generation)
    # A write the API server refused is not sent again at every event or resync: only once its
    # back-off has passed (the periodic pass asks then), or at once for a new spec (generation).
    waiting = rejection is not None and not rejection.due(now)
    engine_state = None
    try:
        if waiting:
            engine_state = _engine_as_reported(model)
        else:
            engine_state = _write(kube, view, memory, model, settings, now, apply=apply,
                                  check_first=rejection is not None)
            if apply:
                memory.forget_rejection(key)
                rejection = None
    except KubeError as exc:
        if not exc.rejected:
            raise
        rejection = _refused(kube, memory, body, model, exc, now, settings)
        engine_state = engine_state or _engine_as_reported(model)
    observed = replace(observe(kube, view, model, settings), engine=engine_state,
                       rejected=_describe(rejection) if rejection else None)
    status = compute_status(model, observed, _format(now))
    if _dump(status) != previous:
        kube.patch_status(*key, _with_removals(previous, _dump(status)))
        memory.remember_status(key, _dump(status))
    return status


def _write(kube: Kube, view: ClusterView, memory: ModelMemory, model: Model, settings: OperatorSettings,
           now: datetime, *, apply: bool, check_first: bool) -> EngineObservation | None:
    """Every write of one reconcile; returns the engine step's report (runtime tensorrt-llm)."""
    key = (model.metadata.namespace, model.metadata.name)
    # tensorrt-llm: the engine comes first (build Job, cache); serving objects wait for it.
    engine_state = (engine_builds.sync(kube, view, model, settings, now, recheck=apply)
                    if model.spec.runtime == Runtime.TENSORRT_LLM else None)
    if apply and (engine_state is None or engine_state.ready):
        desired = render.desired_objects(model, settings)
        # A Model never reconciled before owns nothing yet: create (cheap) rather than apply, no pruning.
        fresh = model.status.observedGeneration is None and not view.deployment(key)[0]
        generation = model.metadata.generation
        changed = memory.changed_since_applied(key, generation) or model.status.observedGeneration != generation
        if not fresh and (changed or check_first):
            # A changed spec is checked whole before anything is written: a refused Deployment must
            # not leave the running one next to an already updated ConfigMap. (Not at every resync
            # or operator start: that would double their writes.)
            for obj in desired:
                kube.apply(obj, dry_run=True)
        for obj in desired:
            (kube.create_or_apply if fresh else kube.apply)(obj)
        if not fresh:
            prune(kube, model, desired)
        memory.remember_applied(key, model.metadata.generation)
    elif apply:
        # While a (changed) engine is not ready, whatever serves now is left alone rather than
        # replaced by objects pointing at an engine that does not exist yet, and the generation
        # stays unapplied: the Model event of the status reporting the engine ready applies it.
        # Only the replica count reaches the running Deployment now (e.g. 0, to free its GPUs).
        scale_kept_deployment(kube, view, model)
    return engine_state


def _refused(kube: Kube, memory: ModelMemory, body: dict[str, Any], model: Model, exc: KubeError, now: datetime,
             settings: OperatorSettings) -> Rejection:
    """Remembers the refusal (for its back-off) and tells it where users look: a Warning Event on
    the Model, one per refused attempt, next to the condition that status will show."""
    key = (model.metadata.namespace, model.metadata.name)
    rejection = memory.remember_rejection(key, model.metadata.generation, exc.message, now,
                                          base_s=settings.rejected_retry_base_s, cap_s=settings.rejected_retry_cap_s)
    REJECTED_WRITES.inc()
    log.warning("the API server refused the objects of Model %s/%s (attempt %d, next %s): %s", *key,
                rejection.attempts, _format(rejection.retry_at), exc)
    try:
        kube.record_event(body, "Warning", "ApplyRejected", f"{_describe(rejection)}")
    except Exception as event_exc:  # the condition still tells it
        log.warning("could not record an Event on Model %s/%s: %s", *key, event_exc)
    return rejection


def _describe(rejection: Rejection) -> str:
    return (f"the API server refused this spec's objects: {rejection.message} (attempt {rejection.attempts}; "
            f"next attempt at {_format(rejection.retry_at)}, or at once when the spec changes)")


def _engine_as_reported(model: Model) -> EngineObservation | None:
    """The engine step's report as the last status gave it, when the step itself cannot run."""
    if model.spec.runtime != Runtime.TENSORRT_LLM:
        return None
    cond = model.status.condition("EngineReady")
    if cond is None:
        return EngineObservation(False, "BuildPending", "the engine has not been looked at yet")
    return EngineObservation(cond.status == "True", cond.reason, cond.message, failed=cond.reason == "BuildFailed",
                             status=model.status.engine)


def observe(kube: Kube, view: ClusterView, model: Model, settings: OperatorSettings) -> Observed:
    key = (model.metadata.namespace, model.metadata.name)
    if model.spec.runtime == Runtime.EXTERNAL:
        ready, message = external.probe(model.spec.external.url, model.spec.external.tritonModel,
                                        settings.external_probe_timeout_s)
        return Observed(external_ready=ready, external_message=message)
    if model.spec.runtime not in (Runtime.LLAMA_CPP, Runtime.TENSORRT_LLM):
        return Observed()
    return Observed(deployment=_deployment(kube, view, key), unschedulable=view.unschedulable(key),
                    problems=source_problems(kube, model))


def scale_kept_deployment(kube: Kube, view: ClusterView, model: Model) -> None:
    key = (model.metadata.namespace, model.metadata.name)
    deployment = _deployment(kube, view, key)
    if deployment is not None and deployment.get("spec", {}).get("replicas") != model.spec.replicas:
        log.info("scaling the kept Deployment of Model %s/%s to %d replicas", *key, model.spec.replicas)
        kube.patch("Deployment", key[0], kit.Names(key[1]).workload, {"spec": {"replicas": model.spec.replicas}})


def _deployment(kube: Kube, view: ClusterView, key: Key) -> dict[str, Any] | None:
    known, deployment = view.deployment(key)
    if not known:  # e.g. just after a restart, before the watch caught up: ask once
        deployment = kube.get("Deployment", key[0], kit.Names(key[1]).workload)
        view.remember_deployment(key, deployment)
    return deployment


def source_problems(kube: Kube, model: Model) -> list[str]:
    source, namespace = model.spec.source, model.metadata.namespace
    problems = []
    if source and source.pvc and kube.get("PersistentVolumeClaim", namespace, source.pvc.claimName) is None:
        problems.append(f"PersistentVolumeClaim '{source.pvc.claimName}' (spec.source.pvc) not found in namespace '{namespace}'")
    token = source.huggingFace.tokenSecretRef if source and source.huggingFace else None
    if token and kube.get("Secret", namespace, token.name) is None:
        problems.append(f"Secret '{token.name}' (spec.source.huggingFace.tokenSecretRef) not found in namespace '{namespace}'")
    return problems


def prune(kube: Kube, model: Model, desired: list[dict[str, Any]]) -> None:
    """Deletes objects this Model owns that its current spec no longer renders."""
    keep = {(obj["kind"], obj["metadata"]["name"]) for obj in desired}
    selector = f"{kit.MODEL_LABEL}={model.metadata.name}"
    for kind in OWNED_KINDS:
        for obj in kube.list(kind, model.metadata.namespace, selector):
            owners = obj["metadata"].get("ownerReferences", [])
            if (kind, obj["metadata"]["name"]) not in keep and any(o.get("uid") == model.metadata.uid for o in owners):
                log.info("pruning %s %s of Model %s", kind, obj["metadata"]["name"], model.metadata.name)
                kube.delete(kind, model.metadata.namespace, obj["metadata"]["name"])


def _with_removals(previous: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """A merge patch from `previous` to `new`: fields `new` no longer has (e.g. an engine's
    retryAfter once the retry started) are nulled, or the merge would keep them."""
    patch = dict(new)
    for field, before in previous.items():
        if field not in new:
            patch[field] = None
        elif isinstance(before, dict) and isinstance(new[field], dict):
            patch[field] = _with_removals(before, new[field])
    return patch


def _dump(status: ModelStatus) -> dict[str, Any]:
    return status.model_dump(mode="json", exclude_none=True)


def _format(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
