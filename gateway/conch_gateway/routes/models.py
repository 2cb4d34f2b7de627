from __future__ import annotations

from fastapi import APIRouter

from ..dependencies import Registry
from ..protocol.models import ModelList, OpenAIModel, UnifiedModel

router = APIRouter(tags=["models"])


@router.get("/v1/models", response_model=ModelList, summary="Models served here (OpenAI and seed 000 shapes)")
async def list_models(registry: Registry) -> ModelList:
    models = registry.all()
    return ModelList(
        data=[OpenAIModel(id=m.id, created=0) for m in models],
        models=[UnifiedModel(id=m.id, name=m.name, status=m.health, supports=list(m.supports), endpoint=m.endpoint)
                for m in models],
    )
