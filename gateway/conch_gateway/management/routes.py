"""Seed 003's model management routes, under `/api/models` and `/api/v1/models`, plus seed 001's
`/api/v1/models/{name}/load`, seed 004's `/modify_cluster_state`, and the per-model inference
routes on the gateway's one generation core. Every route needs a credential (the auth
middleware); writes need the admin role (`admin` below)."""

from __future__ import annotations

from typing import Any, AsyncIterator, Literal

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ValidationError

from ..auth import caller as callers
from ..dependencies import services
from ..errors import authorization_failed
from ..protocol.openai import ChatCompletionRequest, Completion, CompletionRequest, EmbeddingRequest
from ..responses import typed_json
from ..sse import event_stream
from .protocol import Accepted, Lifecycle, LoadRequest, ModelCreate, ModelItem, ModelPage, ModelUpdate, ModifyClusterState
from .service import ManagementService

_STREAM_DOC = {200: {"content": {"text/event-stream": {}}, "description": "JSON, or SSE chunks when stream is true"}}


def management(request: Request) -> ManagementService:
    return request.app.state.management


def admin(request: Request) -> None:
    caller = callers.current()
    if not caller.is_admin:
        raise authorization_failed(f"'{caller.principal}' is not an admin: {request.method} {request.url.path} "
                                   "changes models and needs the admin role")


def _routes(prefix: str, *, listing: bool = True) -> APIRouter:
    router = APIRouter(prefix=prefix, tags=["management"])

    async def list_models(request: Request, page: int = Query(1, ge=1), size: int = Query(20, ge=1, le=100),
                          status: Literal["running", "starting", "stopped", "error"] | None = None,
                          framework: str | None = None) -> Response:
        return typed_json(await management(request).list(page, size, status, framework))

    if listing:
        router.get("", response_model=ModelPage, summary="Models, a page at a time, filtered by status/framework")(
            list_models)

    @router.post("", response_model=Accepted, status_code=201, dependencies=[Depends(admin)],
                 summary="Create a model (a Model resource); 409 MODEL_ALREADY_EXISTS")
    async def create(body: ModelCreate, request: Request) -> Response:
        answer = typed_json(await management(request).create(body))
        answer.status_code = 201
        return answer

    @router.get("/{model_id}", response_model=ModelItem, summary="One model")
    async def get(model_id: str, request: Request) -> Response:
        return typed_json(await management(request).get(model_id))

    @router.put("/{model_id}", response_model=ModelItem, dependencies=[Depends(admin)],
                summary="Replace a model's configuration; a stale resource_version is 409")
    async def update(model_id: str, body: ModelUpdate, request: Request) -> Response:
        return typed_json(await management(request).update(model_id, body))

    @router.delete("/{model_id}", status_code=204, dependencies=[Depends(admin)], summary="Delete a model")
    async def delete(model_id: str, request: Request) -> Response:
        await management(request).delete(model_id)
        return Response(status_code=204)

    @router.post("/{model_id}/start", response_model=Accepted, status_code=202, dependencies=[Depends(admin)],
                 summary="Replicas back to their last value")
    async def start(model_id: str, request: Request, body: Lifecycle | None = Body(None)) -> Response:
        return _accepted(await management(request).start(model_id, body.timeout if body else None))

    @router.post("/{model_id}/stop", response_model=Accepted, status_code=202, dependencies=[Depends(admin)],
                 summary="Replicas to 0")
    async def stop(model_id: str, request: Request, body: Lifecycle | None = Body(None)) -> Response:
        return _accepted(await management(request).stop(model_id, body.timeout if body else None))

    @router.post("/{model_id}/restart", response_model=Accepted, status_code=202, dependencies=[Depends(admin)],
                 summary="Rolling restart")
    async def restart(model_id: str, request: Request) -> Response:
        return _accepted(await management(request).restart(model_id))

    @router.get("/{model_id}/logs", summary="The model's logs (text/plain; follow streams)",
                responses={200: {"content": {"text/plain": {}}}})
    async def logs(model_id: str, request: Request, tail: int | None = Query(100, ge=0, le=100000),
                   since: int | None = Query(None, ge=1, description="Seconds back"),
                   follow: bool = False) -> Response:
        lines = await management(request).logs(model_id, tail, since, follow)
        return StreamingResponse(_encode(lines), media_type="text/plain; charset=utf-8")

    # Per-model inference (seed 003): the path names the model. Seed 003's generate body
    # (prompt, max_tokens, temperature, top_p, top_k, stop, stream) and answer (id, model,
    # choices[{text, finish_reason, index}], usage, created) are OpenAI's text completion, so
    # it is served as one: /v1/completions with the model from the path.
    @router.post("/{model_id}/generate", response_model=Completion, responses=_STREAM_DOC,
                 summary="Generate with this model (seed 003; a text completion; stream: true streams)")
    async def generate(model_id: str, request: Request, body: dict[str, Any] = Body(...)) -> Response:
        req = await _request(request, model_id, CompletionRequest, body, "model")
        service = services(request).openai
        return event_stream(await service.complete_stream(req)) if req.stream else typed_json(await service.complete(req))

    @router.post("/{model_id}/generate/stream", responses=_STREAM_DOC,
                 summary="Token stream of this model (SSE text-completion chunks)")
    async def generate_stream(model_id: str, request: Request, body: dict[str, Any] = Body(...)) -> Response:
        req = await _request(request, model_id, CompletionRequest, {**body, "stream": True}, "model")
        return event_stream(await services(request).openai.complete_stream(req))

    @router.post("/{model_id}/chat/completions", summary="OpenAI chat completion with this model")
    async def chat(model_id: str, request: Request, body: dict[str, Any] = Body(...)) -> Response:
        req = await _request(request, model_id, ChatCompletionRequest, body, "model")
        service = services(request).openai
        return event_stream(await service.chat_stream(req)) if req.stream else typed_json(await service.chat(req))

    @router.post("/{model_id}/embeddings", summary="OpenAI embeddings with this model")
    async def embeddings(model_id: str, request: Request, body: dict[str, Any] = Body(...)) -> Response:
        req = await _request(request, model_id, EmbeddingRequest, body, "model")
        return typed_json(await services(request).openai.embed(req))

    return router


