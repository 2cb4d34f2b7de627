from __future__ import annotations

from fastapi import APIRouter

from ..dependencies import Generation, Registry
from ..protocol.generate import GenerateRequest, GenerateResponse
from ..services import unified

router = APIRouter(tags=["unified"])


@router.post("/v1/generate", response_model=GenerateResponse, summary="Generate text (seed 000 unified API)")
async def generate(request: GenerateRequest, registry: Registry, generation: Generation) -> GenerateResponse:
    return await unified.generate(request, registry, generation)
