"""Lease-based leader election: the decisions, against an in-memory Lease store that behaves like
the API server (409 on create of an existing object or on a stale resourceVersion)."""

from __future__ import annotations

import copy

from conch_operator.kube import KubeError
from conch_operator.leader import ElectionConfig, LeaderElector


class LeaseStore:
    def __init__(self):
        self.lease = None
        self.version = 0

    def get(self, kind, namespace, name):
        return copy.deepcopy(self.lease)

    def create(self, obj):
        if self.lease is not None:
            return None
        return self._store(obj)

    def replace(self, obj):
        if obj["metadata"].get("resourceVersion") != self.lease["metadata"]["resourceVersion"]:
            raise KubeError(409, "the object has been modified")
        return self._store(obj)

    def _store(self, obj):
        self.version += 1
        self.lease = copy.deepcopy(obj)
        self.lease["metadata"]["resourceVersion"] = str(self.version)
        return copy.deepcopy(self.lease)


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def elector(store, clock, identity):
    return LeaderElector(store, ElectionConfig(namespace="conch", identity=identity, lease_duration_s=15), clock)


def test_first_comer_leads_and_the_other_stands_by_while_the_lease_is_renewed():
    store, clock = LeaseStore(), Clock()
    a, b = elector(store, clock, "a"), elector(store, clock, "b")
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()
    for _ in range(20):  # a keeps renewing: b never takes over, however long it waits
        clock.now += 2
        assert a.try_acquire_or_renew()
        assert not b.try_acquire_or_renew()
    assert store.lease["spec"]["holderIdentity"] == "a"
    assert store.lease["spec"]["leaseTransitions"] == 0


def test_a_silent_leader_is_replaced_after_one_lease_duration_of_this_replicas_own_clock():
    store, clock = LeaseStore(), Clock()
    a, b = elector(store, clock, "a"), elector(store, clock, "b")
    a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()  # b first sees the record now
    clock.now += 14
    assert not b.try_acquire_or_renew()
    clock.now += 2
    assert b.try_acquire_or_renew()
    spec = store.lease["spec"]
    assert spec["holderIdentity"] == "b" and spec["leaseTransitions"] == 1
    assert not a.try_acquire_or_renew()  # the old leader now sees a live leader


def test_renew_times_in_the_future_do_not_keep_a_dead_leader_alive():
    """Expiry is judged by how long the record stayed unchanged, not by the timestamps written in
    it, so a leader whose clock runs ahead cannot block a take-over."""
    store, clock = LeaseStore(), Clock()
    a, b = elector(store, clock, "a"), elector(store, clock, "b")
    a.try_acquire_or_renew()
    store.lease["spec"]["renewTime"] = "2999-01-01T00:00:00.000000Z"
    assert not b.try_acquire_or_renew()
    clock.now += 16
    assert b.try_acquire_or_renew()


def test_two_standbys_racing_for_an_expired_lease_yield_one_leader():
    store, clock = LeaseStore(), Clock()
    a, b, c = (elector(store, clock, n) for n in "abc")
    a.try_acquire_or_renew()
    b.try_acquire_or_renew(), c.try_acquire_or_renew()
    clock.now += 16
    stale = store.get("Lease", "conch", "conch-operator")
    assert b.try_acquire_or_renew()
    # c read the lease before b wrote it: its write carries a stale resourceVersion.
    c.store = type("Stale", (), {"get": lambda *_: copy.deepcopy(stale), "replace": store.replace})()
    assert not c.try_acquire_or_renew()
    assert store.lease["spec"]["holderIdentity"] == "b"


def test_release_hands_over_at_once():
    store, clock = LeaseStore(), Clock()
    a, b = elector(store, clock, "a"), elector(store, clock, "b")
    a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()
    a.release()
    assert b.try_acquire_or_renew()
    assert store.lease["spec"]["holderIdentity"] == "b"


def test_release_leaves_someone_elses_lease_alone():
    store, clock = LeaseStore(), Clock()
    a, b = elector(store, clock, "a"), elector(store, clock, "b")
    a.try_acquire_or_renew()
    b.release()
    assert store.lease["spec"]["holderIdentity"] == "a"


def test_a_leader_that_cannot_renew_gives_up_after_the_renew_deadline():
    """The API server unreachable: renewals fail, and after the renew deadline the leader stops
    (the operator exits) rather than keep reconciling while a standby may have taken over."""
    import threading
    import time

    store = LeaseStore()
    a = LeaderElector(store, ElectionConfig(namespace="conch", identity="a", lease_duration_s=0.3))
    assert a.try_acquire_or_renew()
    lost = threading.Event()
    started = time.monotonic()

    def unreachable(*_):
        raise ConnectionRefusedError("API server down")

    store.get = unreachable
    a.keep_renewing(on_lost=lost.set)
    assert lost.wait(5)
    assert time.monotonic() - started >= a.config.renew_deadline_s
    a.release()  # stops the renewing thread (the release itself fails: the API is still down)


def test_a_renewing_leader_does_not_give_up():
    import threading

    store = LeaseStore()
    a = LeaderElector(store, ElectionConfig(namespace="conch", identity="a", lease_duration_s=0.3))
    assert a.try_acquire_or_renew()
    lost = threading.Event()
    a.keep_renewing(on_lost=lost.set)
    assert not lost.wait(1.0)
    a.release()


def test_a_leader_whose_api_call_hangs_still_gives_up_at_the_renew_deadline():
    """A renewal stuck in a slow API call (client timeouts are far longer than the deadline) must
    not keep the leader going past the point where a standby may take over."""
    import threading
    import time

    store = LeaseStore()
    a = LeaderElector(store, ElectionConfig(namespace="conch", identity="a", lease_duration_s=0.3))
    assert a.try_acquire_or_renew()
    lost, hang = threading.Event(), threading.Event()

    def hangs(*_):
        hang.wait(10)  # far beyond the 0.2 s renew deadline

    store.get = hangs
    started = time.monotonic()
    a.keep_renewing(on_lost=lost.set)
    assert lost.wait(2), "the watchdog did not fire while the renewal hung"
    assert time.monotonic() - started < 1.0
    hang.set()
    a.release()


def test_a_standby_survives_api_errors_while_waiting():
    import threading

    store, clock = LeaseStore(), Clock()
    failures = iter([ConnectionResetError("reset"), KubeError(503, "unavailable")])
    real_get = store.get

    def flaky(*args):
        error = next(failures, None)
        if error:
            raise error
        return real_get(*args)

    store.get = flaky
    b = LeaderElector(store, ElectionConfig(namespace="conch", identity="b", lease_duration_s=0.3), clock)
    done = threading.Thread(target=b.wait_for_leadership)
    done.start()
    done.join(5)
    assert not done.is_alive() and store.lease["spec"]["holderIdentity"] == "b"


def test_release_stops_renewing_before_giving_the_lease_up():
    store = LeaseStore()
    a = LeaderElector(store, ElectionConfig(namespace="conch", identity="a", lease_duration_s=0.15))
    assert a.try_acquire_or_renew()
    a.keep_renewing(on_lost=lambda: None)
    a.release()
    import time

    time.sleep(0.3)  # a renewal still running would have taken the released Lease back by now
    assert store.lease["spec"]["holderIdentity"] == ""
