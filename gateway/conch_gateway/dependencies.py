"""Request-scoped access to the app's state (kept on `app.state`, not in globals)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from .backends.triton import TritonClient
from .observability import Metrics
from .registry.base import ModelRegistry
from .services.generation import GenerationService


def _registry(request: Request) -> ModelRegistry:
    return request.app.state.registry


def _generation(request: Request) -> GenerationService:
    return request.app.state.generation


def _triton(request: Request) -> TritonClient:
    return request.app.state.triton


def _metrics(request: Request) -> Metrics:
    return request.app.state.metrics


Registry = Annotated[ModelRegistry, Depends(_registry)]
Generation = Annotated[GenerationService, Depends(_generation)]
Triton = Annotated[TritonClient, Depends(_triton)]
AppMetrics = Annotated[Metrics, Depends(_metrics)]
