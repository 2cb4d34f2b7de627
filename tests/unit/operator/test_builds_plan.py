"""Engine build decisions from a snapshot: sharing, per-claim records, failure, back-off, retries."""

from __future__ import annotations

from datetime import timedelta

from conch_engines import tensorrt_llm
from conch_operator.builds import plan
from conch_operator.builds.plan import Action
from conch_operator.manifests import build_job
from support.engine_builds import (CLAIM, COMPLETE, JOB, NOW, SETTINGS, decide, failed, failed_pod, job, key_of,
                                   model)


def test_first_model_creates_the_job_and_waits_for_it():
    m = model()
    decision = decide(m, None, CLAIM, None, [], NOW)
    assert decision.action == Action.CREATE_JOB and decision.attempt == 1
    assert (decision.engine.ready, decision.engine.reason) == (False, "BuildPending")
    assert decision.engine.status.cacheKey == key_of(m) and decision.engine.status.job == JOB.format(key=key_of(m))

    pending = {"metadata": {"name": "p"}, "status": {"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
         "message": "0/4 nodes are available: 4 Insufficient nvidia.com/gpu."}]}}
    waiting = decide(m, None, CLAIM, job(m, active=1), [pending], NOW)
    assert waiting.action == Action.WAIT and waiting.engine.reason == "BuildPending"
    assert "Insufficient nvidia.com/gpu" in waiting.engine.message

    running = {"metadata": {"name": "p"}, "status": {"phase": "Running", "startTime": "2026-09-01T11:58:00Z"}}
    building = decide(m, None, CLAIM, job(m, active=1), [running], NOW)
    assert building.action == Action.WAIT and building.engine.reason == "Building"
    assert "running in pod p since 2026-09-01T11:58:00Z" in building.engine.message


def test_success_is_recorded_then_shared():
    first = model("first", status={"conditions": [{"type": "EngineReady", "status": "False", "reason": "Building"}]})
    key = key_of(first)
    done = decide(first, None, CLAIM, job(first, conditions=COMPLETE, completionTime="2026-09-01T11:59:30Z"),
                        [], NOW)
    assert done.action == Action.RECORD_BUILT
    assert (done.engine.ready, done.engine.reason) == (True, "EngineBuilt")
    record = done.record
    assert record["path"] == f"engines/{key}/engine" and record["builtAt"] == "2026-09-01T11:59:30Z"
    assert record["job"] == JOB.format(key=key) and record["claimUid"] == "claim-1"
    assert record["versions"]["tensorrtLLM"] == tensorrt_llm.TRTLLM_VERSION
    ledger, patch = done.ledger_write  # the ConfigMap if missing, else a merge patch of this one key
    assert plan.read_record(ledger, plan.target(first).record) == record and "ownerReferences" not in ledger["metadata"]
    assert patch == {"data": {plan.target(first).record: ledger["data"][plan.target(first).record]}}
    assert done.job_to_create is None and done.job_to_delete is None

    # A second Model with the same engine inputs (other name, replicas, display name): same key,
    # no Job looked at or created, EngineCached.
    second = model("second", replicas=3, displayName="Qwen 2")
    assert key_of(second) == key
    cached = decide(second, record, CLAIM, None, [], NOW)
    assert cached.action == Action.WAIT and (cached.engine.ready, cached.engine.reason) == (True, "EngineCached")
    # The builder's Model keeps saying EngineBuilt on later reconciles.
    first_after = model("first", status={"conditions": [{"type": "EngineReady", "status": "True", "reason": "EngineBuilt"}]})
    assert decide(first_after, record, CLAIM, None, [], NOW).engine.reason == "EngineBuilt"

    # A claim deleted and created again has lost its engines: build again.
    fresh_claim = {"metadata": {"name": "conch-engine-cache", "uid": "claim-2"}}
    assert decide(second, record, fresh_claim, None, [], NOW).action == Action.CREATE_JOB


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
    message = plan.failure_message(failed_job, pod)
    assert message.startswith(f"build Job {JOB.format(key=key)} failed: BackoffLimitExceeded")
    assert "exited with code 1 (Error): ValueError: no GPTQ checkpoint" in message

    decision = decide(m, None, CLAIM, failed_job, [pod], NOW)
    assert decision.action == Action.RECORD_FAILURE
    engine = decision.engine
    assert (engine.ready, engine.reason, engine.failed) == (False, "BuildFailed", True)
    assert engine.status.attempts == 1 and engine.status.lastFailure == message
    assert engine.status.retryAfter == "2026-09-01T12:00:00Z"  # failed at 11:59 + 1 minute
    assert decision.record["jobUid"] == "job-1" and decision.record["attempts"] == 1

    # Recorded: no second record; before retryAfter nothing happens, after it the Job is replaced.
    record = decision.record
    early = decide(m, record, CLAIM, failed_job, [pod], NOW - timedelta(seconds=30))
    assert early.action == Action.WAIT and early.engine.reason == "BuildFailed"
    due = decide(m, record, CLAIM, failed_job, [pod], NOW + timedelta(seconds=1))
    assert due.action == Action.RETRY and due.attempt == 2
    assert due.engine.status.retryAfter is None and due.engine.status.attempts == 1
    # The failed Job already gone (TTL, or deleted by the retry): same schedule.
    assert decide(m, record, CLAIM, None, [], NOW - timedelta(seconds=30)).action == Action.WAIT
    assert decide(m, record, CLAIM, None, [], NOW + timedelta(seconds=1)).attempt == 2


