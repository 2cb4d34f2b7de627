"""I/O adapter feeding the hub what has no event of its own, only while someone listens: alerts
(evaluated every second, alerts.py) and local GPUs (at the configured interval). Model status
needs no polling: the registry pushes it (feed.py)."""

from __future__ import annotations

import asyncio
import logging
import time

import httpx

from . import gpu
from .alerts import AlertTracker, local_holding, prometheus_holding

log = logging.getLogger("conch.gateway")
_TICK_S = 1.0


def ensure_polling(app) -> None:
    state = app.state.monitoring
    if state.poller is None or state.poller.done():
        state.poller = asyncio.get_running_loop().create_task(_poll(app))


async def _poll(app) -> None:
    state = app.state.monitoring
    gpu_due = 0.0
    failures: dict[str, str] = {}
    async with httpx.AsyncClient(timeout=5) as client:
        while state.hub.subscribers:
            await _guarded(failures, "alerts", _alerts(state, client))
            loop_time = asyncio.get_running_loop().time()
            if loop_time >= gpu_due:
                gpu_due = loop_time + state.gpu_interval_s
                await _guarded(failures, "GPUs", _gpus(state))
            await asyncio.sleep(_TICK_S)


async def _guarded(failures: dict[str, str], what: str, work) -> None:
    """A hiccup of one feed must not end the others, nor the loop for every client; logged once
    per distinct failure rather than every second."""
    try:
        await work
        failures.pop(what, None)
    except Exception as error:
        if failures.get(what) != str(error):
            log.warning("monitoring: reading %s failed: %s", what, error)
            failures[what] = str(error)


async def _alerts(state, client: httpx.AsyncClient) -> None:
    prometheus_url = state.store.config().prometheus_url
    holding = (await prometheus_holding(client, prometheus_url) if prometheus_url
               else local_holding(state.store.rules(), state.history, time.time()))
    tracker: AlertTracker = state.alerts
    for event in tracker.step(time.monotonic(), holding):
        state.hub.publish("system_alert", event)


async def _gpus(state) -> None:
    for device in (await asyncio.to_thread(gpu.local_gpus)).gpus:
        state.hub.publish("gpu_metrics_update", {"gpu_id": device.index, "utilization": device.utilization_percent,
                                                 "memory_used": device.memory_used_bytes})
