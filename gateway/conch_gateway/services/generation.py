"""Generation, independent of API dialect: call the model's backend within the time limit, and
turn backend failures into the errors clients see. `complete` gives one answer; `stream` is the
one streaming core under every streaming dialect (OpenAI, TGI, generate, /api/v1)."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass
from typing import AsyncIterator, Callable

from .. import errors
from ..auth.caller import authorize
from ..limits import usage
from ..limits.admission import Admission
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
    """`base_s` for ordinary requests, longer when many tokens are asked for; once a stream has
    started, at most `idle_s` between two of its responses (a hung server, not a slow one)."""

    base_s: float = 60.0
    per_token_s: float = 0.5
    idle_s: float = 30.0

    def for_tokens(self, max_tokens: int) -> float:
        return max(self.base_s, max_tokens * self.per_token_s)


log = logging.getLogger("conch.gateway")


class GenerationService:
    """Every call first checks that the request's caller may use the model (auth.caller) and takes
    one of the model's in-flight slots (limits.admission), held until the answer or stream ends;
    the tokens counted go to the caller's token quota (limits.usage)."""

    def __init__(self, triton: TritonClient, time_limit: TimeLimit, metrics: Metrics, *, stream_over_grpc: bool = False,
                 admission: Admission | None = None):
        self._triton = triton
        self._time_limit = time_limit
        self._metrics = metrics
        self._stream_over_grpc = stream_over_grpc
        self._admission = admission

    async def _admit(self, model: ServedModel) -> Callable[[], None]:
        await authorize(model)
        if self._admission is None:
            return _nothing
        return await self._admission.acquire(model)

    async def complete(self, model: ServedModel, request: GenerationRequest) -> GenerationResult:
        codec = CODECS[model.interface.value]
        timeout = self._time_limit.for_tokens(request.max_tokens)
        started = time.perf_counter()  # metrics: from the request's arrival here, queueing included
        release = await self._admit(model)
        try:
            async with asyncio.timeout(timeout):
                payload = await self._one_answer(model, codec, request)
        except TimeoutError:
            raise self._failure(model, BackendTimeout(timeout)) from None
        except (BackendUnavailable, BackendFailed) as exc:
            raise self._failure(model, exc) from exc
        finally:
            release()
        text, stopped = cut_at_stop(codec.text(payload), request.stop)
        output_tokens, reported = codec.output_tokens(payload), codec.finish_reason(payload)
        if output_tokens is None and reported is None:
            raise errors.triton_server_error(model.id, "the model reported neither its token count nor why it finished")
        self._count_tokens(model, output_tokens)
        input_tokens = codec.input_tokens(payload)
        usage.charge((input_tokens or 0) + (output_tokens or 0))
        finish = "stop" if stopped else reported or _finish_by_count(output_tokens, input_tokens, request.max_tokens,
                                                                       model.context_tokens)
        self._metrics.first_token(model.id, False, time.perf_counter() - started)
        self._metrics.generation_done(model.id, False, finish, input_tokens, output_tokens)
        return GenerationResult(text=text, output_tokens=output_tokens,
                                input_tokens=input_tokens, finish_reason=finish, stop_sequence=stopped)

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
        loop = asyncio.get_running_loop()
        wait_until = deadline  # for the first response; later ones also within idle_s of the last
        started = last_at = time.perf_counter()  # metrics: TTFT from arrival (queueing included), then ITL
        first_seen = False
        release = await self._admit(model)
        try:
            while True:
                try:
                    async with asyncio.timeout_at(wait_until):
                        payload = await anext(events)
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    if loop.time() < deadline:
                        raise self._failure(model, BackendTimeout(self._time_limit.idle_s, idle=True)) from None
                    raise self._failure(model, BackendTimeout(seconds)) from None
                except (BackendUnavailable, BackendFailed) as exc:
                    raise self._failure(model, exc) from exc
                wait_until = min(deadline, loop.time() + self._time_limit.idle_s)
                tokens = codec.output_tokens(payload)
                if tokens is not None:
                    output_tokens = (output_tokens or 0) + tokens
                if input_tokens is None:
                    input_tokens = codec.input_tokens(payload)
                reported = codec.finish_reason(payload) or reported
                text, stopped = stops.feed(new_text(payload))
                now = time.perf_counter()
                if (text or tokens) and not first_seen:
                    first_seen = True
                    self._metrics.first_token(model.id, True, now - started)
                elif tokens:
                    self._metrics.between_tokens(model.id, now - last_at, tokens)
                if tokens:
                    last_at = now
                if stopped:
                    self._count_tokens(model, output_tokens)
                    self._metrics.generation_done(model.id, True, "stop", input_tokens, output_tokens)
                    yield StreamDelta(text, tokens or 0, output_tokens, input_tokens, "stop", stop_sequence=True)
                    return  # closing `events` below cancels the rest in Triton
                if text or tokens:
                    yield StreamDelta(text, tokens or 0, output_tokens, input_tokens)
        finally:
            await events.aclose()
            release()
            usage.charge((input_tokens or 0) + (output_tokens or 0))
        self._count_tokens(model, output_tokens)
        finish = reported or _finish_by_count(output_tokens, input_tokens, request.max_tokens, model.context_tokens)
        self._metrics.generation_done(model.id, True, finish, input_tokens, output_tokens)
        yield StreamDelta(stops.flush(), 0, output_tokens, input_tokens, finish)

    async def _one_answer(self, model: ServedModel, codec: Codec, request: GenerationRequest) -> dict:
        """The model's one response to a non-streaming request. It is read from the stream
        transport all the same (a text model is decoupled; with `stream` false it answers once):
        closing that stream is what cancels a request inside Triton, while a one-shot HTTP
        `generate` runs on to max_tokens after its client (or our time limit) gave up."""
        events = self._events(model, codec, request, stream=False)
        answer = None
        try:
            async for payload in events:
                answer = payload if answer is None else {**answer, **payload}
        finally:
            await events.aclose()
        if answer is None:
            raise BackendFailed(500, "the model sent no response")
        return answer

    def _events(self, model: ServedModel, codec: Codec, request: GenerationRequest, *, stream: bool = True):
        body = codec.request_body(request, stream=stream)
        if self._stream_over_grpc and model.grpc_address:
            return self._triton.stream_grpc(model.grpc_address, model.triton_model, body, DATATYPES,
                                            batched=codec.names.batched)
        return self._triton.generate_stream(model.endpoint, model.triton_model, body)

    def _count_tokens(self, model: ServedModel, output_tokens: int | None) -> None:
        if output_tokens is not None:
            self._metrics.tokens_generated(model.id, output_tokens)

    def _failure(self, model: ServedModel, exc: BackendFailed | BackendUnavailable | BackendTimeout) -> errors.ConchError:
        log.warning("backend of %s failed: %s", model.id, exc)  # in full here; redacted for the client
        if isinstance(exc, BackendUnavailable):
            error = errors.downstream_failed(model.id, errors.redact(str(exc)))
        elif isinstance(exc, BackendTimeout):
            error = (errors.stream_stalled(model.id, exc.seconds) if exc.idle
                     else errors.inference_timeout(model.id, exc.seconds))
        else:
            error = classify_failure(model.id, exc)
        self._metrics.backend_error(model.id, error.code)
        return error


