"""`/v1/generate` (the generate API: `model_id`, `inputs`, `scenario`, `parameters`) on the
dialect-independent generation service."""

from __future__ import annotations

from typing import AsyncIterator

import orjson

from .. import errors
from ..backends.base import GenerationRequest, StreamDelta
from ..prompts import scenario_messages
from ..protocol.generate import GenerateParameters, GenerateRequest, GenerateResponse
from ..registry.base import ModelRegistry, ServedModel
from ..sse import relay
from .generation import GenerationService


def to_generation_request(params: GenerateParameters, prompt: str, model: ServedModel) -> GenerationRequest:
    return GenerationRequest.decoding(
        prompt,
        params.max_new_tokens,
        greedy=not params.do_sample or params.temperature == 0,
        temperature=params.temperature,
        top_p=params.top_p,
        top_k=params.top_k,
        seed=params.seed,
        stop=tuple(params.stop),
        stop_tokens=model.prompt.stop_tokens,
        repetition_penalty=params.repetition_penalty,
    )


def render_prompt(model: ServedModel, scenario: str, inputs: str) -> str:
    return model.prompt.render(scenario_messages(scenario, inputs))


class GenerateService:
    def __init__(self, registry: ModelRegistry, generation: GenerationService):
        self._registry = registry
        self._generation = generation

    async def _prepare(self, request: GenerateRequest) -> tuple[ServedModel, GenerationRequest]:
        model = self._registry.resolve(request.model_id)
        prompt = await model.prompt.render_async(scenario_messages(request.scenario, request.inputs))
        return model, to_generation_request(request.parameters, prompt, model)

    async def generate(self, request: GenerateRequest) -> GenerateResponse:
        model, generation = await self._prepare(request)
        result = await self._generation.complete(model, generation)
        return GenerateResponse(generated_text=result.text, model=model.name, tokens=result.output_tokens,
                                finish_reason=result.finish_reason)

    async def stream(self, request: GenerateRequest) -> AsyncIterator[str]:
        """SSE events `{"token", "finished": false}`; the last has `finished: true` and the whole
        answer (`generated_text`, `model`, `tokens`), an error ends the stream with the error envelope."""
        model, generation = await self._prepare(request)
        deltas = await self._generation.stream(model, generation)
        text: list[str] = []

        def encode(delta: StreamDelta) -> list[str]:
            text.append(delta.text)
            event = {"token": delta.text, "finished": delta.finish_reason is not None}
            if delta.finish_reason is None:
                return [orjson.dumps(event).decode()] if delta.text else []
            event.update(generated_text="".join(text), model=model.name, tokens=delta.output_tokens,
                         finish_reason=delta.finish_reason)
            return [orjson.dumps(event).decode()]

        return relay(deltas, encode, _error_event)


def _error_event(exc: errors.ConchError) -> str:
    body = errors.envelope(exc.status, exc.code, exc.message, "/v1/generate", param=exc.param, details=exc.details)
    return orjson.dumps({**body, "finished": True}).decode()
