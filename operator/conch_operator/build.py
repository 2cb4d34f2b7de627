"""TensorRT-LLM engine builds, the pure part: the build Job, the engine-cache claim, the record of
built engines, and what to do next given what the cluster shows. No I/O (engine.py does it).

Engines outlive everything that made them, so nothing here is owned by a Model: one build Job
per cache key and engine cache claim (Models with the same key and claim share it), the claim is
never deleted by the operator, and the `conch-engines` ConfigMap keeps one record per key and
claim — built (where, when, by which Job, into which claim), or failed (how often, why, when to
try again). The record, not the Job, is the truth: finished Jobs are garbage-collected after a
day, the record stays.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import Any

from conch_api import EngineStatus, Model

from .build_job import (ATTEMPT_ANNOTATION, BUILDER_CONTAINER, CLAIM_UID_ANNOTATION, claim_hash, claim_name, job_name,
                        managed_labels, uid_of)
from .settings import OperatorSettings

LEDGER = "conch-engines"  # ConfigMap: record_key (cache key and claim) → JSON record
MAX_FAILURE_CHARS = 3000  # of a failure message: enough for a traceback's end, small enough for status
MAX_CONFIG_MAP_KEY = 253


class Action(str, Enum):
    WAIT = "wait"  # nothing to change: building, built, or waiting out a back-off
    CREATE_JOB = "create-job"
    RECORD_BUILT = "record-built"
    RECORD_FAILURE = "record-failure"
    RETRY = "retry"  # delete the failed Job and create the next attempt


@dataclass(frozen=True)
class EngineObservation:
    """What status reports about the engine: the EngineReady condition and status.engine."""

    ready: bool
    reason: str
    message: str
    failed: bool = False
    status: EngineStatus | None = None


@dataclass(frozen=True)
class Decision:
    action: Action
    engine: EngineObservation
    record: dict[str, Any] | None = None  # the ledger entry to write (RECORD_*)
    attempt: int = 0  # attempt number of the Job to create (CREATE_JOB, RETRY)


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


def ledger_patch(key: str, record: dict[str, Any]) -> dict[str, Any]:
    """A merge patch touching only this key: other Models write other keys concurrently."""
    return {"data": {key: json.dumps(record, sort_keys=True)}}


def ledger_object(namespace: str, key: str, record: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": LEDGER, "namespace": namespace, "labels": managed_labels("engine-ledger")},
            **ledger_patch(key, record)}


def is_built(record: dict[str, Any] | None, claim: dict[str, Any] | None) -> bool:
    """Built, into this very claim: a claim deleted and created again has lost its engines."""
    return bool(record and record.get("state") == "built" and claim
                and record.get("claimUid") == claim["metadata"].get("uid"))


# ---------------------------------------------------------------------------------------- back-off


def retry_delay(attempts: int, settings: OperatorSettings) -> timedelta:
    """1st failure → base, then doubling (1m, 2m, 4m, …), capped."""
    seconds = settings.build_retry_base_s * 2 ** max(attempts - 1, 0)
    return timedelta(seconds=min(seconds, settings.build_retry_cap_s))


# -------------------------------------------------------------------------------------------- jobs


def job_outcome(job: dict[str, Any]) -> str:
    """running, succeeded or failed — from the Job's terminal conditions only (FailureTarget and
    SuccessCriteriaMet precede them while pods are still being cleaned up)."""
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("status") == "True" and cond.get("type") == "Complete":
            return "succeeded"
        if cond.get("status") == "True" and cond.get("type") == "Failed":
            return "failed"
    return "running"


def job_claim_uid(job: dict[str, Any]) -> str:
    return (job["metadata"].get("annotations") or {}).get(CLAIM_UID_ANNOTATION, "")


def job_attempt(job: dict[str, Any]) -> int:
    try:
        return int(job["metadata"].get("annotations", {}).get(ATTEMPT_ANNOTATION, "1"))
    except ValueError:
        return 1


def failure_recorded(record: dict[str, Any] | None, job: dict[str, Any]) -> bool:
    return bool(record and record.get("state") == "failed" and record.get("jobUid") == job["metadata"].get("uid"))


def failed_pod(pods: list[dict[str, Any]]) -> dict[str, Any] | None:
    failed = [p for p in pods if (p.get("status") or {}).get("phase") == "Failed"]
    return max(failed, key=lambda p: p["metadata"].get("creationTimestamp") or "") if failed else None


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


# ---------------------------------------------------------------------------------------- decision


def decide(model: Model, key: str, record: dict[str, Any] | None, claim: dict[str, Any] | None,
           job: dict[str, Any] | None, pods: list[dict[str, Any]], now: datetime, settings: OperatorSettings,
           *, failure: str = "") -> Decision:
    """The next step for one engine, from the record, the claim, the build Job and its pods.
    `failure` is the failed Job's message (failure_message), when it failed and is not recorded yet."""
    from conch_engines import tensorrt_llm

    path = tensorrt_llm.engine_dir(key).removeprefix(tensorrt_llm.CACHE_MOUNT).lstrip("/")
    claim_uid = uid_of(claim)
    job_for_claim = job_name(key, claim_name(model))
    base = EngineStatus(cacheKey=key, path=path)
    failures = record if record and record.get("state") == "failed" else None
    attempts = int(failures.get("attempts", 0)) if failures else 0
    if failures:
        base = base.model_copy(update={"attempts": attempts, "lastFailure": failures.get("lastFailure"),
                                       "job": failures.get("job")})

    if is_built(record, claim):
        built = EngineStatus(cacheKey=key, path=path, job=record.get("job"))
        reason = ready_reason(model)
        verb = "built by" if reason == "EngineBuilt" else "found in the engine cache, built by"
        message = f"engine {key} {verb} Job {record.get('job')} at {record.get('builtAt')}"
        return Decision(Action.WAIT, EngineObservation(True, reason, message, status=built))

    if job is None:
        retry_after = failures.get("retryAfter") if failures else None
        if retry_after and parse_time(retry_after) > now:
            return Decision(Action.WAIT, _failed(base, failures.get("lastFailure", ""), retry_after))
        attempt = attempts + 1
        engine = EngineObservation(False, "BuildPending", f"creating build Job {job_for_claim} (attempt {attempt})",
                                   status=base.model_copy(update={"job": job_for_claim}))
        return Decision(Action.CREATE_JOB, engine, attempt=attempt)

    name, attempt = job["metadata"]["name"], job_attempt(job)
    if job_claim_uid(job) != claim_uid:
        # Made for an earlier claim of this name (deleted and created again): whatever it built
        # went with that claim. Replaced at once by a Job for this one.
        message = f"replacing build Job {name}: it was made for an earlier engine cache claim {claim_name(model)}"
        engine = EngineObservation(False, "BuildPending", message, status=base.model_copy(update={"job": name}))
        return Decision(Action.RETRY, engine, attempt=attempts + 1)
    outcome = job_outcome(job)
    if outcome == "succeeded":
        record = {"state": "built", "path": path, "job": name, "builtAt": _completed_at(job, now),
                  "claimUid": claim_uid, "attempt": attempt,
                  "versions": {"tensorrtLLM": tensorrt_llm.TRTLLM_VERSION,
                               "builderImage": job["spec"]["template"]["spec"]["containers"][0]["image"]}}
        engine = EngineObservation(True, "EngineBuilt", f"engine {key} built by Job {name} at {record['builtAt']}",
                                   status=EngineStatus(cacheKey=key, path=path, job=name))
        return Decision(Action.RECORD_BUILT, engine, record=record)
    if outcome == "failed":
        if failure_recorded(record, job):
            retry_after = failures.get("retryAfter")
            if retry_after and parse_time(retry_after) > now:
                return Decision(Action.WAIT, _failed(base, failures.get("lastFailure", ""), retry_after))
            engine = EngineObservation(False, "BuildPending", f"retrying the build (attempt {attempts + 1}) after: "
                                       f"{failures.get('lastFailure', '')}", status=base)
            return Decision(Action.RETRY, engine, attempt=attempts + 1)
        retry_after = format_time(_failed_at(job, now) + retry_delay(attempt, settings))
        message = failure or f"build Job {name} failed"
        record = {"state": "failed", "attempts": attempt, "lastFailure": message, "retryAfter": retry_after,
                  "job": name, "jobUid": job["metadata"].get("uid")}
        status = base.model_copy(update={"attempts": attempt, "job": name})
        return Decision(Action.RECORD_FAILURE, _failed(status, message, retry_after), record=record)

    reason, message = progress(job, pods, attempt)
    # A new attempt is under way: retryAfter no longer applies (and no timer needs to watch it).
    return Decision(Action.WAIT, EngineObservation(False, reason, message,
                                                   status=base.model_copy(update={"job": name})))


def known_ready(model: Model, key: str) -> EngineObservation | None:
    """The previous status's word on the engine when it already reported this very engine ready:
    status-only reconciles reuse it instead of reading the claim and the ledger again."""
    condition, engine = model.status.condition("EngineReady"), model.status.engine
    if condition and condition.status == "True" and engine and engine.cacheKey == key:
        return EngineObservation(True, condition.reason, condition.message, status=engine)
    return None


def ready_reason(model: Model) -> str:
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


def retry_due(body: dict[str, Any], now: datetime) -> bool:
    """Has a Model's failed build waited out its back-off? (Read from its status by the periodic loop.)"""
    retry_after = ((body.get("status") or {}).get("engine") or {}).get("retryAfter")
    if not retry_after:
        return False
    try:
        return parse_time(retry_after) <= now
    except (TypeError, ValueError):
        return True  # mangled by hand: reconcile now, which writes a proper one


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def format_time(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
