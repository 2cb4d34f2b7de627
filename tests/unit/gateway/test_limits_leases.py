"""A replica's lease on a caller's quota, decided in this process: how much it asks for, when it
asks again, what it does with a lease from an ended window and with a refusal. The shared store is
a stand-in that answers what each test says (tests/integration/test_limits_leases.py runs Redis)."""

from __future__ import annotations

import asyncio

from conch_gateway.auth.credentials import Quota
from conch_gateway.limits.leases import Ask, Grant, LeasedQuotaStore, spare_slots


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Store:
    """Grants what is asked from a requests window of `limit`, ending `reset_ms` from now."""

    def __init__(self, limit: int, reset_ms: int = 60_000) -> None:
        self.limit, self.used, self.reset_ms = limit, 0, reset_ms
        self.asks: list[Ask] = []

    async def reserve(self, principal: str, quota: Quota, holder: str, ask: Ask) -> Grant:
        self.asks.append(ask)
        if ask.admitting and self.used >= self.limit:
            return Grant(0, "requests", 0, self.used, self.reset_ms, 0, 60_000, 0)
        granted = min(ask.requests, self.limit - self.used)
        self.used += granted
        return Grant(granted, "", 0, self.used, self.reset_ms, 0, 60_000, ask.slots)


def leased(store: Store, clock: Clock) -> LeasedQuotaStore:
    return LeasedQuotaStore(store, monotonic=clock, clock=clock)


async def test_a_lease_grows_with_the_replicas_rate_and_never_takes_more_than_an_eighth_of_what_is_left():
    clock, store = Clock(), Store(10_000)
    leases = leased(store, clock)
    quota = Quota(requests_per_minute=10_000)
    for _ in range(400):  # 400 requests/s for a second
        assert (await leases.admit("k", quota, "")).allowed
        clock.now += 0.0025
    sizes = [ask.requests for ask in store.asks]
    assert sizes[0] == 1 and max(sizes) <= 10_000 // 8
    assert 50 <= sizes[-1] <= 150  # about a quarter of a second at 400/s
    assert len(store.asks) < 40


async def test_near_the_limit_every_admission_asks_the_store():
    clock, store = Clock(), Store(12)
    leases = leased(store, clock)
    quota = Quota(requests_per_minute=12)
    verdicts = [await leases.admit("k", quota, "") for _ in range(13)]
    assert [v.allowed for v in verdicts] == [True] * 12 + [False]
    assert all(ask.requests == 1 for ask in store.asks)  # 12 // 8 == 1: leases of one
    assert [v.requests_used for v in verdicts[:3]] == [1, 2, 3]  # the headers count down exactly


async def test_a_refusal_holds_until_its_window_ends_unless_the_limits_change():
    clock, store = Clock(), Store(1, reset_ms=30_000)
    leases = leased(store, clock)
    quota = Quota(requests_per_minute=1)
    assert (await leases.admit("k", quota, "")).allowed
    assert not (await leases.admit("k", quota, "")).allowed
    asked = len(store.asks)
    again = await leases.admit("k", quota, "")
    assert not again.allowed and again.exceeded == "requests" and len(store.asks) == asked  # not asked again
    assert 29_000 <= again.requests_reset_ms <= 30_000
    store.limit = 5
    assert (await leases.admit("k", Quota(requests_per_minute=5), "")).allowed  # a raised limit: asked at once


async def test_what_is_left_of_a_lease_from_an_ended_window_is_void():
    clock, store = Clock(), Store(1_000, reset_ms=1_000)
    leases = leased(store, clock)
    quota = Quota(requests_per_minute=1_000)
    for _ in range(300):
        await leases.admit("k", quota, "")
        clock.now += 0.002
    account = leases._accounts["k"]
    assert account.requests_left > 0
    clock.now += 1.0  # the window ended with part of the lease unused
    store.used, store.reset_ms = 0, 60_000
    await leases.admit("k", quota, "")
    assert account.requests_left == store.used - 1  # only the new window's grant


def test_spare_slots_only_for_large_limits_and_only_while_busy():
    assert spare_slots(Quota(max_parallel=8), 5) == 0
    assert spare_slots(Quota(max_parallel=10_000), 0) == 0
    assert spare_slots(Quota(max_parallel=10_000), 64) == 17
    assert spare_slots(Quota(max_parallel=64), 64) == 2  # at most 1/32 of the limit


class SlowStore(Store):
    """Holds each call until the test lets it answer; grants exactly the slots asked for."""

    def __init__(self) -> None:
        super().__init__(10**9)
        self.gate = asyncio.Event()

    async def reserve(self, principal: str, quota: Quota, holder: str, ask: Ask) -> Grant:
        await self.gate.wait()
        return await super().reserve(principal, quota, holder, ask)


async def test_no_slot_is_taken_while_a_call_that_may_shrink_the_hold_is_on_its_way():
    # Found by tests/integration/test_limits_leases.py on a slow machine: a background call asked for
    # the slots in use (the spares given back) while admissions went on taking spares locally; its
    # answer then left them unheld, free for other replicas — 70 in flight against a limit of 64.
    clock, store = Clock(), SlowStore()
    leases = leased(store, clock)
    quota = Quota(max_parallel=64)
    store.gate.set()
    for _ in range(8):
        assert (await leases.admit("k", quota, "")).allowed
    account = leases._accounts["k"]
    held_before = account.slots_held
    for _ in range(8):
        leases.settle("k", quota, "", 0)
    store.gate.clear()
    shrink = asyncio.create_task(leases._settle_later("k", account, 0.0))
    await asyncio.sleep(0)  # its call has left, asking for the slots in use now (none)
    admissions = [asyncio.create_task(leases.admit("k", quota, "")) for _ in range(4)]
    await asyncio.sleep(0)
    assert account.in_flight == 0 and not any(a.done() for a in admissions), \
        f"{account.in_flight} slots taken from a hold of {held_before} while it was being shrunk"
    store.gate.set()
    await shrink
    assert all(v.allowed for v in await asyncio.gather(*admissions))
    assert account.in_flight == 4 <= account.slots_held
