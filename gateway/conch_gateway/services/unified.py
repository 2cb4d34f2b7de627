"""Seed 000's `/v1/generate`, mapped onto the dialect-independent generation service."""

from __future__ import annotations

from ..backends.base import GenerationRequest
from ..prompts import scenario_messages
from ..protocol.generate import GenerateParameters, GenerateRequest, GenerateResponse
from ..registry.base import ModelRegistry, ServedModel
from .generation import GenerationService


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


async def generate(request: GenerateRequest, registry: ModelRegistry, service: GenerationService) -> GenerateResponse:
    model = registry.resolve(request.model_id)
    prompt = render_prompt(model, request.scenario, request.inputs)
    result = await service.complete(model, to_generation_request(request.parameters, prompt, model))
    return GenerateResponse(generated_text=result.text, model=model.name, tokens=result.output_tokens)
