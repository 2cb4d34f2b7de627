"""The local model source: a fixed set of `Model` resources (the embedded default writes them to
a YAML file), whose health comes from probing Triton's model readiness every few seconds."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Awaitable, Callable

import yaml

from conch_api import Model

from .base import ModelRegistry, ServedModel, served_model

# (Triton base URL, Triton model name) → is that model ready? The app passes its Triton client's
# readiness check, so the registry needs no backend of its own.
ReadinessProbe = Callable[[str, str], Awaitable[bool]]

log = logging.getLogger("conch.gateway.registry")


def load_models(path: Path) -> list[Model]:
    documents = [d for d in yaml.safe_load_all(path.read_text()) if d]
    items = [item for d in documents for item in (d.get("items", [d]) if d.get("kind") == "List" else [d])]
    return [Model.model_validate(item) for item in items]


class LocalModelSource:
    def __init__(self, models: list[Model], ready: ReadinessProbe, probe_interval: float = 2.0):
        self._entries = [served_model(m, routable=True) for m in models]
        self._ready = ready
        self._interval = probe_interval
        self._registry: ModelRegistry | None = None
        self._task: asyncio.Task | None = None

    @classmethod
    def from_file(cls, path: Path, ready: ReadinessProbe, probe_interval: float = 2.0) -> "LocalModelSource":
        return cls(load_models(path), ready, probe_interval)

    async def start(self, registry: ModelRegistry) -> None:
        self._registry = registry
        registry.replace_all(await self._probe_all())
        self._task = asyncio.create_task(self._probe_forever(), name="local-model-probe")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _probe_forever(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            for entry in await self._probe_all():
                self._registry.upsert(entry)

    async def _probe_all(self) -> list[ServedModel]:
        async def probe(entry: ServedModel) -> ServedModel:
            ok = await self._ready(entry.endpoint, entry.triton_model)
            reason = "" if ok else f"Triton at {entry.endpoint} does not report model '{entry.triton_model}' ready"
            return entry.with_health(ok, reason)

        return list(await asyncio.gather(*(probe(e) for e in self._entries)))
