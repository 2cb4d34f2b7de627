"""Hugging Face TGI-compatible routes. Health (`/`, `/ping`, `/health`) and `/metrics`
are served by their own modules, `/docs` by FastAPI."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from .. import __version__
from ..dependencies import services
from ..protocol.tgi import TGIInfo, TGIRequest, TGIResponse
from ..responses import JSONBytes, typed_json
from ..sse import event_stream

router = APIRouter(tags=["tgi"])

_STREAM_DOC = {200: {"content": {"text/event-stream": {}}, "description": "SSE token events"}}
_DEVICE = {"llama-cpp": "cpu", "tensorrt-llm": "cuda"}


@router.post("/generate", response_model=TGIResponse, summary="Generate text (TGI-compatible)")
async def generate(body: TGIRequest, request: Request) -> Response:
    return typed_json(await services(request).tgi.generate(body))


@router.post("/generate_stream", responses=_STREAM_DOC, summary="Generate text as a token stream (TGI-compatible)")
async def generate_stream(body: TGIRequest, request: Request) -> Response:
    return event_stream(await services(request).tgi.stream(body))


@router.post("/", response_model=list[TGIResponse], responses=_STREAM_DOC,
             summary="TGI's compat route: [generation] (a list, as TGI answers), or a stream when stream is true")
async def compat_generate(body: TGIRequest, request: Request) -> Response:
    return await _dispatch(body, request)


@router.post("/invocations", response_model=list[TGIResponse], responses=_STREAM_DOC,
             summary="SageMaker-compatible route, same as POST /")
async def invocations(body: TGIRequest, request: Request) -> Response:
    return await _dispatch(body, request)


@router.get("/info", response_model=TGIInfo, summary="The default model (TGI-compatible)")
async def info(request: Request) -> Response:
    model = services(request).tgi.model()
    answer = TGIInfo(model_id=model.id, model_device_type=_DEVICE.get(model.runtime),
                     max_concurrent_requests=services(request).settings.backend_pool_size, version=__version__)
    return typed_json(answer)


@router.get("/api-doc/openapi.json", include_in_schema=False)
async def openapi(request: Request) -> JSONBytes:
    return JSONBytes(request.app.openapi())


async def _dispatch(body: TGIRequest, request: Request) -> Response:
    """TGI's `/` and `/invocations` answer a JSON list ("to match api-inference"), which its
    client reads as `payload[0]`; `/generate` answers the object itself."""
    service = services(request).tgi
    if body.stream:
        return event_stream(await service.stream(body))
    answer = await service.generate(body)
    return Response(b"[" + answer.model_dump_json().encode() + b"]", media_type="application/json")
