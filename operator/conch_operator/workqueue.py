"""A work queue of Models to reconcile, with client-go's semantics: a Model is queued at most
once however many events arrive for it, is reconciled by one worker at a time, and a failed
reconcile is retried with exponential back-off. Watch handlers only enqueue and return, so a burst
of events costs a set entry per Model, not a queue of event bodies.

Status refreshes (one cheap write) go ahead of applies (several writes): when hundreds of Models
arrive at once, those whose replicas are already up are reported Ready without waiting for every
other Model's objects to be applied first.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Awaitable, Callable, Hashable

log = logging.getLogger("conch.operator")

Reconcile = Callable[[Hashable, bool], Awaitable[None]]  # (key, apply) → reconciled


class WorkQueue:
    def __init__(self, reconcile: Reconcile, workers: int, *, base_delay: float = 0.5, max_delay: float = 60.0):
        self._reconcile = reconcile
        self._workers = workers
        self._base_delay = base_delay
        self._max_delay = max_delay
        self._status_lane: deque[Hashable] = deque()
        self._apply_lane: deque[Hashable] = deque()
        self._wakeup = asyncio.Event()
        self._dirty: dict[Hashable, bool] = {}  # waiting (or to run again) → apply desired objects?
        self._processing: set[Hashable] = set()
        self._failures: dict[Hashable, int] = {}
        # Failed, waiting out the back-off → (apply?, the scheduled retry).
        self._retries: dict[Hashable, tuple[bool, asyncio.TimerHandle]] = {}
        self._tasks: list[asyncio.Task] = []

    def add(self, key: Hashable, *, apply: bool) -> None:
        if key in self._dirty:
            if apply and not self._dirty[key]:
                self._dirty[key] = True
                if key not in self._processing:
                    self._status_lane.remove(key)
                    self._push(key)
            return
        self._dirty[key] = apply
        if key not in self._processing:  # a key being processed is queued again when it finishes
            self._push(key)

    def forget(self, key: Hashable) -> None:
        self._failures.pop(key, None)
        self._cancel_retry(key)

    def retry_failed_now(self) -> int:
        """What failed is queued now rather than after its back-off: the cause has passed (the
        API server answers again). Returns how many keys were queued."""
        waiting = list(self._retries)
        for key in waiting:
            self.add(key, apply=self._cancel_retry(key))
        return len(waiting)

    def _retry(self, key: Hashable, apply: bool) -> None:
        self._retries.pop(key, None)
        self.add(key, apply=apply)

    def _cancel_retry(self, key: Hashable) -> bool:
        """Cancels a scheduled retry; returns whether it was to apply."""
        apply, handle = self._retries.pop(key, (False, None))
        if handle is not None:
            handle.cancel()
        return apply

    def __len__(self) -> int:
        return len(self._dirty)

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._work(), name=f"reconcile-worker-{i}") for i in range(self._workers)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _push(self, key: Hashable) -> None:
        (self._apply_lane if self._dirty[key] else self._status_lane).append(key)
        self._wakeup.set()

    async def _next(self) -> Hashable:
        while not (self._status_lane or self._apply_lane):
            self._wakeup.clear()
            await self._wakeup.wait()
        return self._status_lane.popleft() if self._status_lane else self._apply_lane.popleft()

    async def _work(self) -> None:
        while True:
            key = await self._next()
            # This run is also the scheduled retry, and does what that would have done.
            apply = self._dirty.pop(key, False) | self._cancel_retry(key)
            self._processing.add(key)
            try:
                await self._reconcile(key, apply)
                self._failures.pop(key, None)
            except Exception as exc:
                failures = self._failures[key] = self._failures.get(key, 0) + 1
                delay = min(self._base_delay * 2 ** (failures - 1), self._max_delay)
                log.warning("reconciling %s failed (attempt %d, retry in %.1fs): %s", key, failures, delay, exc)
                self._retries[key] = (apply, asyncio.get_running_loop().call_later(delay, self._retry, key, apply))
            finally:
                self._processing.discard(key)
                if key in self._dirty:
                    self._push(key)
