"""Operator fail-over: two real operator processes elect a leader on a Lease of the real API
server; the standby reconciles nothing until the leader dies, then takes over within about one
lease duration, and a leader that shuts down cleanly hands over at once."""

from __future__ import annotations

import time
from typing import Iterator

import pytest

from support.k8s import Operator, model_manifest, wait_until

pytestmark = pytest.mark.k8s

LEASE_S = 3  # short, so fail-over is quick enough for a test (the default is 15 s)


def elected(cluster, namespace, tmp_path) -> Operator:
    return Operator(cluster, namespace, tmp_path, args=("--leader-election", "--leader-election-namespace", namespace,
                                                        "--lease-duration", str(LEASE_S))).start()


def holder(kubectl) -> str:
    lease = kubectl.get("lease", "conch-operator") or {}
    return lease.get("spec", {}).get("holderIdentity", "")


def identity(operator: Operator) -> str:
    import os

    return f"{os.uname().nodename}-{operator.process.pid}"


def replicas_of(kubectl, name: str) -> int | None:
    deployment = kubectl.get("deployment", f"{name}-triton")
    return deployment["spec"]["replicas"] if deployment else None


@pytest.fixture
def leader_and_standby(cluster, namespace, kubectl, tmp_path) -> Iterator[tuple[Operator, Operator]]:
    """Two elected operators: the first leads, the second has seen its Lease and stands by."""
    first = elected(cluster, namespace, tmp_path)
    second = None
    try:
        wait_until(lambda: holder(kubectl) == identity(first), 30, message="first operator leads")
        second = elected(cluster, namespace, tmp_path)
        wait_until(lambda: "standing by" in second.log(), 10, message="second operator stands by")
        yield first, second
    finally:
        first.stop()
        if second:
            second.stop()


def test_standby_takes_over_when_the_leader_dies(kubectl, leader_and_standby):
    first, second = leader_and_standby
    kubectl.apply(model_manifest("smollm2"))
    wait_until(lambda: replicas_of(kubectl, "smollm2") == 1, 30, message="the leader reconciles")
    time.sleep(LEASE_S)  # the standby had every chance to act, and must not have
    assert "Initial authentication has finished" not in second.log()

    first.kill()  # SIGKILL: no release, the Lease must expire
    killed = time.monotonic()
    wait_until(lambda: holder(kubectl) == identity(second), 4 * LEASE_S, message="the standby takes over")
    took = time.monotonic() - killed
    assert took >= LEASE_S - 1, f"took over after {took:.1f}s, before the Lease could expire"
    lease = kubectl.get("lease", "conch-operator")
    assert lease["spec"]["leaseTransitions"] == 1

    kubectl("scale", "model", "smollm2", "--replicas=2")
    wait_until(lambda: replicas_of(kubectl, "smollm2") == 2, 30, message="the new leader reconciles")
    assert "Traceback" not in second.log()


def test_clean_shutdown_hands_over_at_once(kubectl, leader_and_standby):
    first, second = leader_and_standby  # the standby has seen the Lease: only a release explains a fast hand-over
    first.stop()  # SIGTERM: kopf stops, the Lease is released
    stopped = time.monotonic()
    wait_until(lambda: holder(kubectl) == identity(second), 3 * LEASE_S, message="hand-over")
    assert time.monotonic() - stopped < LEASE_S, "the standby waited for expiry: the Lease was not released"
    wait_until(lambda: "Initial authentication has finished" in second.log(), 30, message="the new leader runs kopf")
