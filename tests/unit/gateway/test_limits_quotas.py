"""Quotas in one process: windows, leases, headers and refusals, and what happens when the shared
store fails (a stand-in store that raises; tests/integration/test_limits_redis.py runs the real
Redis)."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry

from conch_gateway.auth.credentials import Quota
from conch_gateway.errors import ConchError
from conch_gateway.limits.quotas import LocalQuotaStore, Quotas, StoreUnavailable, rate_headers, refusal


class Clock:
    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_requests_per_minute_is_a_window_from_the_first_request():
    clock = Clock()
    store = LocalQuotaStore(clock)
    quota = Quota(requests_per_minute=3)
    verdicts = [await store.admit("k", quota, f"l{i}") for i in range(4)]
    assert [v.allowed for v in verdicts] == [True, True, True, False]
    assert verdicts[3].exceeded == "requests" and verdicts[2].requests_used == 3
    assert verdicts[0].requests_reset_ms == 60_000
    clock.now += 30
    assert not (await store.admit("k", quota, "l5")).allowed
    assert (await store.admit("other", quota, "l6")).allowed  # per caller
    clock.now += 30.001
    assert (await store.admit("k", quota, "l7")).allowed  # a new window


async def test_tokens_are_charged_after_the_answer_and_refuse_the_next_request():
    clock = Clock()
    store = LocalQuotaStore(clock)
    quota = Quota(tokens_per_minute=100)
    assert (await store.admit("k", quota, "a")).allowed
    store.settle("k", quota, "a", 120)  # the answer was longer than what remained
    refused = await store.admit("k", quota, "b")
    assert not refused.allowed and refused.exceeded == "tokens" and refused.tokens_used == 120


async def test_max_parallel_counts_leases_until_they_are_settled():
    store = LocalQuotaStore(Clock())
    quota = Quota(max_parallel=2)
    assert (await store.admit("k", quota, "a")).allowed and (await store.admit("k", quota, "b")).allowed
    assert (await store.admit("k", quota, "c")).exceeded == "parallel"
    store.settle("k", quota, "a", 0)
    assert (await store.admit("k", quota, "d")).allowed


async def test_headers_and_the_refusal_say_what_and_when():
    store = LocalQuotaStore(Clock(1_700_000_000.0))
    quota = Quota(requests_per_minute=2, tokens_per_minute=50)
    verdict = await store.admit("k", quota, "a")
    headers = dict(rate_headers(quota, verdict))
    assert headers[b"X-RateLimit-Limit"] == b"2" and headers[b"X-RateLimit-Remaining"] == b"1"
    assert headers[b"X-RateLimit-Reset"] == b"1700000060"  # epoch seconds, as seed 001 shows
    assert headers[b"X-RateLimit-Limit-Tokens"] == b"50" and headers[b"X-RateLimit-Remaining-Tokens"] == b"50"
    await store.admit("k", quota, "b")
    error = refusal(quota, await store.admit("k", quota, "c"))
    assert error.status == 429 and error.code == "RATE_LIMIT_EXCEEDED" and "2 requests per minute" in error.message
    assert error.headers["Retry-After"] == "60" and error.headers["X-RateLimit-Remaining"] == "0"
    assert rate_headers(Quota(max_parallel=1), verdict) == []  # no per-minute limit, nothing to count down


class Down:
    """A shared store that does not answer."""

    def __init__(self):
        self.calls = 0

    async def reserve(self, *args):
        self.calls += 1
        raise StoreUnavailable("ConnectionError: refused")


async def test_store_down_counts_locally_and_says_so():
    down = Down()
    quotas = Quotas(down, CollectorRegistry(), on_failure="local", retry_after_failure_s=60)
    quota = Quota(requests_per_minute=2)
    await quotas.admit("k", quota)
    await quotas.admit("k", quota)
    with pytest.raises(ConchError) as raised:
        await quotas.admit("k", quota)
    assert raised.value.status == 429
    assert down.calls == 1  # not asked again until the retry time
    assert quotas.store_up._value.get() == 0 and quotas.store_errors._value.get() == 1
    await quotas.close()


async def test_store_down_can_refuse_instead():
    quotas = Quotas(Down(), CollectorRegistry(), on_failure="closed")
    with pytest.raises(ConchError) as raised:
        await quotas.admit("k", Quota(requests_per_minute=5))
    assert raised.value.status == 503 and raised.value.code == "LIMITS_UNAVAILABLE"
    assert raised.value.headers["Retry-After"]


async def test_settling_with_the_store_down_never_raises():
    quotas = Quotas(Down(), CollectorRegistry(), on_failure="local", retry_after_failure_s=0)
    lease = await quotas.admit("k", Quota(max_parallel=1))  # admitted by the local store
    quotas.settle(lease, 10)
    await asyncio.sleep(0)
    await quotas.close()
