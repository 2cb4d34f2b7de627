"""Generation, independent of API dialect: call the model's backend within the time limit, and
turn backend failures into the errors clients see. `complete` gives one answer; `stream` is the
one streaming core under every streaming dialect (OpenAI, TGI, generate, /api/v1)."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import AsyncIterator

from .. import errors
from ..backends.base import (
    BackendFailed,
    BackendTimeout,
    BackendUnavailable,
    GenerationRequest,
    GenerationResult,
    StreamDelta,
)
from ..backends.codecs import CODECS, DATATYPES, Codec
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
    def __init__(self, triton: TritonClient, time_limit: TimeLimit, metrics: Metrics, *, stream_over_grpc: bool = False):
        self._triton = triton
        self._time_limit = time_limit
        self._metrics = metrics
        self._stream_over_grpc = stream_over_grpc

    async def complete(self, model: ServedModel, request: GenerationRequest) -> GenerationResult:
        codec = CODECS[model.interface.value]
        body = codec.request_body(request, stream=False)
        timeout = self._time_limit.for_tokens(request.max_tokens)
        try:
            payload = await self._triton.generate(model.endpoint, model.triton_model, body, timeout)
        except (BackendUnavailable, BackendTimeout, BackendFailed) as exc:
            raise self._failure(model, exc) from exc
        text, stopped = cut_at_stop(codec.text(payload), request.stop)
        output_tokens, reported = codec.output_tokens(payload), codec.finish_reason(payload)
        if output_tokens is None and reported is None:
            raise errors.triton_server_error(model.id, "the model reported neither its token count nor why it finished")
        self._count_tokens(model, output_tokens)
        finish = "stop" if stopped else reported or _finish_by_count(output_tokens, request.max_tokens)
        return GenerationResult(text=text, output_tokens=output_tokens,
                                input_tokens=codec.input_tokens(payload), finish_reason=finish, stop_sequence=stopped)

    async def stream(self, model: ServedModel, request: GenerationRequest) -> AsyncIterator[StreamDelta]:
        """The generated text as it comes, in deltas; the last one carries `finish_reason`.

        The first delta is awaited before this returns, so a request that fails before any text
        (unreachable server, bad parameters) raises here and the route can still answer with a
        proper HTTP error; later failures raise from the iterator. Closing the iterator early
        (client gone) closes the stream to Triton, which cancels the request."""
        deltas = self._deltas(model, request)
        try:
            first = await anext(deltas)
        except StopAsyncIteration:
            raise errors.triton_server_error(model.id, "the stream ended without a response") from None
        return _starting_with(first, deltas)

    async def _deltas(self, model: ServedModel, request: GenerationRequest) -> AsyncIterator[StreamDelta]:
        codec = CODECS[model.interface.value]
        seconds = self._time_limit.for_tokens(request.max_tokens)
        deadline = asyncio.get_running_loop().time() + seconds
        stops = StopFilter(request.stop)
        events = self._events(model, codec, request)
        new_text = codec.text_deltas()  # one reader per stream: llmapi sends all text so far each time
        output_tokens, input_tokens, reported = None, None, None
        try:
            while True:
                try:
                    async with asyncio.timeout_at(deadline):
                        payload = await anext(events)
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    raise self._failure(model, BackendTimeout(seconds)) from None
                except (BackendUnavailable, BackendFailed) as exc:
                    raise self._failure(model, exc) from exc
                tokens = codec.output_tokens(payload)
                if tokens is not None:
                    output_tokens = (output_tokens or 0) + tokens
                if input_tokens is None:
                    input_tokens = codec.input_tokens(payload)
                reported = codec.finish_reason(payload) or reported
                text, stopped = stops.feed(new_text(payload))
                if stopped:
                    self._count_tokens(model, output_tokens)
                    yield StreamDelta(text, tokens or 0, output_tokens, input_tokens, "stop", stop_sequence=True)
                    return  # closing `events` below cancels the rest in Triton
                if text or tokens:
                    yield StreamDelta(text, tokens or 0, output_tokens, input_tokens)
        finally:
            await events.aclose()
        self._count_tokens(model, output_tokens)
        finish = reported or _finish_by_count(output_tokens, request.max_tokens)
        yield StreamDelta(stops.flush(), 0, output_tokens, input_tokens, finish)

    def _events(self, model: ServedModel, codec: Codec, request: GenerationRequest):
        body = codec.request_body(request, stream=True)
        if self._stream_over_grpc and model.grpc_address:
            return self._triton.stream_grpc(model.grpc_address, model.triton_model, body, DATATYPES,
                                            batched=codec.names.batched)
        return self._triton.generate_stream(model.endpoint, model.triton_model, body)

    def _count_tokens(self, model: ServedModel, output_tokens: int | None) -> None:
        if output_tokens is not None:
            self._metrics.tokens_generated(model.id, output_tokens)

    def _failure(self, model: ServedModel, exc: BackendFailed | BackendUnavailable | BackendTimeout) -> errors.ConchError:
        if isinstance(exc, BackendUnavailable):
            error = errors.downstream_failed(model.id, str(exc))
        elif isinstance(exc, BackendTimeout):
            error = errors.inference_timeout(model.id, exc.seconds)
        else:
            error = classify_failure(model.id, exc)
        self._metrics.backend_error(model.id, error.code)
        return error


def _finish_by_count(output_tokens: int | None, max_tokens: int) -> str:
    """For interfaces that do not say why they finished (the ensemble): all tokens used up means
    the limit cut the text."""
    return "length" if output_tokens is not None and output_tokens >= max_tokens else "stop"


async def _starting_with(first: StreamDelta, rest: AsyncIterator[StreamDelta]) -> AsyncIterator[StreamDelta]:
    try:
        yield first
        if first.finish_reason is None:
            async for delta in rest:
                yield delta
    finally:
        await rest.aclose()


class StopFilter:
    """Cuts a stream of text at the first stop string. Text that could be the start of a stop
    string is held back until the next piece tells, so a stop string split across two tokens
    never leaks to the client."""

    def __init__(self, stop: tuple[str, ...]):
        self._stop = tuple(s for s in stop if s)
        self._pending = ""

    def feed(self, text: str) -> tuple[str, bool]:
        if not self._stop:
            return text, False
        buffer = self._pending + text
        cut, stopped = cut_at_stop(buffer, self._stop)
        if stopped:
            self._pending = ""
            return cut, True
        hold = max((n for s in self._stop for n in range(min(len(s) - 1, len(buffer)), 0, -1)
                    if buffer.endswith(s[:n])), default=0)
        self._pending = buffer[len(buffer) - hold:] if hold else ""
        return buffer[:len(buffer) - hold], False

    def flush(self) -> str:
        pending, self._pending = self._pending, ""
        return pending


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
