"""The next step of one TensorRT-LLM engine build, decided from a snapshot of what the cluster
shows. Pure: `decide(snapshot, settings)` is the one entry, and its Decision says exactly what to
write (the ledger record, the Job to delete, the Job to create); `sync` only observes and carries out.

Engines outlive everything that made them, so nothing here is owned by a Model: one build Job
per cache key and engine cache claim (Models with the same key and claim share it), the claim is
never deleted by the operator, and the `conch-engines` ConfigMap (the ledger) keeps one record per
key and claim — built (where, when, by which Job, into which claim), or failed (how often, why,
when to try again). The record, not the Job, is the truth: finished Jobs are garbage-collected
after a day, the record stays.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import Any

from conch_api import EngineStatus, Model
from conch_engines import tensorrt_llm

from ..manifests import kit
from ..manifests.build_job import (ATTEMPT_ANNOTATION, BUILDER_CONTAINER, CLAIM_UID_ANNOTATION, build_job, claim_hash,
                                   claim_name, job_name, uid_of)
from ..manifests.tensorrt_llm import engine_key
from ..settings import OperatorSettings
from ..status import EngineObservation

LEDGER = "conch-engines"  # ConfigMap: record key (cache key and claim) → JSON record
MAX_FAILURE_CHARS = 3000  # of a failure message: enough for a traceback's end, small enough for status
MAX_CONFIG_MAP_KEY = 253


class Action(str, Enum):
    WAIT = "wait"  # nothing to change: building, built, or waiting out a back-off
    CREATE_JOB = "create-job"
    RECORD_BUILT = "record-built"
    RECORD_FAILURE = "record-failure"
    RETRY = "retry"  # delete the failed Job and create the next attempt


@dataclass(frozen=True)
class Target:
    """The names under which one Model's engine lives in its namespace."""

    namespace: str
    key: str  # the engine cache key: a hash of everything that shapes the engine
    claim: str  # the engine cache claim's name
    job: str  # the build Job's name
    record: str  # the ledger key


def target(model: Model) -> Target:
    key, claim = engine_key(model), claim_name(model)
    return Target(model.metadata.namespace, key, claim, job_name(key, claim), record_key(key, claim))


@dataclass(frozen=True)
class Snapshot:
    """Everything the decision depends on, observed in one pass."""

    model: Model
    target: Target
    claim: dict[str, Any] | None  # the engine cache claim
    ledger: dict[str, Any] | None  # the conch-engines ConfigMap
    job: dict[str, Any] | None  # the build Job of this key and claim; None when built (not looked at)
    pods: list[dict[str, Any]]  # that Job's pods, while it runs or once it failed
    now: datetime

    @property
    def record(self) -> dict[str, Any] | None:
        return read_record(self.ledger, self.target.record)


@dataclass(frozen=True)
class Decision:
    action: Action
    engine: EngineObservation
    record: dict[str, Any] | None = None  # the ledger entry to write (RECORD_*)
    attempt: int = 0  # attempt number of the Job to create (CREATE_JOB, RETRY)
    ledger_write: tuple[dict[str, Any], dict[str, Any]] | None = None  # (ConfigMap if missing, merge patch)
    job_to_delete: tuple[str, str] | None = None  # (name, uid): this very Job, not one created since
    job_to_create: dict[str, Any] | None = field(default=None, repr=False)


# ------------------------------------------------------------------------------------------ decide


def decide(snapshot: Snapshot, settings: OperatorSettings) -> Decision:
    """The next step for one engine, and what to write for it."""
    decision = _choose(snapshot, settings)
    s = snapshot
    if decision.record is not None:
        patch = {"data": {s.target.record: json.dumps(decision.record, sort_keys=True)}}
        ledger = {"apiVersion": "v1", "kind": "ConfigMap",
                  "metadata": {"name": LEDGER, "namespace": s.target.namespace,
                               "labels": kit.managed_labels("engine-ledger")}, **patch}
        decision = replace(decision, ledger_write=(ledger, patch))
    if decision.action == Action.RETRY and s.job is not None:
        decision = replace(decision, job_to_delete=(s.job["metadata"]["name"], s.job["metadata"]["uid"]))
    if decision.action in (Action.CREATE_JOB, Action.RETRY):
        decision = replace(decision, job_to_create=build_job(s.model, s.target.key, decision.attempt, settings,
                                                           uid_of(s.claim)))
    if s.claim and s.claim.get("status", {}).get("phase") == "Pending" and not decision.engine.ready:
        engine = decision.engine
        decision = replace(decision, engine=EngineObservation(
            engine.ready, engine.reason, f"{engine.message} (engine cache claim {s.target.claim} is not bound yet)",
            engine.failed, engine.status))
    return decision


