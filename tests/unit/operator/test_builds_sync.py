"""The engine step against a recording fake API: observe → decide → carry out."""

from __future__ import annotations

from conch_operator.builds import plan, sync
from conch_operator.manifests import build_job
from conch_operator.view import ClusterView
from support.engine_builds import CLAIM, JOB, NOW, SETTINGS, failed, job, key_of, ledger, model
from support.fake_kube import FakeKube


def test_retry_deletes_only_the_failed_job():
    m = model()
    key = key_of(m)
    failed_job = job(m, uid="job-7", conditions=failed())
    record = {"state": "failed", "attempts": 1, "jobUid": "job-7", "retryAfter": "2026-09-01T11:00:00Z"}
    kube = FakeKube({("PersistentVolumeClaim", "conch-engine-cache"): CLAIM,
                     ("ConfigMap", plan.LEDGER): ledger(m, record),
                     ("Job", JOB.format(key=key)): failed_job})
    assert sync.sync(kube, ClusterView(), m, SETTINGS, NOW).reason == "BuildPending"
    assert ("delete", "Job", "ns", JOB.format(key=key), {"uid": "job-7"}) in kube.calls
    (created,) = [c[1] for c in kube.calls if c[0] == "create"]
    assert created["metadata"]["annotations"][build_job.CLAIM_UID_ANNOTATION] == "claim-1"
    assert created["metadata"]["annotations"][build_job.ATTEMPT_ANNOTATION] == "2"


def test_status_only_reconcile_trusts_a_built_engine():
    class NoAPI:
        def __getattr__(self, verb):
            raise AssertionError(f"status-only reconcile of a built engine called kube.{verb}")

    m = model()

    def reported(engine_key: str) -> Model:
        return model(status={"conditions": [{"type": "EngineReady", "status": "True", "reason": "EngineBuilt",
                                             "message": "engine built"}],
                             "engine": {"cacheKey": engine_key, "path": "p", "job": "j"}})

    observed = sync.sync(NoAPI(), ClusterView(), reported(key_of(m)), SETTINGS, NOW, recheck=False)
    assert (observed.ready, observed.reason, observed.status.job) == (True, "EngineBuilt", "j")
    # Another key (the spec changed) or not ready yet: looked at again.
    assert plan.known_ready(reported("other"), key_of(m)) is None and plan.known_ready(m, key_of(m)) is None
