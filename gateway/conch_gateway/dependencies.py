"""Request-scoped access to the app's state (kept on `app.state`, not in globals).

The providers are `async def` on purpose: FastAPI runs a plain `def` dependency in a worker
thread, which on the hot path costs more than everything else the gateway does.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from .backends.triton import TritonClient
from .observability import Metrics
from .registry.base import ModelRegistry
from .services.generation import GenerationService


async def _registry(request: Request) -> ModelRegistry:
    return request.app.state.registry


async def _generation(request: Request) -> GenerationService:
    return request.app.state.generation


async def _triton(request: Request) -> TritonClient:
    return request.app.state.triton


async def _metrics(request: Request) -> Metrics:
    return request.app.state.metrics


Registry = Annotated[ModelRegistry, Depends(_registry)]
Generation = Annotated[GenerationService, Depends(_generation)]
Triton = Annotated[TritonClient, Depends(_triton)]
AppMetrics = Annotated[Metrics, Depends(_metrics)]
