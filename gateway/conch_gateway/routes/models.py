"""`/v1/models`: the models served here, in OpenAI's shape and the generate API's."""

from __future__ import annotations

from fastapi import APIRouter, Path, Request

from ..auth.caller import sees_internals, usable
from ..dependencies import services
from ..errors import model_not_found
from ..protocol.models import ModelList, OpenAIModel, GenerateApiModel

router = APIRouter(tags=["models"])


@router.get("/v1/models", response_model=ModelList, summary="Models served here (OpenAI and generate API shapes)")
async def list_models(request: Request) -> ModelList:
    """Only the models the caller may use; where they are served only to admins."""
    models = await usable(services(request).registry.all())
    internals = sees_internals()
    return ModelList(
        data=[OpenAIModel(id=m.id, created=0, name=m.name, status=m.health, supports=list(m.supports)) for m in models],
        models=[GenerateApiModel(id=m.id, name=m.name, status=m.health, supports=list(m.supports),
                                 endpoint=m.endpoint if internals else None) for m in models],
    )


@router.get("/v1/models/{model_id:path}", response_model=OpenAIModel, summary="One model (OpenAI shape, plus its status)")
async def get_model(request: Request,
                    model_id: str = Path(description="A model id from GET /v1/models.")) -> OpenAIModel:
    model = services(request).registry.get(model_id)
    if model is None or not await usable([model]):  # a model the caller may not use is not there for it
        raise model_not_found(model_id, param="model", status=404)
    return OpenAIModel(id=model.id, created=0, name=model.name, status=model.health, supports=list(model.supports))
