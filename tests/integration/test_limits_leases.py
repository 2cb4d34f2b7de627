"""Per-replica leases on quotas held in a real `redis-server`: several replicas (leased stores in one
process, each its own holder and Redis connection) admitting one caller's requests at once never
pass the limit together, call Redis a few times a second rather than once per request when far
from it, share in-flight slots (freed slots come back at once; a dead replica's lapse), and charge
tokens in batches that still stop the caller at its limit."""

from __future__ import annotations

import asyncio
import time
from typing import Iterator

import pytest
import redis.asyncio as aioredis

from conch_gateway.auth.credentials import Quota
from conch_gateway.limits.leases import FLUSH_S, LeasedQuotaStore
from conch_gateway.limits.redis_store import RedisQuotaStore
from support.redis_server import RedisServer


@pytest.fixture
def redis(tmp_path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


def replicas(url: str, n: int, **options) -> list[LeasedQuotaStore]:
    return [LeasedQuotaStore(RedisQuotaStore(url, **options)) for _ in range(n)]


async def script_calls(url: str) -> int:
    client = aioredis.Redis.from_url(url)
    try:
        stats = await client.info("commandstats")
        return sum(stats.get(name, {}).get("calls", 0) for name in ("cmdstat_evalsha", "cmdstat_eval"))
    finally:
        await client.aclose()


async def close(stores: list[LeasedQuotaStore]) -> None:
    await asyncio.gather(*(store.close() for store in stores))


async def test_three_replicas_admit_the_limit_exactly_and_no_more(redis):
    limit = 500
    quota = Quota(requests_per_minute=limit)
    stores = replicas(redis.url, 3)

    async def caller(store: LeasedQuotaStore, n: int) -> list[bool]:
        allowed = []
        for i in range(n):
            allowed.append((await store.admit("k", quota, str(i))).allowed)
            await asyncio.sleep(0.001)
        return allowed

    try:
        results = await asyncio.gather(*(caller(store, 300) for store in stores for _ in range(4)))
        accepted = sum(sum(r) for r in results)
        calls = await script_calls(redis.url)
        print(f"3 replicas, limit {limit}: {accepted} of {12 * 300} admitted with {calls} Redis calls")
        assert accepted == limit  # every lease was used before any replica was refused for good
        assert calls < limit / 2  # leases, not a call per request
        assert int(await aioredis.Redis.from_url(redis.url).get("conch:quota:{k}:requests")) == limit
    finally:
        await close(stores)


async def test_far_from_the_limit_a_busy_replica_calls_redis_a_few_times_a_second(redis):
    quota = Quota(requests_per_minute=1_000_000_000, tokens_per_minute=1_000_000_000_000, max_parallel=10_000)
    stores = replicas(redis.url, 3)

    async def client(store: LeasedQuotaStore) -> int:
        admitted = 0
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            verdict = await store.admit("k", quota, "")
            assert verdict.allowed
            admitted += 1
            await asyncio.sleep(0.0005)
            store.settle("k", quota, "", 20)
        return admitted

    try:
        admitted = sum(await asyncio.gather(*(client(store) for store in stores for _ in range(8))))
        calls = await script_calls(redis.url)
        print(f"{admitted} admissions over 2 s on 3 replicas: {calls} Redis calls")
        assert admitted > 1000
        assert calls < admitted / 20
        await asyncio.sleep(FLUSH_S * 4)
        tokens = int(await aioredis.Redis.from_url(redis.url).get("conch:quota:{k}:tokens"))
        assert tokens == admitted * 20  # every answer's tokens charged, in batches
    finally:
        await close(stores)


async def test_in_flight_slots_are_shared_and_a_freed_slot_is_free_everywhere_at_once(redis):
    quota = Quota(max_parallel=2)
    a, b = stores = replicas(redis.url, 2)
    try:
        assert (await a.admit("k", quota, "1")).allowed and (await a.admit("k", quota, "2")).allowed
        refused = await b.admit("k", quota, "3")
        assert not refused.allowed and refused.exceeded == "parallel"
        a.settle("k", quota, "1", 0)
        started = time.monotonic()
        while not (await b.admit("k", quota, "4")).allowed:
            assert time.monotonic() - started < 1, "the freed slot never reached the other replica"
            await asyncio.sleep(0.01)
        assert not (await a.admit("k", quota, "5")).allowed  # 2 in flight: one on each replica
    finally:
        await close(stores)


async def test_many_slots_held_as_spares_never_exceed_the_limit(redis):
    limit = 64
    quota = Quota(max_parallel=limit)
    stores = replicas(redis.url, 3)
    in_flight = peak = 0

    async def request(store: LeasedQuotaStore) -> bool:
        nonlocal in_flight, peak
        verdict = await store.admit("k", quota, "")
        if not verdict.allowed:
            return False
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.02)
        in_flight -= 1
        store.settle("k", quota, "", 0)
        return True

    try:
        for _ in range(5):
            outcomes = await asyncio.gather(*(request(stores[i % 3]) for i in range(120)))
            assert sum(outcomes) >= limit * 0.75  # spares held elsewhere refuse only a few
        assert peak <= limit
    finally:
        await close(stores)


async def test_a_dead_replicas_slots_lapse(redis):
    quota = Quota(max_parallel=1)
    dead, alive = replicas(redis.url, 2, hold_ttl_ms=400)
    try:
        assert (await dead.admit("k", quota, "1")).allowed  # and never settled: the replica "dies"
        assert not (await alive.admit("k", quota, "2")).allowed
        await asyncio.sleep(0.5)
        assert (await alive.admit("k", quota, "3")).allowed
    finally:
        await close([alive])


async def test_tokens_charged_in_batches_still_stop_the_caller(redis):
    quota = Quota(tokens_per_minute=1000)
    a, b = stores = replicas(redis.url, 2)
    try:
        spent = 0
        for i in range(200):
            store = (a, b)[i % 2]
            verdict = await store.admit("k", quota, "")
            if not verdict.allowed:
                assert verdict.exceeded == "tokens"
                break
            store.settle("k", quota, "", 30)
            spent += 30
        else:
            pytest.fail("never refused")
        # Near the limit every admission asks Redis: past it by about one answer per replica.
        assert 1000 <= spent <= 1000 + 3 * 30, spent
    finally:
        await close(stores)