def _choose(s: Snapshot, settings: OperatorSettings) -> Decision:
    key, record, claim, job = s.target.key, s.record, s.claim, s.job
    path = tensorrt_llm.engine_dir(key).removeprefix(tensorrt_llm.CACHE_MOUNT).lstrip("/")
    base = EngineStatus(cacheKey=key, path=path)
    failures = record if record and record.get("state") == "failed" else None
    attempts = int(failures.get("attempts", 0)) if failures else 0
    if failures:
        base = base.model_copy(update={"attempts": attempts, "lastFailure": failures.get("lastFailure"),
                                       "job": failures.get("job")})

    if is_built(record, claim):
        built = EngineStatus(cacheKey=key, path=path, job=record.get("job"))
        reason = _ready_reason(s.model)
        verb = "built by" if reason == "EngineBuilt" else "found in the engine cache, built by"
        message = f"engine {key} {verb} Job {record.get('job')} at {record.get('builtAt')}"
        return Decision(Action.WAIT, EngineObservation(True, reason, message, status=built))

    if job is None:
        retry_after = failures.get("retryAfter") if failures else None
        if retry_after and parse_time(retry_after) > s.now:
            return Decision(Action.WAIT, _failed(base, failures.get("lastFailure", ""), retry_after))
        attempt = attempts + 1
        engine = EngineObservation(False, "BuildPending", f"creating build Job {s.target.job} (attempt {attempt})",
                                   status=base.model_copy(update={"job": s.target.job}))
        return Decision(Action.CREATE_JOB, engine, attempt=attempt)

    name, attempt = job["metadata"]["name"], _job_attempt(job)
    if _job_claim_uid(job) != uid_of(claim):
        # Made for an earlier claim of this name (deleted and created again): whatever it built
        # went with that claim. Replaced at once by a Job for this one.
        message = f"replacing build Job {name}: it was made for an earlier engine cache claim {s.target.claim}"
        engine = EngineObservation(False, "BuildPending", message, status=base.model_copy(update={"job": name}))
        return Decision(Action.RETRY, engine, attempt=attempts + 1)
    outcome = job_outcome(job)
    if outcome == "succeeded":
        built_record = {"state": "built", "path": path, "job": name, "builtAt": _completed_at(job, s.now),
                        "claimUid": uid_of(claim), "attempt": attempt,
                        "versions": {"tensorrtLLM": tensorrt_llm.TRTLLM_VERSION,
                                     "builderImage": job["spec"]["template"]["spec"]["containers"][0]["image"]}}
        engine = EngineObservation(True, "EngineBuilt", f"engine {key} built by Job {name} at {built_record['builtAt']}",
                                   status=EngineStatus(cacheKey=key, path=path, job=name))
        return Decision(Action.RECORD_BUILT, engine, record=built_record)
    if outcome == "failed":
        if _failure_recorded(record, job):
            retry_after = failures.get("retryAfter")
            if retry_after and parse_time(retry_after) > s.now:
                return Decision(Action.WAIT, _failed(base, failures.get("lastFailure", ""), retry_after))
            engine = EngineObservation(False, "BuildPending", f"retrying the build (attempt {attempts + 1}) after: "
                                       f"{failures.get('lastFailure', '')}", status=base)
            return Decision(Action.RETRY, engine, attempt=attempts + 1)
        retry_after = format_time(_failed_at(job, s.now) + retry_delay(attempt, settings))
        message = failure_message(job, _failed_pod(s.pods))
        failed_record = {"state": "failed", "attempts": attempt, "lastFailure": message, "retryAfter": retry_after,
                         "job": name, "jobUid": job["metadata"].get("uid")}
        status = base.model_copy(update={"attempts": attempt, "job": name})
        return Decision(Action.RECORD_FAILURE, _failed(status, message, retry_after), record=failed_record)

    reason, message = progress(job, s.pods, attempt)
    # A new attempt is under way: retryAfter no longer applies (and no timer needs to watch it).
    return Decision(Action.WAIT, EngineObservation(False, reason, message, status=base.model_copy(update={"job": name})))