def _nothing() -> None:
    pass


def _finish_by_count(output_tokens: int | None, input_tokens: int | None, max_tokens: int,
                     context_tokens: int | None) -> str:
    """For interfaces that do not say why they finished (the ensemble): the text was cut ("length")
    when it used up max_tokens, or when prompt and text filled the model's context — a model that
    ran out of room did not choose to stop."""
    if output_tokens is None:
        return "stop"
    if output_tokens >= max_tokens:
        return "length"
    filled = context_tokens is not None and input_tokens is not None and input_tokens + output_tokens >= context_tokens
    return "length" if filled else "stop"


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
_MODEL_UNAVAILABLE = re.compile(r"unknown model|is not found|is not ready|not loaded|worker stopped|must be reloaded", re.I)
# A runtime refusing a value it was sent ("top_p must be in (0, 1]", "beam search is not
# supported"): the request's fault, so a 400 — unless the runtime itself failed while generating.
_REFUSED_INPUT = re.compile(r"\bmust be (?:in\b|between|positive|non-negative|at (?:least|most)|greater|less|one of|[<>=])"
                            r"|\bnot supported\b|\bunsupported\b|\binvalid\b", re.I)
_RUNTIME_FAILED = re.compile(r"^generation failed\b", re.I)


def classify_failure(model_id: str, exc: BackendFailed) -> errors.ConchError:
    shown = errors.redact(exc.message)  # a backend's text can name internal hosts: never pass them on
    if exc.status == 503 or _MODEL_UNAVAILABLE.search(exc.message):
        return errors.downstream_failed(model_id, shown)
    if _CONTEXT_EXCEEDED.search(exc.message):
        return errors.context_length_exceeded(model_id, shown)
    if exc.status == 400 and _REFUSED_INPUT.search(exc.message) and not _RUNTIME_FAILED.search(exc.message):
        return errors.refused_by_model(model_id, shown)
    return errors.triton_server_error(model_id, shown)


def cut_at_stop(text: str, stop: tuple[str, ...]) -> tuple[str, bool]:
    """Text up to the first stop string. Backends already stop there, but TensorRT-LLM returns
    the stop word itself, so the gateway cuts again to keep the contract on every backend."""
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)
