"""Seed 003's model management over a Backend: pure orchestration, no HTTP and no cluster."""

from __future__ import annotations

import asyncio
import time
from contextlib import contextmanager
from typing import AsyncIterator

from conch_api.model import ModelSpec

from . import errors
from .backend import AlreadyExists, Backend, Entry, NotFound, Refused, Stale, Unsupported
from .mapping import ANNOTATION, UnmappableField, merge_spec, status_of, to_item, to_spec
from .protocol import Accepted, LoadRequest, ModelCreate, ModelItem, ModelPage, ModelUpdate

# stop remembers the replicas it set to 0, so start brings back that many (seed 003: "start").
LAST_REPLICAS = "conch.dev/last-replicas"
_MERGE_RETRIES = 5


def _item(entry: Entry) -> ModelItem:
    return to_item(entry.model, created_at=entry.created_at, updated_at=entry.updated_at,
                   resource_version=entry.resource_version)


@contextmanager
def _mapped(name: str, operation: str, stale: bool = True):
    """The backends' exceptions → seed 003's codes in the one envelope (Stale passed on when the
    caller retries it)."""
    try:
        yield
    except NotFound:
        raise errors.not_found(name) from None
    except AlreadyExists:
        raise errors.already_exists(name) from None
    except Stale:
        if not stale:
            raise
        raise errors.stale_write(name) from None
    except Unsupported as exc:
        raise errors.unmappable("config.model_path", str(exc)) from None
    except Refused as exc:
        raise errors.refused(f"{operation} of model '{name}'", str(exc)) from None


async def _chain(first: str | None, rest: AsyncIterator[str]) -> AsyncIterator[str]:
    if first is None:
        return
    yield first
    async for line in rest:
        yield line