def known_ready(model: Model, key: str) -> EngineObservation | None:
    """The previous status's word on the engine when it already reported this very engine ready:
    status-only reconciles reuse it instead of reading the claim and the ledger again."""
    condition, engine = model.status.condition("EngineReady"), model.status.engine
    if condition and condition.status == "True" and engine and engine.cacheKey == key:
        return EngineObservation(True, condition.reason, condition.message, status=engine)
    return None


def pods_matter(job: dict[str, Any] | None) -> bool:
    """Are the Job's pods worth listing? Only while it runs (progress) or once it failed (why)."""
    return job is not None and job_outcome(job) != "succeeded"


def retry_due(body: dict[str, Any], now: datetime) -> bool:
    """Has a Model's failed build waited out its back-off? (Read from its status by the periodic loop.)"""
    retry_after = ((body.get("status") or {}).get("engine") or {}).get("retryAfter")
    if not retry_after:
        return False
    try:
        return parse_time(retry_after) <= now
    except (TypeError, ValueError):
        return True  # mangled by hand: reconcile now, which writes a proper one


# ------------------------------------------------------------------------------------------- ledger


def record_key(key: str, claim: str) -> str:
    """The ledger key of one engine in one claim: the same engine in another claim is another
    record. ConfigMap keys allow [-._a-zA-Z0-9] (claim names are DNS names) up to 253 characters."""
    text = f"{key}.{claim}"
    return text if len(text) <= MAX_CONFIG_MAP_KEY else f"{key}.{claim_hash(claim)}"


def read_record(ledger: dict[str, Any] | None, key: str) -> dict[str, Any] | None:
    raw = ((ledger or {}).get("data") or {}).get(key)
    if not raw:
        return None
    try:
        record = json.loads(raw)
    except ValueError:
        return None  # hand-edited into nonsense: as if never built
    return record if isinstance(record, dict) else None


def is_built(record: dict[str, Any] | None, claim: dict[str, Any] | None) -> bool:
    """Built, into this very claim: a claim deleted and created again has lost its engines."""
    return bool(record and record.get("state") == "built" and claim
                and record.get("claimUid") == claim["metadata"].get("uid"))


# ---------------------------------------------------------------------------------- Jobs and pods


def retry_delay(attempts: int, settings: OperatorSettings) -> timedelta:
    """1st failure → base, then doubling (1m, 2m, 4m, …), capped."""
    seconds = settings.build_retry_base_s * 2 ** max(attempts - 1, 0)
    return timedelta(seconds=min(seconds, settings.build_retry_cap_s))


def job_outcome(job: dict[str, Any]) -> str:
    """running, succeeded or failed — from the Job's terminal conditions only (FailureTarget and
    SuccessCriteriaMet precede them while pods are still being cleaned up)."""
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("status") == "True" and cond.get("type") == "Complete":
            return "succeeded"
        if cond.get("status") == "True" and cond.get("type") == "Failed":
            return "failed"
    return "running"


def failure_message(job: dict[str, Any], pod: dict[str, Any] | None) -> str:
    """Why the build failed: the Job's reason, then the builder's own words — its termination
    message, which the kubelet fills with the end of its log when it wrote none
    (terminationMessagePolicy FallbackToLogsOnError)."""
    cond = next((c for c in job.get("status", {}).get("conditions") or []
                 if c.get("type") == "Failed" and c.get("status") == "True"), {})
    parts = [f"build Job {job['metadata']['name']} failed: {cond.get('reason', 'Failed')}"
             + (f" ({cond['message']})" if cond.get("message") else "")]
    terminated = _terminated(pod) if pod else None
    if pod and terminated:
        said = (terminated.get("message") or "").strip()
        parts.append(f"pod {pod['metadata']['name']} exited with code {terminated.get('exitCode')}"
                     + (f" ({terminated['reason']})" if terminated.get("reason") else "")
                     + (f": {said}" if said else ""))
    text = "; ".join(parts)
    return text if len(text) <= MAX_FAILURE_CHARS else "…" + text[-MAX_FAILURE_CHARS:]


