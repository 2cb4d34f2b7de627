"""One engine step of a reconcile (runtime tensorrt-llm), in three straight steps: observe the
engine's claim, ledger record, build Job and pods into a snapshot; let `plan.decide` choose; carry
the decision out. Level-based like the rest: any number of Models sharing a cache key and claim,
operator restarts and repeated events converge on one Job per attempt and one record per key and
claim (Job names are made of both; creates that lose a race are no-ops, deletes name the Job's UID)."""

from __future__ import annotations

import logging
from datetime import datetime

from conch_api import Model

from ..kube import Kube
from ..manifests import build_job, tensorrt_llm
from ..settings import OperatorSettings
from ..status import EngineObservation
from ..view import ClusterView
from . import plan

log = logging.getLogger("conch.operator")


def sync(kube: Kube, view: ClusterView, model: Model, settings: OperatorSettings, now: datetime, *,
         recheck: bool = True) -> EngineObservation:
    """`recheck=False` (status-only reconciles) trusts a previous status that reported this engine
    ready: built engines do not change, and spec changes and resyncs recheck."""
    if not tensorrt_llm.uses_engine(model):
        return EngineObservation(True, "NoBuildNeeded", "the pytorch backend loads the checkpoint itself")
    target = plan.target(model)
    view.use_engine((target.namespace, model.metadata.name), target.namespace, target.key)  # its Job's events find it
    known = None if recheck else plan.known_ready(model, target.key)
    if known is not None:
        return known
    snapshot = observe(kube, model, target, now)
    decision = plan.decide(snapshot, settings)
    carry_out(kube, model, decision)
    return decision.engine


def observe(kube: Kube, model: Model, target: plan.Target, now: datetime) -> plan.Snapshot:
    """What the decision needs. The claim is made first if missing: every later step (the Job's
    claim UID, the record's) refers to it, and creating it twice is a no-op."""
    claim = kube.get("PersistentVolumeClaim", target.namespace, target.claim)
    if claim is None:
        log.info("creating engine cache claim %s/%s", target.namespace, target.claim)
        claim = kube.create(build_job.cache_claim(model)) or kube.get("PersistentVolumeClaim", target.namespace,
                                                                       target.claim)
    ledger = kube.get("ConfigMap", target.namespace, plan.LEDGER)
    job, pods = None, []
    if not plan.is_built(plan.read_record(ledger, target.record), claim):
        job = kube.get("Job", target.namespace, target.job)
        if plan.pods_matter(job):
            # This Job's pods only, not those of an earlier attempt still being collected.
            pods = kube.list("Pod", target.namespace, f"batch.kubernetes.io/controller-uid={job['metadata']['uid']}")
    return plan.Snapshot(model=model, target=target, claim=claim, ledger=ledger, job=job, pods=pods, now=now)


def carry_out(kube: Kube, model: Model, decision: plan.Decision) -> None:
    namespace = model.metadata.namespace
    if decision.ledger_write:
        kube.merge_patch(*decision.ledger_write)
    if decision.action == plan.Action.RECORD_BUILT:
        log.info("engine %s built by Job %s", decision.engine.status.cacheKey, decision.record["job"])
    if decision.action == plan.Action.RECORD_FAILURE:
        log.warning("engine build %s failed (attempt %d): %s", decision.engine.status.cacheKey,
                    decision.record["attempts"], decision.record["lastFailure"])
    if decision.job_to_delete:
        name, uid = decision.job_to_delete
        log.info("deleting build Job %s to retry", name)
        # This very Job only: another Model sharing it may have replaced it with the next attempt already.
        kube.delete("Job", namespace, name, uid=uid)
    if decision.job_to_create:
        # After a delete the name may still be taken for a moment: then the Job's DELETED event
        # brings the next reconcile, which creates it.
        manifest = decision.job_to_create
        if kube.create(manifest) is not None:
            log.info("created build Job %s (attempt %d) for Model %s/%s", manifest["metadata"]["name"],
                     decision.attempt, namespace, model.metadata.name)
