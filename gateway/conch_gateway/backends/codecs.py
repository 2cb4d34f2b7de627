"""Codecs between the backend-neutral request and the two TensorRT-LLM tensor interfaces.

Triton's generate extension maps every JSON key that names a model input to a tensor, so a
request body here is just the tensor names with values (DESIGN.md §2).
"""

from __future__ import annotations

from typing import Any, Protocol

from .base import GenerationRequest


class Codec(Protocol):
    def request_body(self, request: GenerationRequest, *, stream: bool) -> dict[str, Any]: ...
    def text(self, payload: dict[str, Any]) -> str: ...
    def output_tokens(self, payload: dict[str, Any]) -> int | None: ...
    def input_tokens(self, payload: dict[str, Any]) -> int | None: ...


class EnsembleCodec:
    """TensorRT-LLM's `ensemble` / `tensorrt_llm_bls` names (`max_tokens`, `stream`, `seed`…)."""

    def request_body(self, request: GenerationRequest, *, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "text_input": request.prompt,
            "max_tokens": request.max_tokens,
            "stream": stream,
            "exclude_input_in_output": True,
            "return_num_input_tokens": True,
            "return_num_output_tokens": True,
        }
        if request.greedy:
            body["top_k"] = 1
        else:
            _put(body, "temperature", request.temperature)
            _put(body, "top_p", request.top_p)
            _put(body, "top_k", request.top_k)
        _put(body, "seed", request.seed)
        _put(body, "repetition_penalty", request.repetition_penalty)
        _put(body, "presence_penalty", request.presence_penalty)
        _put(body, "frequency_penalty", request.frequency_penalty)
        stop_words = [*request.stop, *request.stop_tokens]
        if stop_words:
            body["stop_words"] = stop_words
        return body

    def text(self, payload: dict[str, Any]) -> str:
        return _first(payload.get("text_output", ""))

    def output_tokens(self, payload: dict[str, Any]) -> int | None:
        return _int(payload.get("num_output_tokens"))

    def input_tokens(self, payload: dict[str, Any]) -> int | None:
        return _int(payload.get("num_input_tokens"))


class LlmApiCodec:
    """TensorRT-LLM's PyTorch-path `llmapi` model names (`sampling_param_*`, `streaming`)."""

    def request_body(self, request: GenerationRequest, *, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "text_input": request.prompt,
            "sampling_param_max_tokens": request.max_tokens,
            "streaming": stream,
            "sampling_param_exclude_input_from_output": True,
            "return_finish_reason": True,
        }
        if request.greedy:
            body["sampling_param_top_k"] = 1
        else:
            _put(body, "sampling_param_temperature", request.temperature)
            _put(body, "sampling_param_top_p", request.top_p)
            _put(body, "sampling_param_top_k", request.top_k)
        _put(body, "sampling_param_seed", request.seed)
        _put(body, "sampling_param_presence_penalty", request.presence_penalty)
        _put(body, "sampling_param_frequency_penalty", request.frequency_penalty)
        stop_words = [*request.stop, *request.stop_tokens]
        if stop_words:
            body["sampling_param_stop"] = stop_words
        return body

    def text(self, payload: dict[str, Any]) -> str:
        return _first(payload.get("text_output", ""))

    def output_tokens(self, payload: dict[str, Any]) -> int | None:
        return _int(payload.get("num_output_tokens"))

    def input_tokens(self, payload: dict[str, Any]) -> int | None:
        return _int(payload.get("num_input_tokens"))


CODECS: dict[str, Codec] = {"ensemble": EnsembleCodec(), "llmapi": LlmApiCodec()}


def _put(body: dict[str, Any], key: str, value: Any) -> None:
    if value is not None:
        body[key] = value


def _first(value: Any) -> Any:
    # Triton unwraps one-element tensors to scalars; longer ones stay lists.
    if isinstance(value, list):
        return value[0] if value else ""
    return value


def _int(value: Any) -> int | None:
    value = _first(value)
    return None if value is None or value == "" else int(value)
