"""I/O adapter feeding the hub: the registry's model states (every 0.25 s, so a change shows
within a second) and local GPUs (at the configured interval), only while someone listens."""

from __future__ import annotations

import asyncio
import logging

from . import gpu
from .hub import status_changes

log = logging.getLogger("conch.gateway")
_MODEL_POLL_S = 0.25


def ensure_polling(app) -> None:
    state = app.state.monitoring
    if state.poller is None or state.poller.done():
        state.poller = asyncio.get_running_loop().create_task(_poll(app))


async def _poll(app) -> None:
    state = app.state.monitoring
    registry = app.state.services.registry
    seen = {m.id: m.health for m in registry.all()}
    gpu_due = 0.0
    while state.hub.subscribers:
        try:
            current = {m.id: m.health for m in registry.all()}
            for change in status_changes(seen, current):
                state.hub.publish("model_status_update", change)
            seen = current
            loop_time = asyncio.get_running_loop().time()
            if loop_time >= gpu_due:
                gpu_due = loop_time + state.gpu_interval_s
                for device in (await asyncio.to_thread(gpu.local_gpus)).gpus:
                    state.hub.publish("gpu_metrics_update", {
                        "gpu_id": device.index, "utilization": device.utilization_percent,
                        "memory_used": device.memory_used_bytes})
        except Exception:  # a monitoring hiccup must not end the feed for every client
            log.exception("monitoring poll failed")
        await asyncio.sleep(_MODEL_POLL_S)
