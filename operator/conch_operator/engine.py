"""One engine step of a reconcile (runtime tensorrt-llm): observe the engine's record, claim, build
Job and pods, let build.decide choose, carry the decision out. Level-based like the rest: any
number of Models sharing a cache key and claim, operator restarts and repeated events converge on
one Job per attempt and one record per key and claim (Job names are made of both; creates that
lose a race are no-ops, deletes name the Job's UID)."""

from __future__ import annotations

import logging
from datetime import datetime

from conch_api import Model

from . import build, build_job, render_trtllm
from .build import Action, EngineObservation
from .kube import Kube
from .settings import OperatorSettings
from .view import ClusterView

log = logging.getLogger("conch.operator")


def sync(kube: Kube, view: ClusterView, model: Model, settings: OperatorSettings, now: datetime, *,
         recheck: bool = True) -> EngineObservation:
    """`recheck=False` (status-only reconciles) trusts a previous status that reported this engine
    ready: built engines do not change, and spec changes and resyncs recheck."""
    if not render_trtllm.uses_engine(model):
        return EngineObservation(True, "NoBuildNeeded", "the pytorch backend loads the checkpoint itself")
    namespace = model.metadata.namespace
    key = render_trtllm.engine_key(model)
    view.use_engine((namespace, model.metadata.name), namespace, key)  # so its Job's events find this Model
    known = None if recheck else build.known_ready(model, key)
    if known is not None:
        return known

    claim_name = build_job.claim_name(model)
    claim = kube.get("PersistentVolumeClaim", namespace, claim_name)
    if claim is None:
        log.info("creating engine cache claim %s/%s", namespace, claim_name)
        claim = kube.create(build_job.cache_claim(model)) or kube.get("PersistentVolumeClaim", namespace, claim_name)
    record = build.read_record(kube.get("ConfigMap", namespace, build.LEDGER), build.record_key(key, claim_name))
    job = pods = None
    failure = ""
    if not build.is_built(record, claim):
        job = kube.get("Job", namespace, build_job.job_name(key, claim_name))
        if job is not None and build.job_outcome(job) != "succeeded":
            # This Job's pods only, not those of an earlier attempt still being collected.
            pods = kube.list("Pod", namespace, f"batch.kubernetes.io/controller-uid={job['metadata']['uid']}")
        if job is not None and build.job_outcome(job) == "failed" and not build.failure_recorded(record, job):
            failure = build.failure_message(job, build.failed_pod(pods or []))

    decision = build.decide(model, key, record, claim, job, pods or [], now, settings, failure=failure)
    _carry_out(kube, model, key, decision, job, claim, settings)
    if decision.action == Action.RECORD_BUILT:
        log.info("engine %s built by Job %s", key, decision.record["job"])
    if claim and claim.get("status", {}).get("phase") == "Pending" and not decision.engine.ready:
        return EngineObservation(decision.engine.ready, decision.engine.reason,
                                 f"{decision.engine.message} (engine cache claim {claim_name} is not "
                                 "bound yet)", decision.engine.failed, decision.engine.status)
    return decision.engine


def _carry_out(kube: Kube, model: Model, key: str, decision: build.Decision, job: dict | None, claim: dict | None,
               settings: OperatorSettings) -> None:
    namespace = model.metadata.namespace
    if decision.action in (Action.RECORD_BUILT, Action.RECORD_FAILURE):
        record_key = build.record_key(key, build_job.claim_name(model))
        kube.merge_patch(build.ledger_object(namespace, record_key, decision.record),
                         build.ledger_patch(record_key, decision.record))
    if decision.action == Action.RECORD_FAILURE:
        log.warning("engine build %s failed (attempt %d): %s", key, decision.record["attempts"],
                    decision.record["lastFailure"])
    if decision.action == Action.RETRY and job is not None:
        log.info("deleting build Job %s to retry", job["metadata"]["name"])
        # This very Job only: another Model sharing it may have replaced it with the next attempt already.
        kube.delete("Job", namespace, job["metadata"]["name"], uid=job["metadata"]["uid"])
    if decision.action in (Action.CREATE_JOB, Action.RETRY):
        # After a delete the name may still be taken for a moment: then the Job's DELETED event
        # brings the next reconcile, which creates it.
        manifest = build_job.build_job(model, key, decision.attempt, settings, build_job.uid_of(claim))
        if kube.create(manifest) is not None:
            log.info("created build Job %s (attempt %d) for Model %s/%s", manifest["metadata"]["name"],
                     decision.attempt, namespace, model.metadata.name)
