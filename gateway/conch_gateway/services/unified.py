"""Seed 000's `/v1/generate`, mapped onto the dialect-independent generation service."""

from __future__ import annotations

from typing import AsyncIterator

import orjson

from .. import errors
from ..backends.base import GenerationRequest
from ..prompts import scenario_messages
from ..protocol.generate import GenerateParameters, GenerateRequest, GenerateResponse
from ..registry.base import ModelRegistry, ServedModel
from ..sse import relay
from .generation import GenerationService, StreamDelta


def to_generation_request(params: GenerateParameters, prompt: str, model: ServedModel) -> GenerationRequest:
    greedy = not params.do_sample or params.temperature == 0
    return GenerationRequest(
        prompt=prompt,
        max_tokens=params.max_new_tokens,
        temperature=None if greedy else params.temperature,
        top_p=None if greedy else params.top_p,
        top_k=None if greedy else params.top_k,
        greedy=greedy,
        seed=params.seed,
        stop=tuple(params.stop),
        stop_tokens=model.prompt.stop_tokens,
        repetition_penalty=params.repetition_penalty,
    )


def render_prompt(model: ServedModel, scenario: str, inputs: str) -> str:
    return model.prompt.render(scenario_messages(scenario, inputs))


def _prepare(request: GenerateRequest, registry: ModelRegistry) -> tuple[ServedModel, GenerationRequest]:
    model = registry.resolve(request.model_id)
    prompt = render_prompt(model, request.scenario, request.inputs)
    return model, to_generation_request(request.parameters, prompt, model)


async def generate(request: GenerateRequest, registry: ModelRegistry, service: GenerationService) -> GenerateResponse:
    model, generation = _prepare(request, registry)
    result = await service.complete(model, generation)
    return GenerateResponse(generated_text=result.text, model=model.name, tokens=result.output_tokens)


async def generate_stream(request: GenerateRequest, registry: ModelRegistry,
                          service: GenerationService) -> AsyncIterator[str]:
    """SSE events `{"token", "finished": false}`; the last has `finished: true` and the whole
    answer (`generated_text`, `model`, `tokens`), an error ends the stream with the error envelope."""
    model, generation = _prepare(request, registry)
    deltas = await service.stream(model, generation)
    text: list[str] = []

    def encode(delta: StreamDelta) -> list[str]:
        text.append(delta.text)
        event = {"token": delta.text, "finished": delta.finish_reason is not None}
        if delta.finish_reason is None:
            return [orjson.dumps(event).decode()] if delta.text else []
        event.update(generated_text="".join(text), model=model.name, tokens=delta.output_tokens,
                     finish_reason=delta.finish_reason)
        return [orjson.dumps(event).decode()]

    def encode_error(exc: errors.ConchError) -> str:
        body = errors.envelope(exc.status, exc.code, exc.message, "/v1/generate", param=exc.param, details=exc.details)
        return orjson.dumps({**body, "finished": True}).decode()

    return relay(deltas, encode, encode_error)
