"""The operator's work queue: coalescing, one reconcile per Model at a time, retries, priorities."""

from __future__ import annotations

import asyncio

import pytest

from conch_operator.workqueue import WorkQueue

pytestmark = pytest.mark.asyncio


async def settle(queue: WorkQueue, timeout: float = 2.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while len(queue) or queue._processing:
        assert asyncio.get_running_loop().time() < deadline, "queue did not drain"
        await asyncio.sleep(0.005)


async def test_events_for_one_key_coalesce():
    calls = []

    async def reconcile(key, apply):
        calls.append((key, apply))
        await asyncio.sleep(0.01)

    queue = WorkQueue(reconcile, workers=2)
    for _ in range(10):
        queue.add("a", apply=False)
    queue.add("a", apply=True)
    queue.start()
    await settle(queue)
    await queue.stop()
    assert calls == [("a", True)]


async def test_one_reconcile_per_key_at_a_time_and_requeued_when_dirty():
    running, overlaps, calls = set(), [], []

    async def reconcile(key, apply):
        if key in running:
            overlaps.append(key)
        running.add(key)
        calls.append(key)
        await asyncio.sleep(0.02)
        running.discard(key)

    queue = WorkQueue(reconcile, workers=4)
    queue.start()
    queue.add("a", apply=True)
    await asyncio.sleep(0.005)
    queue.add("a", apply=False)  # arrives while "a" is being reconciled: runs again afterwards
    await settle(queue)
    await queue.stop()
    assert calls == ["a", "a"] and not overlaps


async def test_failures_are_retried_with_backoff():
    attempts = []

    async def reconcile(key, apply):
        attempts.append(asyncio.get_running_loop().time())
        if len(attempts) < 3:
            raise RuntimeError("API server busy")

    queue = WorkQueue(reconcile, workers=1, base_delay=0.02)
    queue.start()
    queue.add("a", apply=True)
    deadline = asyncio.get_running_loop().time() + 2
    while len(attempts) < 3:
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.005)
    await queue.stop()
    assert attempts[2] - attempts[1] >= attempts[1] - attempts[0] >= 0.015


async def test_status_refreshes_go_first():
    order = []

    async def reconcile(key, apply):
        order.append(key)

    queue = WorkQueue(reconcile, workers=1)
    for key in ("apply-1", "apply-2"):
        queue.add(key, apply=True)
    queue.add("status-1", apply=False)
    queue.start()
    await settle(queue)
    await queue.stop()
    assert order == ["status-1", "apply-1", "apply-2"]
