"""OpenAI's chat completions, completions and embeddings, mapped onto the generation service.

Streams follow OpenAI's wire format exactly: a first chunk with the assistant role, content
deltas, a last chunk per choice with `finish_reason`, an optional usage chunk
(`stream_options.include_usage`), then `data: [DONE]`.
"""

from __future__ import annotations

import base64
import time
import uuid
from typing import Any, AsyncIterator

import numpy as np
import orjson

from .. import errors
from ..backends.base import GenerationRequest, GenerationResult, StreamDelta
from ..protocol import openai as api
from ..registry.base import ModelRegistry, ServedModel
from ..sse import relay
from .choices import all_or_nothing, merge, open_all
from .embeddings import EmbeddingService
from .generation import GenerationService

DEFAULT_MAX_TOKENS = 512  # OpenAI's default is "until the context ends"; this bounds the wait


# Request mapping (pure) ------------------------------------------------------------------------

def check_chat(request: api.ChatCompletionRequest) -> None:
    _check_sampling(request)
    if request.logprobs or request.top_logprobs:
        raise errors.unsupported_parameter("logprobs", "logprobs are not available: Triton's TensorRT-LLM "
                                           "interfaces return text, not token log-probabilities")
    if request.response_format and request.response_format.get("type", "text") != "text":
        raise errors.unsupported_parameter("response_format", "only response_format {\"type\": \"text\"} is supported")
    if request.tools or request.functions or request.tool_choice not in (None, "none") or request.function_call:
        raise errors.unsupported_parameter("tools", "tool and function calling are not supported")
    if any(m.tool_calls for m in request.messages):
        raise errors.unsupported_parameter("messages", "messages with tool_calls are not supported")


def check_completion(request: api.CompletionRequest) -> None:
    _check_sampling(request)
    if not isinstance(request.prompt, str) and request.prompt and not all(isinstance(p, str) for p in request.prompt):
        raise errors.unsupported_parameter("prompt", "token-id prompts are not supported; send text")
    if isinstance(request.prompt, list) and not request.prompt:
        raise errors.invalid_request("prompt must not be empty", param="prompt")
    if request.suffix:
        raise errors.unsupported_parameter("suffix", "suffix (fill-in-the-middle) is not supported")
    if request.best_of not in (None, 1, request.n):
        raise errors.unsupported_parameter("best_of", "best_of is not supported (choices are not ranked)")
    if request.logprobs is not None:
        raise errors.unsupported_parameter("logprobs", "logprobs are not available: Triton's TensorRT-LLM "
                                           "interfaces return text, not token log-probabilities")


def _check_sampling(request: api._Sampling) -> None:
    if request.logit_bias:
        raise errors.unsupported_parameter("logit_bias", "logit_bias is not supported")
    if request.stream_options is not None and not request.stream:
        raise errors.invalid_request("stream_options is only allowed with stream: true", param="stream_options")


def chat_messages(request: api.ChatCompletionRequest) -> list[dict[str, str]]:
    # "developer" is OpenAI's newer name for the system role; chat templates know only "system".
    return [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in request.messages]


def generation_request(request: api._Sampling, prompt: str, model: ServedModel, max_tokens: int | None,
                       choice: int = 0) -> GenerationRequest:
    temperature = 1.0 if request.temperature is None else request.temperature
    greedy = temperature == 0
    seed = request.seed
    if seed is not None and choice:
        seed = (seed + choice) % 2**63  # n choices from one seed must still differ
    return GenerationRequest.decoding(
        prompt,
        max_tokens or DEFAULT_MAX_TOKENS,
        greedy=greedy,
        temperature=temperature,
        top_p=request.top_p,
        top_k=request.top_k,
        seed=seed,
        stop=request.stop_strings(),
        stop_tokens=model.prompt.stop_tokens,
        repetition_penalty=request.repetition_penalty,
        presence_penalty=request.presence_penalty or None,
        frequency_penalty=request.frequency_penalty or None,
    )


