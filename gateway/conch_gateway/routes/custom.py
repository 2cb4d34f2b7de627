"""Seed 001's custom API, under `/api/v1`."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ..protocol.custom import BatchRequest, BatchResponse, CustomGenerateRequest, CustomGenerateResponse, CustomModelList
from ..responses import typed_json
from ..sse import event_stream

router = APIRouter(prefix="/api/v1", tags=["custom (seed 001)"])

_STREAM_DOC = {200: {"content": {"text/event-stream": {}}, "description": 'SSE events {"token", "finished"}'}}


@router.post("/generate", response_model=CustomGenerateResponse, responses=_STREAM_DOC,
             summary="Generate text: {text, usage, latency}; streams with stream: true")
async def generate(body: CustomGenerateRequest, request: Request) -> Response:
    service = request.app.state.custom
    if body.stream:
        return event_stream(await service.stream(body))
    return typed_json(await service.generate(body))


@router.post("/generate/stream", responses=_STREAM_DOC, summary='Token stream: SSE {"token", "finished"}')
async def generate_stream(body: CustomGenerateRequest, request: Request) -> Response:
    return event_stream(await request.app.state.custom.stream(body))


@router.post("/batch/generate", response_model=BatchResponse,
             summary="Several requests at once; results in order, errors per item")
async def batch_generate(body: BatchRequest, request: Request) -> Response:
    return typed_json(await request.app.state.custom.batch(body))


@router.get("/models", response_model=CustomModelList, summary="Models, in seed 001's shape")
async def models(request: Request) -> Response:
    return typed_json(request.app.state.custom.models())
