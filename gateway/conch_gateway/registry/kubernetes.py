"""The Kubernetes model source: watches `Model` resources and keeps the routing table equal to
their status — the gateway's one module that talks to the Kubernetes API.

List, then watch from the list's resourceVersion; any watch error (410 Gone after compaction,
an API server restart, a dropped connection) ends the watch and starts over with a fresh list,
so the table never drifts from the cluster.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from pydantic import ValidationError

from conch_api import GROUP, PLURAL, VERSION, Model

from ..kubernetes_client import api_client
from .base import ModelRegistry, ServedModel, served_model

log = logging.getLogger("conch.gateway.registry")


class ModelTable:
    """Models by (namespace, name) → routing entries. A name held in one namespace is served as
    `name` (and `namespace/name`); a name held in several is served only as `namespace/name`
    each, and the bare name is refused as ambiguous, with a warning in the log."""

    def __init__(self, registry: ModelRegistry):
        self._registry = registry
        self._models: dict[tuple[str, str], Model] = {}

    def replace(self, items: list[dict[str, Any]]) -> None:
        self._models = {}
        for item in items:
            model = _parse(item)
            if model is not None:
                self._models[_key(model)] = model
        entries, ambiguous = [], {}
        for name in sorted({name for _, name in self._models}):
            named = self._entries(name)
            entries += named
            if len(named) > 1:
                ambiguous[name] = tuple(e.id for e in named)
        self._registry.replace_all(entries, ambiguous)

    def upsert(self, item: dict[str, Any]) -> None:
        model = _parse(item)
        if model is not None:
            self._models[_key(model)] = model
            self._registry.publish(model.metadata.name, self._entries(model.metadata.name))

    def delete(self, item: dict[str, Any]) -> None:
        meta = item.get("metadata", {})
        self._models.pop((meta.get("namespace", ""), meta.get("name", "")), None)
        self._registry.publish(meta.get("name", ""), self._entries(meta.get("name", "")))

    def _entries(self, name: str) -> list[ServedModel]:
        candidates = sorted((m for (_, n), m in self._models.items() if n == name),
                            key=lambda m: m.metadata.namespace or "")
        if len(candidates) <= 1:
            return [served_model(m) for m in candidates]
        qualified = [f"{m.metadata.namespace}/{name}" for m in candidates]
        log.warning("Models named %r exist in namespaces %s: serving them as %s; the bare name is refused as "
                    "ambiguous", name, [m.metadata.namespace for m in candidates], ", ".join(qualified))
        return [served_model(m, model_id=q) for m, q in zip(candidates, qualified)]


class KubernetesModelSource:
    def __init__(self, namespace: str | None = None, *, watch_timeout_s: int = 300, max_backoff_s: float = 5.0):
        self._namespace = namespace
        self._watch_timeout_s = watch_timeout_s
        self._max_backoff_s = max_backoff_s
        self._api = None
        self._table: ModelTable | None = None
        self._task: asyncio.Task | None = None

    async def start(self, registry: ModelRegistry) -> None:
        self._api = await api_client()
        self._table = ModelTable(registry)
        resource_version = await self._relist()  # serve a complete table from the first request on
        self._task = asyncio.create_task(self._watch_forever(resource_version), name="model-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._api is not None:
            await self._api.close()

    async def _relist(self) -> str:
        listing = await self._list()
        self._table.replace(listing.get("items", []))
        return listing["metadata"]["resourceVersion"]

    def _list_function(self):
        from kubernetes.aio import client

        objects = client.CustomObjectsApi(self._api)
        if self._namespace:
            return objects.list_namespaced_custom_object, (GROUP, VERSION, self._namespace, PLURAL)
        return objects.list_cluster_custom_object, (GROUP, VERSION, PLURAL)

    async def _list(self) -> dict[str, Any]:
        function, args = self._list_function()
        return await function(*args)

    async def _watch_forever(self, resource_version: str) -> None:
        from kubernetes.aio import watch

        backoff = 0.1
        while True:
            try:
                function, args = self._list_function()
                async with watch.Watch().stream(function, *args, resource_version=resource_version,
                                                timeout_seconds=self._watch_timeout_s,
                                                allow_watch_bookmarks=True) as stream:
                    async for event in stream:
                        kind, obj = event["type"], event["object"]
                        if kind == "ERROR":
                            raise RuntimeError(f"watch error: {obj}")
                        resource_version = obj.get("metadata", {}).get("resourceVersion", resource_version)
                        if kind in ("ADDED", "MODIFIED"):
                            self._table.upsert(obj)
                        elif kind == "DELETED":
                            self._table.delete(obj)
                        backoff = 0.1
                # The server ended the watch (timeout): resume where it left off.
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("watching Models failed (%s); listing again in %.1fs", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff_s)
                try:
                    resource_version = await self._relist()
                except asyncio.CancelledError:
                    raise
                except Exception as relist_error:
                    log.warning("listing Models failed: %s", relist_error)


def _parse(item: dict[str, Any]) -> Model | None:
    try:
        return Model.model_validate(item)
    except ValidationError as exc:
        name = item.get("metadata", {}).get("name")
        log.warning("ignoring Model %r that does not match the Model schema: %s", name, exc.errors()[:3])
        return None


def _key(model: Model) -> tuple[str, str]:
    return model.metadata.namespace or "", model.metadata.name
