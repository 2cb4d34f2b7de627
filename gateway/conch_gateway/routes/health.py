"""Health: `/health` (also `/`, `/ping`) from the routing table, `/health/full` probing every Triton now."""

from __future__ import annotations

import asyncio

import psutil
from fastapi import APIRouter, Request

from ..dependencies import services
from ..protocol.models import FullHealth, Health
from ..responses import JSONBytes

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health, summary="Health from the routing table (503 when no model is healthy)")
@router.get("/ping", response_model=Health, summary="Same as /health (TGI, SageMaker)")
@router.get("/", response_model=Health, summary="Same as /health (TGI)")
@router.get("/api/v1/health", response_model=Health, summary="Same as /health (the /api/v1 API)")
async def health(request: Request):
    state = services(request)
    models = state.registry.all()
    healthy = sum(m.healthy for m in models)
    body = Health(
        status=_overall(healthy, len(models)),
        models={m.id: m.health for m in models},
        total=len(models),
        healthy=healthy,
        model_loaded=healthy > 0,
        memory_usage=_memory_usage(),
        active_connections=state.metrics.active_count,
        # TGI's ErrorResponse, for its clients, when nothing can serve
        error=None if healthy else "unhealthy: no model is ready",
        error_type=None if healthy else "healthcheck",
    )
    return JSONBytes(body.model_dump(exclude_none=True), status_code=200 if healthy else 503)


@router.get("/health/full", response_model=FullHealth, summary="Probes every model's Triton readiness now")
async def health_full(request: Request):
    state = services(request)
    models = state.registry.all()

    async def probe(model) -> str:
        if model.endpoint is None or model.triton_model is None:
            return model.health
        return "healthy" if await state.triton.model_ready(model.endpoint, model.triton_model) else "unhealthy"

    states = await asyncio.gather(*(probe(m) for m in models))
    details = {m.id: state for m, state in zip(models, states)}
    healthy = sum(state == "healthy" for state in states)
    body = FullHealth(status=_overall(healthy, len(models)), details=details, total=len(models), healthy=healthy)
    return JSONBytes(body.model_dump(), status_code=200 if healthy else 503)


def _overall(healthy: int, total: int) -> str:
    if total and healthy == total:
        return "healthy"
    return "degraded" if healthy else "unhealthy"


def _memory_usage() -> str:
    memory = psutil.virtual_memory()
    return f"{(memory.total - memory.available) / 2**30:.1f}GB/{memory.total / 2**30:.1f}GB"
