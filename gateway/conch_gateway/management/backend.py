"""What the management service needs from where Models live: the cluster (kube.py) or the
local Triton (local.py). Both hand back Model objects, so the service and the mapping are one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, AsyncIterator, Protocol

from conch_api.model import Model


class NotFound(LookupError):
    pass


class AlreadyExists(Exception):
    pass


class Stale(Exception):
    """The write named a resourceVersion the object no longer has."""


class Refused(Exception):
    """The serving side refused the change (e.g. Triton not in explicit model-control mode)."""


class Unsupported(Exception):
    """The backend cannot do this (e.g. a Hugging Face source on a laptop)."""


@dataclass(frozen=True)
class Entry:
    model: Model
    resource_version: str | None = None
    created_at: str | None = None
    updated_at: str | None = None


class Backend(Protocol):
    async def list(self) -> list[Entry]: ...

    async def get(self, name: str) -> Entry: ...  # NotFound

    async def create(self, name: str, spec: dict[str, Any], annotations: dict[str, str]) -> Entry: ...  # AlreadyExists

    async def replace(self, name: str, spec: dict[str, Any], annotations: dict[str, str],
                      resource_version: str | None) -> Entry: ...  # NotFound, Stale

    async def delete(self, name: str) -> None: ...  # NotFound

    async def scale(self, name: str, replicas: int, annotations: dict[str, str]) -> Entry: ...  # NotFound

    async def restart(self, name: str) -> Entry: ...  # NotFound

    def logs(self, name: str, *, tail: int | None, since_s: int | None, follow: bool) -> AsyncIterator[str]: ...

    async def largest_gpu_node(self, spec: dict[str, Any]) -> int | None: ...  # None: unknown

    async def close(self) -> None: ...
