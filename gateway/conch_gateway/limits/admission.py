"""Per-model admission control: at most `per_replica` generations in flight per ready Triton
replica of a model; beyond that a request waits — first come, first served — at most `wait_s`,
and never behind more waiters than there are slots. What cannot get a slot is answered
429 MODEL_OVERLOADED with `Retry-After` at once, instead of piling up in Triton's queue until
every request times out."""

from __future__ import annotations

import asyncio
import math
from collections import deque
from contextlib import asynccontextmanager
from typing import AsyncIterator, Callable

from prometheus_client import CollectorRegistry, Counter, Gauge

from .. import errors
from ..observability import ModelLabels
from ..registry.base import ServedModel


class _Gate:
    __slots__ = ("in_flight", "waiters")

    def __init__(self) -> None:
        self.in_flight = 0
        self.waiters: deque[asyncio.Future] = deque()


class Admission:
    def __init__(self, per_replica: int, wait_s: float, registry: CollectorRegistry):
        self._per_replica = per_replica
        self._wait_s = wait_s
        self._gates: dict[str, _Gate] = {}
        self.in_flight = Gauge("conch_model_in_flight", "Generations running per model (admitted).", ["model"],
                               registry=registry)
        self.rejected = Counter("conch_model_overloaded_total", "Requests refused 429 MODEL_OVERLOADED per model.",
                                ["model"], registry=registry)
        # Queue depth: requests waiting for a slot now (in_flight above counts those holding one).
        self.waiting = Gauge("conch_model_waiting", "Requests waiting for a generation slot per model.", ["model"],
                             registry=registry)
        self._label = ModelLabels()

    def capacity(self, model: ServedModel) -> int:
        return self._per_replica * max(1, model.replicas)

    async def acquire(self, model: ServedModel) -> Callable[[], None]:
        """A slot of `model` (waiting for one if need be), and the function that gives it back."""
        gate = self._gates.get(model.id)
        if gate is None:
            gate = self._gates[model.id] = _Gate()
            # export 0 from the start, not only once someone waited or was refused
            self.waiting.labels(self._label(model.id))
            self.rejected.labels(self._label(model.id))
        capacity = self.capacity(model)
        if gate.in_flight < capacity and not gate.waiters:
            gate.in_flight += 1
        else:
            await self._wait(model, gate, capacity)
        gauge = self.in_flight.labels(self._label(model.id))
        gauge.inc()
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                gauge.dec()
                self._release(gate, capacity)

        return release

    @asynccontextmanager
    async def slot(self, model: ServedModel) -> AsyncIterator[None]:
        release = await self.acquire(model)
        try:
            yield
        finally:
            release()

    async def _wait(self, model: ServedModel, gate: _Gate, capacity: int) -> None:
        if len(gate.waiters) >= capacity or self._wait_s <= 0:
            self._refuse(model)
        waiter = asyncio.get_running_loop().create_future()
        gate.waiters.append(waiter)
        waiting = self.waiting.labels(self._label(model.id))
        waiting.inc()
        try:
            async with asyncio.timeout(self._wait_s):
                await waiter  # the releasing request hands its slot over (in_flight stays counted)
        except TimeoutError:
            if waiter.done() and not waiter.cancelled():  # handed over just as time ran out: give it on
                self._release(gate, capacity)
            elif waiter in gate.waiters:
                gate.waiters.remove(waiter)
            self._refuse(model)
        except asyncio.CancelledError:  # the client left while waiting
            if waiter.done() and not waiter.cancelled():
                self._release(gate, capacity)
            elif waiter in gate.waiters:
                gate.waiters.remove(waiter)
            raise
        finally:
            waiting.dec()

    def _release(self, gate: _Gate, capacity: int) -> None:
        while gate.waiters:
            waiter = gate.waiters.popleft()
            if not waiter.done():
                if gate.in_flight <= capacity:
                    waiter.set_result(None)
                    return
                gate.waiters.appendleft(waiter)  # fewer replicas than before: shrink first
                break
        gate.in_flight -= 1

    def _refuse(self, model: ServedModel) -> None:
        self.rejected.labels(self._label(model.id)).inc()
        raise errors.model_overloaded(model.id, max(1, math.ceil(self._wait_s)))
