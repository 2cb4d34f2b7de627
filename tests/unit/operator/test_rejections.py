"""Writes the API server refuses, and losing contact with it: shown in status and as an Event,
retried with back-off (at once for a new spec), and what failed for want of an answer retried as
soon as the API server answers again."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest
import urllib3

from conch_api import Phase
from conch_operator import reconcile
from conch_operator.kube import Kube, KubeError
from conch_operator.memory import ModelMemory
from conch_operator.settings import OperatorSettings
from conch_operator.view import ClusterView
from conch_operator.workqueue import WorkQueue
from support.fake_kube import FakeKube

SETTINGS = OperatorSettings(rejected_retry_base_s=60, rejected_retry_cap_s=1800)
KEY = ("ns", "m")
NOW = datetime(2026, 9, 1, 12, 0, tzinfo=timezone.utc)
INVALID = ('Deployment.apps "m-triton" is invalid: spec.template.spec.containers[0].resources.requests[memory]: '
           'Invalid value: "lots": quantities must match the regular expression')
SERVING = {"metadata": {"name": "m-triton"}, "spec": {"replicas": 1},
           "status": {"replicas": 1, "readyReplicas": 1, "availableReplicas": 1,
                      "conditions": [{"type": "Available", "status": "True"}]}}


class RefusingKube(FakeKube):
    """Refuses writes of one kind (dry runs too) with the given answer; everything else succeeds."""

    def __init__(self, kind: str = "Deployment", status: int = 422, message: str = INVALID):
        super().__init__()
        self.refusal = (kind, status, message)

    def _write(self, verb, obj, **kwargs):
        self.calls.append((verb, obj["kind"], kwargs.get("dry_run", False)))
        kind, status, message = self.refusal
        if obj["kind"] == kind:
            raise KubeError(status, message)
        return obj

    def apply(self, obj, *, dry_run=False):
        return self._write("apply", obj, dry_run=dry_run)

    def create_or_apply(self, obj):
        return self._write("create_or_apply", obj)

    def writes(self):
        return [c for c in self.calls if c[0] in ("apply", "create_or_apply")]

    def events(self):
        return [c for c in self.calls if c[0] == "record_event"]


def body(generation=1, status=None, **spec):
    spec = {"runtime": "llama-cpp", "source": {"file": {"path": "/m/x.gguf"}}, **spec}
    return {"apiVersion": "conch.dev/v1alpha1", "kind": "Model",
            "metadata": {"name": "m", "namespace": "ns", "uid": "u-1", "generation": generation},
            "spec": spec, "status": status or {}}


def conditions(status):
    return {c.type: (c.status, c.reason) for c in status.conditions}


def at(monkeypatch, moment: datetime) -> None:
    class Clock(datetime):
        @classmethod
        def now(cls, tz=None):
            return moment

    monkeypatch.setattr(reconcile, "datetime", Clock)


def test_a_refused_write_is_shown_in_status_and_as_an_event(monkeypatch):
    at(monkeypatch, NOW)
    kube, memory = RefusingKube(), ModelMemory()
    status = reconcile.reconcile(kube, ClusterView(), memory, body(), SETTINGS)
    assert conditions(status) == {"Ready": ("False", "ApplyRejected"), "Available": ("False", "ApplyRejected"),
                                  "EngineReady": ("True", "NoBuildNeeded"), "Degraded": ("True", "ApplyRejected")}
    assert status.phase == Phase.DEGRADED
    message = status.condition("Degraded").message
    assert INVALID in message and "attempt 1; next attempt at 2026-09-01T12:01:00Z" in message
    [event] = kube.events()
    involved, type_, reason, event_message = event[1:]
    assert involved["metadata"]["uid"] == "u-1" and involved["kind"] == "Model"
    assert (type_, reason) == ("Warning", "ApplyRejected") and event_message == message
    patched = [c for c in kube.calls if c[0] == "patch_status"]
    assert patched and patched[-1][3]["conditions"][3]["reason"] == "ApplyRejected"
    assert memory.needs_apply(body())  # not applied: a new spec is tried at once


def test_the_refused_write_waits_for_its_back_off_not_for_the_next_event(monkeypatch):
    at(monkeypatch, NOW)
    kube, memory, view = RefusingKube(), ModelMemory(), ClusterView()
    reconcile.reconcile(kube, view, memory, body(), SETTINGS)
    kube.calls.clear()
    # Resyncs and events within the back-off: no write, no Event, status unchanged.
    for seconds in (1, 5, 30, 59):
        at(monkeypatch, NOW + timedelta(seconds=seconds))
        status = reconcile.reconcile(kube, view, memory, body(), SETTINGS, apply=True)
        assert status.condition("Degraded").reason == "ApplyRejected"
    assert not kube.writes() and not kube.events() and not [c for c in kube.calls if c[0] == "patch_status"]
    assert memory.rejections_due(NOW + timedelta(seconds=59)) == []
    assert memory.rejections_due(NOW + timedelta(seconds=60)) == [KEY]

    # Due: tried again — checked whole first — and the wait doubles.
    at(monkeypatch, NOW + timedelta(seconds=60))
    status = reconcile.reconcile(kube, view, memory, body(), SETTINGS)
    assert kube.writes() == [("apply", "ConfigMap", True), ("apply", "Deployment", True)]
    assert len(kube.events()) == 1 and "attempt 2; next attempt at 2026-09-01T12:03:00Z" in \
        status.condition("Degraded").message


def test_a_new_spec_is_tried_at_once_and_clears_the_refusal(monkeypatch):
    at(monkeypatch, NOW)
    kube, memory, view = RefusingKube(), ModelMemory(), ClusterView()
    reconcile.reconcile(kube, view, memory, body(), SETTINGS)
    kube.refusal = ("Nothing", 0, "")
    kube.calls.clear()
    at(monkeypatch, NOW + timedelta(seconds=2))
    status = reconcile.reconcile(kube, view, memory, body(generation=2), SETTINGS)
    assert [c[1] for c in kube.writes() if not c[2]] == ["ConfigMap", "Deployment", "Service"]
    assert status.condition("Degraded").status == "False" and "ApplyRejected" not in str(conditions(status))
    assert memory.rejection(KEY, 2) is None and memory.rejections_due(NOW + timedelta(days=1)) == []


def test_a_refused_spec_change_writes_nothing_and_the_earlier_spec_keeps_serving(monkeypatch):
    at(monkeypatch, NOW)
    view, memory = ClusterView(), ModelMemory()
    view.deployment_event("ADDED", KEY, SERVING)
    served = body(generation=1)
    reconcile.reconcile(RefusingKube("Nothing"), view, memory, served, SETTINGS)  # generation 1 applied, Ready

    kube = RefusingKube(message='Deployment.apps "m-triton" is invalid: spec.template.spec.containers[0].resources.'
                                'requests: Invalid value: "4": must be less than or equal to cpu limit of 2')
    status = reconcile.reconcile(kube, view, memory, body(generation=2, engine={"maxSeqLen": 8192}), SETTINGS)
    # Only dry runs reached the API server: the ConfigMap was not updated without its Deployment.
    assert kube.writes() == [("apply", "ConfigMap", True), ("apply", "Deployment", True)]
    assert conditions(status)["Ready"] == ("True", "ReplicasReady")  # the gateway keeps routing to it
    assert conditions(status)["Degraded"] == ("True", "ApplyRejected")
    assert "must be less than or equal to cpu limit" in status.condition("Degraded").message


def test_a_quota_refusal_is_a_refusal_and_a_passing_error_is_retried_by_the_queue(monkeypatch):
    at(monkeypatch, NOW)
    quota = RefusingKube(status=403, message='deployments.apps "m-triton" is forbidden: exceeded quota: q')
    status = reconcile.reconcile(quota, ClusterView(), ModelMemory(), body(), SETTINGS)
    assert "exceeded quota" in status.condition("Ready").message

    for passing in (0, 409, 429, 500, 503):
        with pytest.raises(KubeError):
            reconcile.reconcile(RefusingKube(status=passing, message="x"), ClusterView(), ModelMemory(), body(),
                                SETTINGS)


def test_a_failing_event_post_does_not_hide_the_refusal(monkeypatch):
    at(monkeypatch, NOW)

    class NoEvents(RefusingKube):
        def record_event(self, *args):
            raise KubeError(403, "events is forbidden")

    status = reconcile.reconcile(NoEvents(), ClusterView(), ModelMemory(), body(), SETTINGS)
    assert conditions(status)["Degraded"] == ("True", "ApplyRejected")


def test_back_off_doubles_up_to_the_cap_and_resets_for_a_new_generation():
    memory = ModelMemory()
    waits = [(memory.remember_rejection(KEY, 1, "no", NOW, base_s=60, cap_s=300).retry_at - NOW).total_seconds()
             for _ in range(5)]
    assert waits == [60, 120, 240, 300, 300]
    assert memory.rejection(KEY, 1).attempts == 5
    assert memory.rejection(KEY, 2) is None  # the earlier spec's refusal is over…
    assert memory.rejections_due(NOW + timedelta(days=1)) == []  # …and asks for no retry
    assert memory.remember_rejection(KEY, 2, "no", NOW, base_s=60, cap_s=300).attempts == 1


# ---------------------------------------------------------------- contact with the API server


def test_no_answer_is_a_passing_error_and_contact_comes_back_once(monkeypatch):
    kube = Kube()
    answers = iter([urllib3.exceptions.MaxRetryError(None, "/version", "Connection refused")])

    def call_api(*args, **kwargs):
        failure = next(answers, None)
        if failure:
            raise failure

        class Response:
            status = 200

            def read(self):
                return b'{"major": "1"}'

        return Response()

    monkeypatch.setattr(kube._api, "call_api", call_api)
    with pytest.raises(KubeError) as refused:
        kube.get("Deployment", "ns", "m-triton")
    assert refused.value.status == 0 and not refused.value.rejected and kube.contact_lost
    assert not kube.answering_again()
    assert kube.reachable() and not kube.contact_lost
    assert kube.answering_again() and not kube.answering_again()
    kube.close()


@pytest.mark.asyncio
async def test_what_failed_is_retried_at_once_when_the_api_server_answers_again():
    calls, failing = [], True

    async def work(key, apply):
        calls.append((key, apply))
        if failing:
            raise KubeError(0, "no answer")

    queue = WorkQueue(work, workers=2, base_delay=30)  # back-offs far beyond this test
    queue.start()
    queue.add("a", apply=True)
    queue.add("b", apply=False)
    while len(calls) < 2:
        await asyncio.sleep(0.001)
    failing = False
    assert queue.retry_failed_now() == 2
    while len(calls) < 4:
        await asyncio.sleep(0.001)
    await asyncio.sleep(0.01)
    await queue.stop()
    assert sorted(calls[2:]) == [("a", True), ("b", False)]
    assert queue.retry_failed_now() == 0  # succeeded: nothing waits any more


@pytest.mark.asyncio
async def test_a_run_before_the_scheduled_retry_does_what_the_retry_would_have():
    calls = []

    async def work(key, apply):
        calls.append(apply)
        if len(calls) == 1:
            raise KubeError(503, "busy")

    queue = WorkQueue(work, workers=1, base_delay=30)
    queue.start()
    queue.add("a", apply=True)
    while not calls:
        await asyncio.sleep(0.001)
    queue.add("a", apply=False)  # a status event comes first: it runs the failed apply too
    while len(calls) < 2:
        await asyncio.sleep(0.001)
    await queue.stop()
    assert calls == [True, True] and queue.retry_failed_now() == 0