def test_failure_message_is_the_termination_message():
    """The kubelet puts the log's end into the termination message when the builder wrote none
    (FallbackToLogsOnError): the operator reads no logs."""
    m = model()
    message = plan.failure_message(job(m, conditions=failed(reason="DeadlineExceeded")),
                                    failed_pod(message="loading checkpoint\nCUDA out of memory\n"))
    assert "DeadlineExceeded" in message and message.endswith("CUDA out of memory")
    silent = plan.failure_message(job(m, conditions=failed()), failed_pod(message=""))
    assert silent.endswith("exited with code 1 (Error)")
    huge = plan.failure_message(job(m, conditions=failed()), failed_pod(message="x" * 10_000))
    assert len(huge) <= plan.MAX_FAILURE_CHARS + 1


def test_back_off_doubles_and_is_capped():
    delays = [plan.retry_delay(n, SETTINGS).total_seconds() for n in range(1, 9)]
    assert delays == [60, 120, 240, 480, 960, 1920, 3600, 3600]
    second = model()
    decision = decide(second, {"state": "failed", "attempts": 1, "jobUid": "old"}, CLAIM,
                            job(second, attempt=2, uid="job-2", conditions=failed(at="2026-09-01T12:00:00Z")),
                            [], NOW)
    assert decision.record["attempts"] == 2 and decision.record["retryAfter"] == "2026-09-01T12:02:00Z"


def test_retry_due_reads_the_status():
    body = {"status": {"engine": {"retryAfter": "2026-09-01T12:00:00Z"}}}
    assert plan.retry_due(body, NOW) and not plan.retry_due(body, NOW - timedelta(seconds=1))
    assert not plan.retry_due({"status": {}}, NOW)
    # Edited by hand into nonsense: due (the reconcile writes a proper one), never an exception.
    assert plan.retry_due({"status": {"engine": {"retryAfter": "soon"}}}, NOW)
    assert plan.retry_due({"status": {"engine": {"retryAfter": "2026-09-01T12:00:00"}}}, NOW)  # no zone


def test_job_and_record_are_per_claim():
    """Same engine inputs, other claims: each claim gets its own Job and record."""
    a, b = model("a"), model("b", tensorrtLLM={"engineCache": {"claimName": "team-b-engines"}})
    key = key_of(a)
    assert key_of(b) == key
    job_a, job_b = (build_job.build_job(m, key, 1, SETTINGS, "uid")["metadata"]["name"] for m in (a, b))
    assert job_a != job_b and job_a.startswith(f"conch-engine-{key}-") and len(job_b) <= 63
    assert plan.record_key(key, "conch-engine-cache") == f"{key}.conch-engine-cache"
    assert plan.record_key(key, "team-b-engines") != plan.record_key(key, "conch-engine-cache")
    long = plan.record_key(key, "x" * 253)  # ConfigMap keys hold at most 253 characters
    assert len(long) <= 253 and long != plan.record_key(key, "x" * 252 + "y")

    # a's engine is built into a's claim; b's claim has no record: b builds its own.
    ledger, _ = decide(a, None, CLAIM, job(a, conditions=COMPLETE), [], NOW).ledger_write
    other_claim = {"metadata": {"name": "team-b-engines", "uid": "claim-b"}}
    assert plan.read_record(ledger, plan.record_key(key, "conch-engine-cache"))
    assert plan.read_record(ledger, plan.record_key(key, "team-b-engines")) is None
    created = decide(b, None, other_claim, None, [], NOW)
    assert created.action == Action.CREATE_JOB and created.engine.status.job == job_b


def test_job_made_for_an_earlier_claim_is_replaced():
    """A claim deleted and created again under its name: the old Job's success built nothing in it."""
    m = model()
    key = key_of(m)
    recreated = {"metadata": {"name": "conch-engine-cache", "uid": "claim-2"}}
    stale = job(m, conditions=COMPLETE, claim_uid="claim-1")
    decision = decide(m, None, recreated, stale, [], NOW)
    assert decision.action == Action.RETRY and decision.attempt == 1 and not decision.engine.ready
    assert "earlier engine cache claim" in decision.engine.message
    # Made for this claim: recorded as built into it.
    done = decide(m, None, recreated, job(m, conditions=COMPLETE, claim_uid="claim-2"), [], NOW)
    assert done.action == Action.RECORD_BUILT and done.record["claimUid"] == "claim-2"