def _accepted(answer: Accepted) -> Response:
    response = typed_json(answer)
    response.status_code = 202
    return response


async def _encode(lines: AsyncIterator[str]):
    async for line in lines:
        yield line.encode()


async def _request(request: Request, model_id: str, kind: type[BaseModel], body: dict[str, Any], field: str):
    await management(request).require_running(model_id)
    try:
        return kind.model_validate({**body, field: model_id})
    except ValidationError as exc:  # into the one envelope, as FastAPI's own body validation does
        raise RequestValidationError(exc.errors(include_url=False)) from None


router = APIRouter()
router.include_router(_routes("/api/models"))
# GET /api/v1/models stays seed 001's list (routes/api_v1.py, registered first); seed 003's paged
# list is GET /api/models (and GET /api/v1/models?page=… is still seed 001's: one path, one shape).
router.include_router(_routes("/api/v1/models", listing=False))


@router.post("/api/v1/models/{name}/load", response_model=Accepted, status_code=202, dependencies=[Depends(admin)],
             tags=["management"], summary="Seed 001: load (start) a model")
async def load(name: str, request: Request, body: LoadRequest | None = Body(None)) -> Response:
    return _accepted(await management(request).load(name, body or LoadRequest()))


@router.post("/modify_cluster_state", response_model=Accepted, dependencies=[Depends(admin)], tags=["management"],
             summary="Seed 004: set a model's replicas (manual scaling)")
async def modify_cluster_state(body: ModifyClusterState, request: Request) -> Response:
    return typed_json(await management(request).set_replicas(body.model, body.replicas))
