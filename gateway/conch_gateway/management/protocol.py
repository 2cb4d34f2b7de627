"""Seed 003's shapes at the edge: the create body and the model item."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# Unknown fields are refused (extra="forbid") so nothing a client sends is silently dropped.


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelConfigIn(_Body):
    model_path: str | None = Field(None, min_length=1, max_length=4096)
    n_ctx: int | None = Field(None, ge=32, le=262144)
    n_threads: int | None = Field(None, ge=0, le=1024)
    n_gpu_layers: int | None = Field(None, ge=-1, le=10000)


class ResourceRequirementsIn(_Body):
    gpu_count: int | None = Field(None, ge=0, le=8)
    gpu_memory: int | None = Field(None, ge=0, description="MiB per GPU")
    cpu_cores: float | None = Field(None, gt=0, le=1024)


class ModelCreate(_Body):
    name: str = Field(min_length=1, max_length=50)
    display_name: str | None = Field(None, min_length=1, max_length=128)
    description: str | None = Field(None, max_length=4096)
    framework: str
    priority: int | None = Field(None, ge=0, le=100)
    config: ModelConfigIn = Field(default_factory=ModelConfigIn)
    resource_requirements: ResourceRequirementsIn | None = None
    tags: list[str] = Field(default_factory=list, max_length=32)


Status = Literal["running", "starting", "stopped", "error"]


class ModelItem(BaseModel):
    id: str
    name: str
    display_name: str
    description: str | None = None
    framework: str
    status: Status
    health: Literal["healthy", "unhealthy", "unknown"]
    created_at: str | None = None
    updated_at: str | None = None
    config: dict
    resource_usage: dict
    tags: list[str] = Field(default_factory=list)
    priority: int | None = None
    resource_version: str | None = None


class ModelUpdate(ModelCreate):
    """PUT body: the create body plus the resource_version read by GET (optimistic concurrency)."""

    resource_version: str | None = Field(None, description="From GET; a stale one is 409. Omit to overwrite.")


class ModelPage(BaseModel):
    items: list[ModelItem]
    total: int
    page: int
    size: int


class Accepted(BaseModel):
    """A change the backend accepted; progress shows in the model's status."""

    id: str
    name: str
    status: str
    message: str


class Lifecycle(_Body):
    """Seed 003's optional start/stop body."""

    force: bool = False
    timeout: float | None = Field(None, gt=0, le=3600, description="Wait up to this long for the change; "
                                  "504 OPERATION_TIMEOUT when it has not happened yet (it still goes on).")


class LoadRequest(_Body):
    """Seed 001's load body."""

    quantization: str | None = None
    prefer_gpu: bool | None = None


class ModifyClusterState(_Body):
    """Seed 004's manual scaling: set a model's replicas."""

    model: str = Field(min_length=1, max_length=253)
    replicas: int = Field(ge=0, le=64)
