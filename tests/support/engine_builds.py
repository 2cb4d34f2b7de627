"""Shared by the operator's unit tests of engine builds: TensorRT-LLM Models, build Jobs in every
state, and one call of plan.decide from the pieces of a snapshot."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from conch_api import Model
from conch_operator.builds import plan
from conch_operator.manifests import build_job
from conch_operator.manifests.tensorrt_llm import engine_key
from conch_operator.settings import OperatorSettings

SETTINGS = OperatorSettings()
NOW = datetime(2026, 9, 1, 12, 0, 0, tzinfo=timezone.utc)
CLAIM = {"metadata": {"name": "conch-engine-cache", "uid": "claim-1"}, "status": {"phase": "Bound"}}
JOB = "conch-engine-{key}-" + build_job.claim_hash("conch-engine-cache")  # the Job name for the default claim
COMPLETE = [{"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True"}]


def model(name: str = "qwen", status: dict | None = None, **spec) -> Model:
    spec.setdefault("runtime", "tensorrt-llm")
    spec.setdefault("quantization", "int4_gptq")
    tp = spec.get("engine", {}).get("tensorParallel", 1)
    spec.setdefault("gpu", {"count": tp, "product": "NVIDIA-L4"})
    spec.setdefault("source", {"huggingFace": {"repoId": "Qwen/Qwen2-7B-Instruct-GPTQ-Int4"}})
    return Model.model_validate({"metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}", "generation": 1},
                                 "spec": spec, "status": status or {}})


def key_of(m: Model) -> str:
    return engine_key(m)


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


def failed_pod(message: str = "ValueError: no GPTQ checkpoint", exit_code: int = 1) -> dict:
    return {"metadata": {"name": "conch-engine-x-abc", "creationTimestamp": "2026-09-01T11:50:00Z"},
            "status": {"phase": "Failed", "containerStatuses": [{"name": "builder", "state": {"terminated": {
                "exitCode": exit_code, "reason": "Error", "message": message}}}]}}


def ledger(m: Model, record: dict | None) -> dict | None:
    """The conch-engines ConfigMap holding `record` for m's engine and claim."""
    return {"data": {plan.target(m).record: json.dumps(record)}} if record else None


def decide(m: Model, record: dict | None, claim: dict | None, job_: dict | None, pods: list, now: datetime = NOW,
           ) -> plan.Decision:
    target = plan.target(m)
    return plan.decide(plan.Snapshot(m, target, claim, ledger(m, record), job_, pods, now), SETTINGS)
