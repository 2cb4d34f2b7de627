"""One reconcile: render the desired objects, apply them, prune what is no longer desired, observe,
and publish status. Level-based — every trigger runs the same function — so creation, updates,
operator restarts and the periodic resync all converge on the same state."""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from datetime import datetime, timezone
from typing import Any

from conch_api import Model, ModelStatus, Runtime

from . import external, render
from .kube import OWNED_KINDS, Kube
from .settings import OperatorSettings
from .status import Observed, compute_status

log = logging.getLogger("conch.operator")

# Events of a Model and of what it owns arrive on different threads. Reconciles of one Model
# run one at a time, each observing afresh, so an older observation never overwrites a newer one.
_locks: defaultdict[tuple[str, str], threading.Lock] = defaultdict(threading.Lock)


def reconcile(kube: Kube, body: dict[str, Any], settings: OperatorSettings, *, apply: bool = True,
              prune_stale: bool = True, fresh: bool = False) -> ModelStatus | None:
    """`apply=False` only refreshes status (for events of owned objects). `fresh` says `body` was
    just read from the API server; otherwise (a queued kopf event) it is read again under the lock."""
    key = (body["metadata"]["namespace"], body["metadata"]["name"])
    with _locks[key]:
        if not fresh:
            body = kube.get("Model", *key)
            if body is None:
                _locks.pop(key, None)
                return None
        model = Model.model_validate(body)
        if model.metadata.deletionTimestamp:
            _locks.pop(key, None)
            return None  # garbage collection removes what it owns
        if apply:
            desired = render.desired_objects(model, settings)
            for obj in desired:
                kube.apply(obj)
            if prune_stale:
                prune(kube, model, desired)
        status = compute_status(model, observe(kube, model, settings), _now())
        if _dump(status) != _dump(model.status):
            kube.patch_status(model.metadata.namespace, model.metadata.name, _dump(status))
        return status


def observe(kube: Kube, model: Model, settings: OperatorSettings) -> Observed:
    namespace = model.metadata.namespace
    if model.spec.runtime == Runtime.EXTERNAL:
        ready, message = external.probe(model.spec.external.url, model.spec.external.tritonModel,
                                        settings.external_probe_timeout_s)
        return Observed(external_ready=ready, external_message=message)
    if model.spec.runtime != Runtime.LLAMA_CPP:
        return Observed()
    deployment = kube.get("Deployment", namespace, render.Names(model.metadata.name).workload)
    ready = (deployment or {}).get("status", {}).get("readyReplicas", 0)
    # Pods only explain what is wrong; when every replica is ready there is nothing to explain.
    pods = [] if ready >= model.spec.replicas else kube.list("Pod", namespace, render.selector_string(model))
    return Observed(deployment=deployment, pods=pods, problems=source_problems(kube, model))


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
    selector = f"{render.MODEL_LABEL}={model.metadata.name}"
    for kind in OWNED_KINDS:
        for obj in kube.list(kind, model.metadata.namespace, selector):
            owners = obj["metadata"].get("ownerReferences", [])
            if (kind, obj["metadata"]["name"]) not in keep and any(o.get("uid") == model.metadata.uid for o in owners):
                log.info("pruning %s %s of Model %s", kind, obj["metadata"]["name"], model.metadata.name)
                kube.delete(kind, model.metadata.namespace, obj["metadata"]["name"])


def _dump(status: ModelStatus) -> dict[str, Any]:
    return status.model_dump(mode="json", exclude_none=True)


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
