"""`POST /v1/generate`, the generate API."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ..dependencies import services
from ..protocol.generate import GenerateRequest, GenerateResponse
from ..responses import typed_json
from ..sse import event_stream
from .fastpath import JSONBodyRoute

router = APIRouter(tags=["generate"], route_class=JSONBodyRoute)  # the hot path: routes/fastpath.py


@router.post("/v1/generate", response_model=GenerateResponse, summary="Generate text")
async def generate(body: GenerateRequest, request: Request) -> Response:
    service = services(request).generate
    if body.stream:
        return event_stream(await service.stream(body))
    return typed_json(await service.generate(body))