def progress(job: dict[str, Any], pods: list[dict[str, Any]], attempt: int) -> tuple[str, str]:
    """(reason, message) of a build under way: BuildPending until a builder pod runs, then Building."""
    name = job["metadata"]["name"]
    status = job.get("status") or {}
    retries = f"; {status['failed']} pod(s) failed so far" if status.get("failed") else ""
    live = [p for p in pods if (p.get("status") or {}).get("phase") in ("Pending", "Running")]
    running = [p for p in live if p["status"]["phase"] == "Running"]
    if running:
        pod = running[0]
        since = pod["status"].get("startTime", "")
        return "Building", f"build Job {name} (attempt {attempt}) running in pod {pod['metadata']['name']} since {since}{retries}"
    for pod in live:
        for cond in pod["status"].get("conditions") or []:
            if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
                return "BuildPending", (f"build Job {name} (attempt {attempt}) waiting for a node: "
                                        f"{cond.get('message') or cond.get('reason', '')}{retries}")
        for container in pod["status"].get("containerStatuses") or []:
            waiting = (container.get("state") or {}).get("waiting")
            if waiting:
                detail = waiting.get("reason", "") + (f": {waiting['message']}" if waiting.get("message") else "")
                return "BuildPending", f"build Job {name} (attempt {attempt}) starting: {detail}{retries}"
    if any((p.get("status") or {}).get("phase") == "Succeeded" for p in pods):
        return "Building", f"build Job {name} (attempt {attempt}): the builder finished, the Job is completing"
    return "BuildPending", f"build Job {name} (attempt {attempt}) created, waiting for its pod{retries}"


def _job_claim_uid(job: dict[str, Any]) -> str:
    return (job["metadata"].get("annotations") or {}).get(CLAIM_UID_ANNOTATION, "")


def _job_attempt(job: dict[str, Any]) -> int:
    try:
        return int(job["metadata"].get("annotations", {}).get(ATTEMPT_ANNOTATION, "1"))
    except ValueError:
        return 1


def _failure_recorded(record: dict[str, Any] | None, job: dict[str, Any]) -> bool:
    return bool(record and record.get("state") == "failed" and record.get("jobUid") == job["metadata"].get("uid"))


def _failed_pod(pods: list[dict[str, Any]]) -> dict[str, Any] | None:
    failed = [p for p in pods if (p.get("status") or {}).get("phase") == "Failed"]
    return max(failed, key=lambda p: p["metadata"].get("creationTimestamp") or "") if failed else None


def _terminated(pod: dict[str, Any]) -> dict[str, Any] | None:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == BUILDER_CONTAINER:
            return (status.get("state") or {}).get("terminated") or (status.get("lastState") or {}).get("terminated")
    return None


def _failed_at(job: dict[str, Any], now: datetime) -> datetime:
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Failed" and cond.get("status") == "True" and cond.get("lastTransitionTime"):
            return parse_time(cond["lastTransitionTime"])
    return now


def _ready_reason(model: Model) -> str:
    """EngineBuilt when this Model waited for the build; EngineCached when it found the engine built."""
    before = model.status.condition("EngineReady")
    if before and (before.reason == "EngineBuilt"
                   or (before.status == "False" and before.reason in ("BuildPending", "Building", "BuildFailed"))):
        return "EngineBuilt"
    return "EngineCached"


def _failed(status: EngineStatus, message: str, retry_after: str) -> EngineObservation:
    text = f"{message}; next attempt after {retry_after}"
    return EngineObservation(False, "BuildFailed", text, failed=True,
                             status=status.model_copy(update={"lastFailure": message, "retryAfter": retry_after}))


def _completed_at(job: dict[str, Any], now: datetime) -> str:
    return (job.get("status") or {}).get("completionTime") or format_time(now)


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def format_time(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