class ManagementService:
    def __init__(self, backend: Backend):
        self.backend = backend

    async def _get(self, name: str) -> Entry:
        with _mapped(name, "reading"):
            return await self.backend.get(name)

    async def list(self, page: int, size: int, status: str | None, framework: str | None) -> ModelPage:
        items = [_item(e) for e in await self.backend.list()]
        items = [i for i in items if (status is None or i.status == status)
                 and (framework is None or i.framework == framework)]
        items.sort(key=lambda i: i.id)
        start = (page - 1) * size
        return ModelPage(items=items[start:start + size], total=len(items), page=page, size=size)

    async def get(self, name: str) -> ModelItem:
        return _item(await self._get(name))

    @staticmethod
    def _map(body: ModelCreate) -> tuple[dict, dict]:
        try:
            return to_spec(body)
        except UnmappableField as exc:
            raise errors.unmappable(exc.field, exc.message) from None

    async def _fits(self, spec: dict) -> None:
        """A replica's GPUs must fit on one node: asking for more than any schedulable node has is
        refused now (INSUFFICIENT_RESOURCES) rather than left Pending forever."""
        wanted = (spec.get("gpu") or {}).get("count") or 0
        if not wanted:
            return
        largest = await self.backend.largest_gpu_node(spec)
        if largest is not None and wanted > largest:
            raise errors.insufficient_resources(
                f"{wanted} GPU(s) per replica were asked for; the largest schedulable node has {largest} "
                "allocatable nvidia.com/gpu", param="resource_requirements.gpu_count")

    async def create(self, body: ModelCreate) -> Accepted:
        spec, annotations = self._map(body)
        await self._fits(spec)
        with _mapped(body.name, "creation"):
            entry = await self.backend.create(body.name, spec, annotations)
        return Accepted(id=body.name, name=body.name, status="created", message=f"model {body.name} created; "
                        f"status {status_of(entry.model)}")

    async def update(self, name: str, body: ModelUpdate) -> ModelItem:
        if body.name != name:
            raise errors.unmappable("name", f"the body names '{body.name}', the path '{name}'; a Model cannot be renamed")
        mapped, annotations = self._map(body)
        annotations.setdefault(ANNOTATION, "{}")  # clearing description/tags is an update too
        for _ in range(_MERGE_RETRIES):
            current = await self._get(name)
            if current.model.spec.runtime.value != mapped["runtime"]:
                raise errors.unmappable("framework", "framework is immutable; create a new model instead")
            # Onto the spec as it is (replicas included: start/stop own them), not a new one.
            spec = merge_spec(current.model.spec.model_dump(mode="json", exclude_unset=True), mapped)
            try:
                ModelSpec.model_validate(spec)
            except ValueError as exc:
                raise errors.unmappable("config", str(exc)) from None
            await self._fits(spec)
            # The caller's resource_version, else the one this merge was made on: a change made in
            # between (kubectl) is merged again rather than overwritten.
            try:
                with _mapped(name, "update", stale=body.resource_version is not None):
                    return _item(await self.backend.replace(name, spec, annotations,
                                                            body.resource_version or current.resource_version))
            except Stale:
                continue
        raise errors.stale_write(name)

    async def delete(self, name: str) -> None:
        with _mapped(name, "deletion"):
            await self.backend.delete(name)

    async def _scale(self, name: str, replicas: int, annotations: dict[str, str]) -> Entry:
        with _mapped(name, "scaling"):
            return await self.backend.scale(name, replicas, annotations)

    async def start(self, name: str, timeout: float | None = None) -> Accepted:
        entry = await self._get(name)
        replicas = entry.model.spec.replicas or int(entry.model.metadata.annotations.get(LAST_REPLICAS, "1")) or 1
        await self._scale(name, replicas, {})
        await self._wait(name, "running", timeout, "start")
        return Accepted(id=name, name=name, status="starting", message=f"starting {replicas} replica(s)")

    async def stop(self, name: str, timeout: float | None = None) -> Accepted:
        entry = await self._get(name)
        keep = {LAST_REPLICAS: str(entry.model.spec.replicas)} if entry.model.spec.replicas else {}
        await self._scale(name, 0, keep)
        await self._wait(name, "stopped", timeout, "stop")
        return Accepted(id=name, name=name, status="stopping", message="stopping")

    async def restart(self, name: str) -> Accepted:
        entry = await self._get(name)
        if entry.model.spec.replicas == 0:
            raise errors.not_running(name)
        with _mapped(name, "restart"):
            await self.backend.restart(name)
        return Accepted(id=name, name=name, status="restarting", message="rolling restart started")

    async def set_replicas(self, name: str, replicas: int) -> Accepted:
        """Seed 004's manual scaling."""
        entry = await self._get(name)
        keep = {LAST_REPLICAS: str(entry.model.spec.replicas)} if replicas == 0 and entry.model.spec.replicas else {}
        await self._scale(name, replicas, keep)
        return Accepted(id=name, name=name, status="scaling", message=f"replicas set to {replicas}")

    async def load(self, name: str, body: LoadRequest) -> Accepted:
        """Seed 001's load: start the model as it is defined; a different quantization or device is
        a new Model, not a load option."""
        entry = await self._get(name)
        spec = entry.model.spec
        if body.quantization is not None and body.quantization != spec.quantization.value:
            raise errors.unmappable("quantization", f"model '{name}' is served with quantization "
                                    f"{spec.quantization.value}; create another model for {body.quantization}")
        has_gpu = bool(spec.gpu and spec.gpu.count)
        if body.prefer_gpu is not None and body.prefer_gpu != has_gpu:
            raise errors.unmappable("prefer_gpu", f"model '{name}' runs on {'GPU' if has_gpu else 'CPU'}")
        return await self.start(name)

    async def _wait(self, name: str, want: str, timeout: float | None, operation: str) -> None:
        if timeout is None:
            return
        deadline = time.monotonic() + timeout
        while status_of((await self._get(name)).model) != want:
            if time.monotonic() >= deadline:
                raise errors.operation_timeout(operation, timeout)
            await asyncio.sleep(min(0.5, timeout))

    async def logs(self, name: str, tail: int | None, since_s: int | None, follow: bool) -> AsyncIterator[str]:
        await self._get(name)  # 404 before the stream starts
        lines = self.backend.logs(name, tail=tail, since_s=since_s, follow=follow)
        if follow:
            return lines  # its first line may be long in coming: the answer starts at once
        # Without follow every pod is read before the first line, so a failure is an error answer,
        # not a 200 cut short.
        first = await anext(lines, None)
        return _chain(first, lines)

    async def require_running(self, name: str) -> None:
        """For the per-model inference routes: a stopped model is MODEL_NOT_RUNNING, not a backend error."""
        if status_of((await self._get(name)).model) == "stopped":
            raise errors.not_running(name)
