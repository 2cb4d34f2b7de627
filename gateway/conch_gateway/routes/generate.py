from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ..protocol.generate import GenerateRequest, GenerateResponse
from ..services import unified
from ..sse import event_stream

router = APIRouter(tags=["unified"])


@router.post("/v1/generate", response_model=GenerateResponse, summary="Generate text (seed 000 unified API)")
async def generate(body: GenerateRequest, request: Request) -> Response:
    # The hot path reads app state directly (resolving dependencies costs more than the lookup) and
    # serializes the already-typed answer itself (FastAPI would validate it a second time).
    state = request.app.state
    if body.stream:
        return event_stream(await unified.generate_stream(body, state.registry, state.generation))
    answer = await unified.generate(body, state.registry, state.generation)
    return Response(answer.model_dump_json(), media_type="application/json")
