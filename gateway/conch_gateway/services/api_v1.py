"""The `/api/v1` API (generate, its token stream, batches, models) on the generation service. Prompts are the user's message, rendered
with the model's chat template."""

from __future__ import annotations

import asyncio
import time
from typing import AsyncIterator

import orjson
from pydantic import ValidationError

from .. import errors
from ..backends.base import GenerationRequest, GenerationResult, StreamDelta
from ..protocol.api_v1 import (
    BatchItem,
    BatchRequest,
    BatchResponse,
    ApiV1GenerateRequest,
    ApiV1GenerateResponse,
    ApiV1Model,
    ApiV1ModelList,
    ItemError,
    Usage,
)
from ..registry.base import ModelRegistry, ServedModel
from ..sse import relay
from .generation import GenerationService

_FORMATS = {"llama-cpp": "gguf", "tensorrt-llm": "tensorrt-llm"}


def generation_request(request: ApiV1GenerateRequest, model: ServedModel, prompt: str | None = None) -> GenerationRequest:
    """`prompt` is the user's turn rendered with the model's chat template (the service renders it
    off the event loop); rendered here when not given."""
    return GenerationRequest.decoding(
        prompt if prompt is not None else model.prompt.render([{"role": "user", "content": request.prompt}]),
        request.max_tokens,
        greedy=request.temperature == 0,
        temperature=request.temperature,
        top_p=request.top_p,
        top_k=request.top_k,
        seed=request.seed,
        stop=tuple(request.stop),
        stop_tokens=model.prompt.stop_tokens,
    )


def usage(input_tokens: int | None, output_tokens: int | None) -> Usage | None:
    if output_tokens is None:  # the model's interface does not count tokens (llmapi)
        return None
    prompt = input_tokens or 0
    return Usage(prompt_tokens=prompt, completion_tokens=output_tokens, total_tokens=prompt + output_tokens)


class ApiV1Service:
    def __init__(self, registry: ModelRegistry, generation: GenerationService, default_model: str | None):
        self._registry = registry
        self._generation = generation
        self._default_model = default_model

    async def _prepare(self, request: ApiV1GenerateRequest) -> tuple[ServedModel, GenerationRequest]:
        model = self._registry.resolve_default(request.model, self._default_model)
        prompt = await model.prompt.render_async([{"role": "user", "content": request.prompt}])
        return model, generation_request(request, model, prompt)

    async def generate(self, request: ApiV1GenerateRequest) -> ApiV1GenerateResponse:
        started = time.perf_counter()
        model, generation = await self._prepare(request)
        result: GenerationResult = await self._generation.complete(model, generation)
        return ApiV1GenerateResponse(text=result.text, usage=usage(result.input_tokens, result.output_tokens),
                                      latency=round(time.perf_counter() - started, 4), model=model.id,
                                      finish_reason=result.finish_reason)

    async def stream(self, request: ApiV1GenerateRequest) -> AsyncIterator[str]:
        model, generation = await self._prepare(request)
        deltas = await self._generation.stream(model, generation)
        return relay(deltas, _token_events, _error_event)

    async def batch(self, request: BatchRequest) -> BatchResponse:
        """Every item runs concurrently; an item that fails gets its own error, in its place."""
        results = await asyncio.gather(*(self._batch_item(item) for item in request.requests))
        return BatchResponse(results=list(results))

    async def _batch_item(self, item: dict) -> BatchItem:
        try:
            parsed = ApiV1GenerateRequest.model_validate(item)
            if parsed.stream:
                raise errors.invalid_request("batch items cannot stream", param="stream")
            answer = await self.generate(parsed)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            return BatchItem(error=ItemError(code="INVALID_REQUEST", message=f"{where}: {first['msg']}" if where
                                             else first["msg"]))
        except errors.ConchError as exc:
            return BatchItem(error=ItemError(code=exc.code, message=exc.message, details=exc.details))
        return BatchItem(**answer.model_dump())

    def models(self) -> ApiV1ModelList:
        return ApiV1ModelList(models=[
            ApiV1Model(name=m.id, format=_FORMATS.get(m.runtime, "triton"), loaded=m.healthy, status=m.health)
            for m in self._registry.all()
        ])


def _token_events(delta: StreamDelta) -> list[str]:
    if delta.finish_reason is None:
        return [orjson.dumps({"token": delta.text, "finished": False}).decode()] if delta.text else []
    return [orjson.dumps({"token": delta.text, "finished": True, "finish_reason": delta.finish_reason,
                          "usage": _dump(usage(delta.input_tokens, delta.output_tokens))}).decode()]


def _error_event(exc: errors.ConchError) -> str:
    return orjson.dumps({"error": {"code": exc.code, "message": exc.message, "details": exc.details},
                         "finished": True}).decode()


def _dump(value: Usage | None) -> dict | None:
    return value.model_dump() if value else None
