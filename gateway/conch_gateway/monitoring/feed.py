"""model_status_update events, pushed by the routing table itself: the registry calls the feed on
every entry a model source writes (in a cluster, on every Model watch event), and the feed
publishes the models whose status, health or replicas changed — no polling, so a `kubectl scale`
reaches the clients as fast as the watch event reaches the gateway.

Status is seed 003's (running / stopped / starting / error, as /api/models reports it),
`replicas` the Model's spec.replicas where the source has one and `ready_replicas` its
status.readyReplicas, so a scale-up is seen twice: when it is asked for, and as each replica
becomes ready."""

from __future__ import annotations

import asyncio
from typing import Any

from ..registry.base import ServedModel
from .hub import Hub

_RUNNING = {"healthy", "degraded"}
_ERROR = {"failed", "unhealthy", "refused"}


def status_of(entry: ServedModel) -> dict[str, Any]:
    if entry.desired_replicas == 0 or entry.health == "stopped":
        status = "stopped"
    elif entry.health in _RUNNING:
        status = "running"
    elif entry.health in _ERROR:
        status = "error"
    else:
        status = "starting"
    # As management.mapping.to_item: healthy only when ready; unknown while not meant to serve.
    health = "healthy" if entry.healthy else "unhealthy" if status in ("running", "error") else "unknown"
    return {"model_id": entry.id, "status": status, "health": health, "replicas": entry.desired_replicas,
            "ready_replicas": entry.ready_replicas, "reason": entry.reason or None}


class ModelStatusFeed:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self._seen: dict[str, dict[str, Any]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def __call__(self, model_id: str, entry: ServedModel | None) -> None:
        """The registry's change listener; the hub's queues belong to the event loop, so a write from
        another thread (a test, a sync caller) is handed over to it."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if self._loop is None:
            self._loop = running
        if self._loop is not None and running is not self._loop and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._publish, model_id, entry)
        else:
            self._publish(model_id, entry)

    def _publish(self, model_id: str, entry: ServedModel | None) -> None:
        if entry is None:
            if self._seen.pop(model_id, None) is not None:
                self.hub.publish("model_status_update", {"model_id": model_id, "status": "deleted",
                                                         "health": "unknown", "replicas": None,
                                                         "ready_replicas": 0, "reason": None})
            return
        payload = status_of(entry)
        if self._seen.get(model_id) != payload:
            self._seen[model_id] = payload
            self.hub.publish("model_status_update", payload)
