"""Hugging Face TGI's generate API on the generation service.

TGI sends the prompt as it is (no chat template). Its stream is one event per token,
`{"token": {...}, "generated_text": null, "details": null}`, the last carrying the whole text and
the details. Triton's text interfaces carry no token ids or log-probabilities, so tokens have
`id: -1` and `logprob: null`, and `details.tokens` is empty; `generated_tokens` is the real count.
"""

from __future__ import annotations

from typing import AsyncIterator, Awaitable, TypeVar

import orjson

from .. import errors
from ..backends.base import GenerationRequest, StreamDelta
from ..protocol.tgi import TGIDetails, TGIParameters, TGIRequest, TGIResponse
from ..registry.base import ModelRegistry, ServedModel
from ..sse import relay
from .generation import GenerationService

T = TypeVar("T")

_UNSUPPORTED = (
    ("best_of", lambda p: p.best_of not in (None, 1), "best_of > 1 is not supported"),
    ("decoder_input_details", lambda p: p.decoder_input_details,
     "decoder_input_details is not available: Triton's text interfaces return no prompt tokens"),
    ("top_n_tokens", lambda p: bool(p.top_n_tokens), "top_n_tokens is not available: no token log-probabilities"),
    ("truncate", lambda p: p.truncate is not None, "truncate is not supported; shorten the inputs"),
    ("typical_p", lambda p: p.typical_p is not None, "typical_p is not supported"),
    ("watermark", lambda p: p.watermark, "watermark is not supported"),
    ("grammar", lambda p: p.grammar is not None, "grammar-constrained generation is not supported"),
    ("adapter_id", lambda p: p.adapter_id is not None, "LoRA adapters are not supported"),
)


def check(parameters: TGIParameters) -> None:
    for name, asked, message in _UNSUPPORTED:
        if asked(parameters):
            raise errors.unsupported_parameter(f"parameters.{name}", message, status=422)


def generation_request(parameters: TGIParameters, prompt: str, model: ServedModel) -> GenerationRequest:
    # TGI samples when asked to, or when any sampling parameter is set.
    sample = (parameters.do_sample or parameters.top_k is not None
              or (parameters.temperature is not None and parameters.temperature != 1.0)
              or (parameters.top_p is not None and parameters.top_p < 1.0))
    return GenerationRequest.decoding(
        prompt,
        parameters.max_new_tokens or 100,
        greedy=not sample,
        temperature=parameters.temperature,
        top_p=parameters.top_p,
        top_k=parameters.top_k,
        seed=parameters.seed,
        stop=tuple(parameters.stop),
        stop_tokens=model.prompt.stop_tokens,
        repetition_penalty=parameters.repetition_penalty,
        frequency_penalty=parameters.frequency_penalty or None,
    )


def finish_reason(reason: str, stop_sequence: bool) -> str:
    if reason == "length":
        return "length"
    return "stop_sequence" if stop_sequence else "eos_token"


class TGIService:
    def __init__(self, registry: ModelRegistry, generation: GenerationService, default_model: str | None):
        self._registry = registry
        self._generation = generation
        self._default_model = default_model

    def model(self, model_id: str | None = None) -> ServedModel:
        return self._registry.resolve_default(model_id, self._default_model)

    def _prepare(self, request: TGIRequest) -> tuple[ServedModel, GenerationRequest]:
        check(request.parameters)
        model = self.model(request.model)
        return model, generation_request(request.parameters, request.inputs, model)

    async def generate(self, request: TGIRequest) -> TGIResponse:
        model, generation = self._prepare(request)
        result = await _as_tgi(self._generation.complete(model, generation))
        prefix = request.inputs if request.parameters.return_full_text else ""
        details = None
        if request.parameters.details:
            details = TGIDetails(finish_reason=finish_reason(result.finish_reason, result.stop_sequence),
                                 generated_tokens=result.output_tokens, seed=request.parameters.seed)
        return TGIResponse(generated_text=prefix + result.text, details=details)

    async def stream(self, request: TGIRequest) -> AsyncIterator[str]:
        model, generation = self._prepare(request)
        deltas = await _as_tgi(self._generation.stream(model, generation))
        return relay(deltas, TokenEvents(request).encode, _error_event)


async def _as_tgi(call: Awaitable[T]) -> T:
    """TGI answers a failed generation 424 (error_type "generation"), not 500."""
    try:
        return await call
    except errors.ConchError as exc:
        if exc.status == 500:
            exc.status = 424
        raise


class TokenEvents:
    """TGI's stream: one event per token, the last token's event carrying the whole text and the
    details. Each token is held back until the next arrives, so the final event is the last real
    token, never an extra empty one (the generation core ends with a text-less finishing delta)."""

    def __init__(self, request: TGIRequest):
        self._text = [request.inputs] if request.parameters.return_full_text else []
        self._details = request.parameters.details
        self._seed = request.parameters.seed
        self._held: str | None = None

    def encode(self, delta: StreamDelta) -> list[str]:
        events = []
        if delta.text:
            self._text.append(delta.text)
            if self._held is not None:
                events.append(_token_event(self._held))
            self._held = delta.text
        if delta.finish_reason is None:
            return events
        last, self._held = self._held, None
        details = {"finish_reason": finish_reason(delta.finish_reason, delta.stop_sequence),
                   "generated_tokens": delta.output_tokens, "seed": self._seed}
        event = {"index": 0, "token": {"id": -1, "text": last or "", "logprob": None, "special": last is None},
                 "generated_text": "".join(self._text), "details": details if self._details else None,
                 "top_tokens": None}
        return [*events, orjson.dumps(event).decode()]


def _token_event(text: str) -> str:
    return orjson.dumps({"index": 0, "token": {"id": -1, "text": text, "logprob": None, "special": False},
                         "generated_text": None, "details": None, "top_tokens": None}).decode()


def _error_event(exc: errors.ConchError) -> str:
    # TGI's in-stream error; huggingface_hub raises the exception class named by error_type.
    return orjson.dumps({"error": exc.message, "error_type": "generation" if exc.status >= 500
                         else errors.tgi_error_type(exc.status), "error_code": exc.code}).decode()
