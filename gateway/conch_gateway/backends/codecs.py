"""Codecs between the backend-neutral request and the two TensorRT-LLM tensor interfaces.

Triton's generate extension maps every JSON key that names a model input to a tensor, so a
request body is just tensor names with values (Triton's generate extension,
`docs/protocol/extension_generate.md`). The interfaces differ in their
names and in three facts about their answers, so one codec serves both, driven by a table:

- Text: the ensemble streams each response's new text; llmapi (TensorRT-LLM 1.2.1,
  `llmapi/tensorrt_llm/1/model.py`) sends `CompletionOutput.text`, all text so far, every time.
- Finish reason: llmapi says it (`return_finish_reason`: "stop", "length", "timeout",
  "cancelled", and "None" before the last response); the ensemble does not, so the caller
  infers it from the token count.
- Token counts: the ensemble reports them (`return_num_*_tokens`); llmapi has no such output
  at all. The gateway does not estimate them (it has no copy of the model's tokenizer, and
  usage is billed on): `output_tokens`/`input_tokens` are None and usage is reported as unknown.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from .. import errors
from .base import GenerationRequest


@dataclass(frozen=True)
class TensorNames:
    max_tokens: str
    stream: str
    temperature: str
    top_p: str
    top_k: str
    seed: str
    presence_penalty: str
    frequency_penalty: str
    stop: str
    repetition_penalty: str | None
    flags: tuple[tuple[str, bool], ...]  # always sent: no prompt echo, token counts / finish reason
    batched: bool  # does the Triton model take a leading batch dimension (max_batch_size > 0)?
    cumulative_text: bool  # does each streamed response carry all text so far (not only the new text)?


ENSEMBLE = TensorNames(
    max_tokens="max_tokens", stream="stream", temperature="temperature", top_p="top_p", top_k="top_k",
    seed="seed", presence_penalty="presence_penalty", frequency_penalty="frequency_penalty", stop="stop_words",
    repetition_penalty="repetition_penalty",
    flags=(("exclude_input_in_output", True), ("return_num_input_tokens", True), ("return_num_output_tokens", True)),
    batched=True, cumulative_text=False,
)

LLMAPI = TensorNames(
    max_tokens="sampling_param_max_tokens", stream="streaming", temperature="sampling_param_temperature",
    top_p="sampling_param_top_p", top_k="sampling_param_top_k", seed="sampling_param_seed",
    presence_penalty="sampling_param_presence_penalty", frequency_penalty="sampling_param_frequency_penalty",
    stop="sampling_param_stop", repetition_penalty=None,
    # The Triton model defaults exclude_input_from_output to False (helpers.py), unlike SamplingParams.
    flags=(("sampling_param_exclude_input_from_output", True), ("return_finish_reason", True)),
    batched=False, cumulative_text=True,
)

# Triton datatypes of every input either interface may be sent (gRPC needs them spelled out;
# HTTP `generate` looks them up in the model config itself).
DATATYPES: dict[str, str] = {
    "text_input": "BYTES",
    # ensemble
    "max_tokens": "INT32", "stream": "BOOL", "temperature": "FP32", "top_p": "FP32", "top_k": "INT32",
    "seed": "UINT64", "presence_penalty": "FP32", "frequency_penalty": "FP32", "repetition_penalty": "FP32",
    "stop_words": "BYTES", "exclude_input_in_output": "BOOL", "return_num_input_tokens": "BOOL",
    "return_num_output_tokens": "BOOL",
    # llmapi
    "sampling_param_max_tokens": "INT32", "streaming": "BOOL", "sampling_param_temperature": "FP32",
    "sampling_param_top_p": "FP32", "sampling_param_top_k": "INT32", "sampling_param_seed": "UINT64",
    "sampling_param_presence_penalty": "FP32", "sampling_param_frequency_penalty": "FP32",
    "sampling_param_stop": "BYTES", "sampling_param_exclude_input_from_output": "BOOL", "return_finish_reason": "BOOL",
}


class Codec:
    def __init__(self, names: TensorNames):
        self.names = names

    def request_body(self, request: GenerationRequest, *, stream: bool) -> dict[str, Any]:
        n = self.names
        body: dict[str, Any] = {"text_input": request.prompt, n.max_tokens: request.max_tokens, n.stream: stream}
        body.update(n.flags)
        if n.repetition_penalty is None and request.repetition_penalty not in (None, 1.0):
            raise errors.unsupported_parameter("repetition_penalty", "this model's TensorRT-LLM interface (llmapi) "
                                               "has no repetition penalty; use presence_penalty or frequency_penalty")
        optional = [(n.seed, request.seed), (n.presence_penalty, request.presence_penalty),
                    (n.frequency_penalty, request.frequency_penalty), (n.repetition_penalty, request.repetition_penalty)]
        if request.greedy:
            # Greedy in TensorRT-LLM's terms on both paths; temperature 0 is not accepted everywhere.
            body[n.top_k] = 1
        else:
            optional += [(n.temperature, request.temperature), (n.top_p, request.top_p), (n.top_k, request.top_k)]
        body.update((name, value) for name, value in optional if name and value is not None)
        # The model family's extra end-of-turn tokens: TensorRT-LLM stops on one end id only.
        stop_words = [*request.stop, *request.stop_tokens]
        if stop_words:
            body[n.stop] = stop_words
        return body

    def text(self, payload: dict[str, Any]) -> str:
        """The text of a one-response answer (complete either way)."""
        return _first(payload.get("text_output", ""))

    def text_deltas(self) -> Callable[[dict[str, Any]], str]:
        """A reader for one stream: each response's new text. Use one per stream."""
        if not self.names.cumulative_text:
            return self.text
        seen = ""

        def new_text(payload: dict[str, Any]) -> str:
            nonlocal seen
            text = self.text(payload)
            # TensorRT-LLM trims a matched stop string from the last response only, so that one may
            # be shorter than what was already sent; it adds nothing then.
            delta = text[len(seen):] if text.startswith(seen) else ""
            seen = text
            return delta

        return new_text

    def finish_reason(self, payload: dict[str, Any]) -> str | None:
        """"stop" or "length" when the backend says why it finished, else None (still running, or
        an interface that does not say). A timeout or a cancellation also cut the text short."""
        reason = _first(payload.get("finish_reason"))
        if reason in (None, "", "None"):
            return None
        return "stop" if reason == "stop" else "length"

    def output_tokens(self, payload: dict[str, Any]) -> int | None:
        return _int(payload.get("num_output_tokens"))

    def input_tokens(self, payload: dict[str, Any]) -> int | None:
        return _int(payload.get("num_input_tokens"))


CODECS: dict[str, Codec] = {"ensemble": Codec(ENSEMBLE), "llmapi": Codec(LLMAPI)}


def _first(value: Any) -> Any:
    # Triton unwraps one-element tensors to scalars; longer ones stay lists.
    if isinstance(value, list):
        return value[0] if value else ""
    return value


def _int(value: Any) -> int | None:
    value = _first(value)
    return None if value is None or value == "" else int(value)
