"""Generation, independent of API dialect: resolve the model, call its backend within the time
limit, and turn backend failures into the errors clients see."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .. import errors
from ..backends.base import (
    BackendFailed,
    BackendTimeout,
    BackendUnavailable,
    GenerationRequest,
    GenerationResult,
)
from ..backends.codecs import CODECS
from ..backends.triton import TritonClient
from ..observability import Metrics
from ..registry.base import ServedModel


@dataclass(frozen=True)
class TimeLimit:
    """`base_s` for ordinary requests, longer when many tokens are asked for."""

    base_s: float = 60.0
    per_token_s: float = 0.5

    def for_tokens(self, max_tokens: int) -> float:
        return max(self.base_s, max_tokens * self.per_token_s)


class GenerationService:
    def __init__(self, triton: TritonClient, time_limit: TimeLimit, metrics: Metrics):
        self._triton = triton
        self._time_limit = time_limit
        self._metrics = metrics

    async def complete(self, model: ServedModel, request: GenerationRequest) -> GenerationResult:
        codec = CODECS[model.interface.value]
        body = codec.request_body(request, stream=False)
        timeout = self._time_limit.for_tokens(request.max_tokens)
        try:
            payload = await self._triton.generate(model.endpoint, model.triton_model, body, timeout)
        except BackendUnavailable as exc:
            self._metrics.backend_error(model.id, "DOWNSTREAM_REQUEST_FAILED")
            raise errors.downstream_failed(model.id, str(exc)) from exc
        except BackendTimeout as exc:
            self._metrics.backend_error(model.id, "INFERENCE_TIMEOUT")
            raise errors.inference_timeout(model.id, exc.seconds) from exc
        except BackendFailed as exc:
            raise self._failure(model, exc) from exc
        text, stopped = cut_at_stop(codec.text(payload), request.stop)
        output_tokens = codec.output_tokens(payload)
        if output_tokens is None:
            raise errors.triton_server_error(model.id, "the model did not report how many tokens it generated")
        self._metrics.tokens_generated(model.id, output_tokens)
        finish = "length" if output_tokens >= request.max_tokens and not stopped else "stop"
        return GenerationResult(text=text, output_tokens=output_tokens,
                                input_tokens=codec.input_tokens(payload), finish_reason=finish)

    def _failure(self, model: ServedModel, exc: BackendFailed) -> errors.ConchError:
        error = classify_failure(model.id, exc)
        self._metrics.backend_error(model.id, error.code)
        return error


# Triton answers 400 for every error a model reports through the generate endpoint, whatever
# its cause, so the message is all there is to tell a too-long prompt from a broken server.
_CONTEXT_EXCEEDED = re.compile(r"context window|exceeds? (the )?max(imum)?[ _]input[ _]len|prompt length", re.I)
_MODEL_UNAVAILABLE = re.compile(r"unknown model|is not found|is not ready|not loaded", re.I)


def classify_failure(model_id: str, exc: BackendFailed) -> errors.ConchError:
    if exc.status == 503 or _MODEL_UNAVAILABLE.search(exc.message):
        return errors.downstream_failed(model_id, exc.message)
    if _CONTEXT_EXCEEDED.search(exc.message):
        return errors.context_length_exceeded(model_id, exc.message)
    return errors.triton_server_error(model_id, exc.message)


def cut_at_stop(text: str, stop: tuple[str, ...]) -> tuple[str, bool]:
    """Text up to the first stop string. Backends already stop there, but TensorRT-LLM returns
    the stop word itself, so the gateway cuts again to keep the contract on every backend."""
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)
