"""Per-model admission: slots per ready replica, a first-come wait bounded in time and length, and
429 MODEL_OVERLOADED with Retry-After beyond (tests/integration/test_overload.py drives it through
the real gateway and Triton)."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from prometheus_client import CollectorRegistry

from conch_api import TensorInterface
from conch_gateway.errors import ConchError
from conch_gateway.limits.admission import Admission
from conch_gateway.prompts import PromptFormat
from conch_gateway.registry.base import ServedModel

MODEL = ServedModel(id="m", name="m", endpoint="http://t", grpc_address=None, triton_model="m",
                    interface=TensorInterface.ENSEMBLE, prompt=PromptFormat.for_model(None, None), routable=True,
                    health="healthy")


async def test_slots_scale_with_ready_replicas_and_waiters_are_served_in_order():
    admission = Admission(per_replica=1, wait_s=5, registry=CollectorRegistry())
    two = replace(MODEL, replicas=2)
    first, second = await admission.acquire(two), await admission.acquire(two)
    order = []

    async def waiting(name):
        release = await admission.acquire(two)
        order.append(name)
        return release

    third, fourth = asyncio.create_task(waiting("third")), asyncio.create_task(waiting("fourth"))
    await asyncio.sleep(0.01)
    assert order == [] and admission.in_flight.labels("m")._value.get() == 2
    first()
    first()  # releasing twice gives back one slot only
    await asyncio.sleep(0.01)
    assert order == ["third"]
    second()
    await asyncio.sleep(0.01)
    assert order == ["third", "fourth"]
    (await third)()
    (await fourth)()
    assert admission.in_flight.labels("m")._value.get() == 0


async def test_a_full_queue_or_a_long_wait_is_refused_429_with_retry_after():
    admission = Admission(per_replica=1, wait_s=0.05, registry=CollectorRegistry())
    held = await admission.acquire(MODEL)
    with pytest.raises(ConchError) as timed_out:
        await admission.acquire(MODEL)  # waits 50 ms, then gives up
    assert timed_out.value.status == 429 and timed_out.value.code == "MODEL_OVERLOADED"
    assert "Model is overloaded" in timed_out.value.message and timed_out.value.headers["Retry-After"] == "1"
    waiter = asyncio.create_task(admission.acquire(MODEL))
    await asyncio.sleep(0.01)
    with pytest.raises(ConchError):  # one already waits for the one slot: refused at once
        await admission.acquire(MODEL)
    held()
    (await waiter)()
    assert admission.rejected.labels("m")._value.get() == 2


async def test_a_client_that_leaves_while_waiting_gives_up_its_place():
    admission = Admission(per_replica=1, wait_s=5, registry=CollectorRegistry())
    held = await admission.acquire(MODEL)
    gone = asyncio.create_task(admission.acquire(MODEL))
    await asyncio.sleep(0.01)
    gone.cancel()
    await asyncio.gather(gone, return_exceptions=True)
    held()
    release = await asyncio.wait_for(admission.acquire(MODEL), 1)  # the slot is free, not held by the leaver
    release()