def usage(results: list[GenerationResult], prompts: int = 1) -> api.Usage | None:
    """None when the model's interface does not count tokens (llmapi): unknown, not made up."""
    if any(r.output_tokens is None for r in results):
        return None
    # OpenAI counts a prompt once however many choices it has.
    per_prompt = len(results) // max(prompts, 1)
    prompt_tokens = sum(r.input_tokens or 0 for r in results[::per_prompt or 1])
    completion = sum(r.output_tokens for r in results)
    return api.Usage(prompt_tokens=prompt_tokens, completion_tokens=completion, total_tokens=prompt_tokens + completion)


# Chat completions ------------------------------------------------------------------------------

class OpenAIService:
    def __init__(self, registry: ModelRegistry, generation: GenerationService, embeddings: EmbeddingService):
        self._registry = registry
        self._generation = generation
        self._embeddings = embeddings

    async def _chat_requests(self, request: api.ChatCompletionRequest) -> tuple[ServedModel, list[GenerationRequest]]:
        check_chat(request)
        model = self._registry.resolve(request.model, param="model", missing_status=404)
        prompt = await model.prompt.render_async(chat_messages(request))
        max_tokens = request.max_completion_tokens or request.max_tokens
        return model, [generation_request(request, prompt, model, max_tokens, i) for i in range(request.n)]

    async def chat(self, request: api.ChatCompletionRequest) -> api.ChatCompletion:
        model, requests = await self._chat_requests(request)
        results = await all_or_nothing([self._generation.complete(model, r) for r in requests])
        return api.ChatCompletion(
            id=_id("chatcmpl"), created=int(time.time()), model=request.model,
            choices=[api.ChatChoice(index=i, message=api.AssistantMessage(content=r.text), finish_reason=r.finish_reason)
                     for i, r in enumerate(results)],
            usage=usage(results),
        )

    async def chat_stream(self, request: api.ChatCompletionRequest) -> AsyncIterator[str]:
        model, requests = await self._chat_requests(request)
        streams = await open_all([self._generation.stream(model, r) for r in requests])
        chunk = ChunkWriter("chat.completion.chunk", _id("chatcmpl"), request.model, request.stream_options,
                            request.n)
        return relay(merge(streams), chunk.chat_delta, chunk.error, chunk.trailer)

    # Completions -------------------------------------------------------------------------------

    def _completion_requests(self, request: api.CompletionRequest) -> tuple[ServedModel, list[str], list[GenerationRequest]]:
        check_completion(request)
        model = self._registry.resolve(request.model, param="model", missing_status=404)
        prompts = [request.prompt] if isinstance(request.prompt, str) else list(request.prompt)
        if len(prompts) * request.n > 64:
            raise errors.invalid_request("at most 64 completions per request (prompts × n)", param="n")
        # Choice i*n + j is the j-th completion of prompt i, as in OpenAI's API.
        requests = [generation_request(request, p, model, request.max_tokens, j) for p in prompts for j in range(request.n)]
        return model, prompts, requests

    async def complete(self, request: api.CompletionRequest) -> api.Completion:
        model, prompts, requests = self._completion_requests(request)
        results = await all_or_nothing([self._generation.complete(model, r) for r in requests])
        echo = lambda i: prompts[i // request.n] if request.echo else ""  # noqa: E731
        return api.Completion(
            id=_id("cmpl"), created=int(time.time()), model=request.model,
            choices=[api.CompletionChoice(index=i, text=echo(i) + r.text, finish_reason=r.finish_reason)
                     for i, r in enumerate(results)],
            usage=usage(results, prompts=len(prompts)),
        )

    async def complete_stream(self, request: api.CompletionRequest) -> AsyncIterator[str]:
        model, prompts, requests = self._completion_requests(request)
        streams = await open_all([self._generation.stream(model, r) for r in requests])
        chunk = ChunkWriter("text_completion", _id("cmpl"), request.model, request.stream_options, request.n,
                            echo=[prompts[i // request.n] for i in range(len(requests))] if request.echo else None)
        return relay(merge(streams), chunk.completion_delta, chunk.error, chunk.trailer)

    # Embeddings --------------------------------------------------------------------------------

    async def embed(self, request: api.EmbeddingRequest) -> api.EmbeddingList:
        texts = [request.input] if isinstance(request.input, str) else list(request.input)
        if not texts or not all(isinstance(t, str) for t in texts):
            raise errors.unsupported_parameter("input", "input must be a string or a non-empty list of strings "
                                               "(token-id input is not supported)")
        if any(not t for t in texts):
            raise errors.invalid_request("input strings must not be empty", param="input")
        model = self._registry.resolve(request.model, param="model", embeddings=True, missing_status=404)
        vectors, tokens = await self._embeddings.embed(model, texts)
        if request.dimensions is not None and request.dimensions != vectors.shape[1]:
            raise errors.unsupported_parameter("dimensions", f"model '{model.id}' returns {vectors.shape[1]} "
                                               f"dimensions and cannot shorten them; omit dimensions")
        encode = _base64 if request.encoding_format == "base64" else np.ndarray.tolist
        return api.EmbeddingList(
            data=[api.Embedding(index=i, embedding=encode(v)) for i, v in enumerate(vectors)],
            model=request.model,
            usage=api.EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens),
        )


class ChunkWriter:
    """Encodes stream deltas as OpenAI chunks (pre-serialized JSON strings for SSE `data:`)."""

    def __init__(self, kind: str, id_: str, model: str, options: api.StreamOptions | None, choices_per_prompt: int,
                 echo: list[str] | None = None):
        self._choices_per_prompt = choices_per_prompt
        self._base = {"id": id_, "object": kind, "created": int(time.time()), "model": model,
                      "system_fingerprint": None}
        self._include_usage = bool(options and options.include_usage)
        self._echo = echo
        self._started: set[int] = set()
        self._prompt_tokens: dict[int, int] = {}
        self._completion_tokens: dict[int, int | None] = {}

    def chat_delta(self, item: tuple[int, StreamDelta]) -> list[str]:
        index, delta = item
        events = []
        if index not in self._started:
            self._started.add(index)
            events.append(self._chunk({"index": index, "delta": {"role": "assistant", "content": ""},
                                       "logprobs": None, "finish_reason": None}))
        self._count(index, delta)
        if delta.text:
            events.append(self._chunk({"index": index, "delta": {"content": delta.text}, "logprobs": None,
                                       "finish_reason": None}))
        if delta.finish_reason:
            events.append(self._chunk({"index": index, "delta": {}, "logprobs": None,
                                       "finish_reason": delta.finish_reason}))
        return events

    def completion_delta(self, item: tuple[int, StreamDelta]) -> list[str]:
        index, delta = item
        text = delta.text
        if index not in self._started:
            self._started.add(index)
            text = (self._echo[index] if self._echo else "") + text
        self._count(index, delta)
        if not text and not delta.finish_reason:
            return []
        return [self._chunk({"index": index, "text": text, "logprobs": None, "finish_reason": delta.finish_reason})]

    def trailer(self) -> list[str]:
        events = []
        if self._include_usage:
            # A prompt counts once, however many choices it has.
            prompt = sum(v for i, v in self._prompt_tokens.items() if i % self._choices_per_prompt == 0)
            counts = self._completion_tokens.values()
            usage = None  # the model's interface does not count tokens (llmapi)
            if None not in counts:
                completion = sum(counts)
                usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
            events.append(orjson.dumps({**self._base, "choices": [], "usage": usage}).decode())
        events.append("[DONE]")
        return events

    def error(self, exc: errors.ConchError) -> str:
        # The OpenAI SDKs raise APIError for a chunk carrying "error".
        return orjson.dumps(errors.envelope(exc.status, exc.code, exc.message, "", param=exc.param,
                                            details=exc.details)).decode()

    def _count(self, index: int, delta: StreamDelta) -> None:
        if delta.input_tokens is not None:
            self._prompt_tokens[index] = delta.input_tokens
        self._completion_tokens[index] = delta.output_tokens

    def _chunk(self, choice: dict[str, Any]) -> str:
        body = {**self._base, "choices": [choice]}
        if self._include_usage:
            body["usage"] = None
        return orjson.dumps(body).decode()


def _id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def _base64(vector: np.ndarray) -> str:
    # OpenAI's base64 format: the little-endian float32 bytes of the vector.
    return base64.b64encode(vector.astype("<f4").tobytes()).decode()
