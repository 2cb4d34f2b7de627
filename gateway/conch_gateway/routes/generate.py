from __future__ import annotations

from fastapi import APIRouter, Request

from ..protocol.generate import GenerateRequest, GenerateResponse
from ..services import unified

router = APIRouter(tags=["unified"])


@router.post("/v1/generate", response_model=GenerateResponse, summary="Generate text (seed 000 unified API)")
async def generate(body: GenerateRequest, request: Request) -> GenerateResponse:
    # The hot path reads app state directly: resolving dependencies costs more than the lookup.
    state = request.app.state
    return await unified.generate(body, state.registry, state.generation)
