from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..dependencies import AppMetrics

router = APIRouter(tags=["ops"])


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(metrics: AppMetrics) -> Response:
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
