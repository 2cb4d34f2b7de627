"""Seed 002's chat service on the one generation core: a session's history (capped, trimmed to the
model's context) is rendered with the model's chat template and generated under the session lock."""

from __future__ import annotations

import asyncio

from typing import AsyncContextManager, AsyncIterator

import orjson

from .. import errors
from ..auth.caller import current
from ..backends.base import GenerationRequest, StreamDelta
from ..protocol.sessions import ChatRequest, ChatResponse, ResetResponse, StatusResponse
from ..registry.base import ModelRegistry, ServedModel
from ..sessions.history import Message, Session, capped, fit
from ..sessions.store import SessionStore
from ..sse import relay
from .generation import GenerationService, TimeLimit

DEFAULT_SESSION = "default"
LOCK_MARGIN_S = 30.0
_ABANDONING: set = set()  # the loop keeps only weak references to tasks
UNREAD_STREAM_S = 10.0  # a response starts reading its stream at once; one unread this long has lost its client


def session_key(session_id: str | None) -> str:
    """Namespaced by the caller, so one key can never read or reset another's session."""
    return f"{current().principal}:{session_id or DEFAULT_SESSION}"


class SessionService:
    def __init__(self, registry: ModelRegistry, generation: GenerationService, store: SessionStore,
                 default_model: str | None, time_limit: TimeLimit):
        self._registry, self._generation, self._store = registry, generation, store
        self._default_model, self._time_limit = default_model, time_limit

    def _lock(self, key: str, max_tokens: int = 1) -> AsyncContextManager[None]:
        # The lease outlives this request's own time limit, so only a dead replica's lock lapses.
        return self._store.lock(key, self._time_limit.for_tokens(max_tokens) + LOCK_MARGIN_S)

    def _model(self, model_id: str | None) -> ServedModel:
        return self._registry.resolve_default(model_id, self._default_model)

    async def _prepare(self, body: ChatRequest, session: Session) -> tuple[ServedModel, Session, GenerationRequest]:
        """The model (the request's, else the session's, else the default), the conversation to
        send, and the generation request."""
        model_id = body.model or session.model
        model = self._model(model_id)
        messages = capped(session.messages + [{"role": "user", "content": body.message}])
        budget = model.context_tokens - body.max_tokens if model.context_tokens else None
        if budget is not None and budget <= 0:
            raise errors.context_length_exceeded(model.id, f"max_tokens {body.max_tokens} leaves no room for the "
                                                 f"conversation in the model's context of {model.context_tokens} tokens")
        messages = fit(messages, budget)
        prompt = await model.prompt.render_async(messages)
        request = GenerationRequest.decoding(prompt, body.max_tokens, greedy=body.temperature == 0,
                                             temperature=body.temperature, top_p=None, top_k=None,
                                             stop_tokens=model.prompt.stop_tokens)
        return model, Session(model=model_id, messages=messages), request

    async def chat(self, body: ChatRequest, session_id: str | None) -> ChatResponse:
        key = session_key(session_id)
        async with self._lock(key, body.max_tokens):
            model, session, request = await self._prepare(body, await self._store.load(key))
            result = await self._generation.complete(model, request)
            await self._store.save(key, _answered(session, result.text))
        return ChatResponse(message=body.message, response=result.text)

    async def stream(self, body: ChatRequest, session_id: str | None) -> AsyncIterator[str]:
        """SSE events `{"token", "finished": false}`; the last has `finished: true` and the seed's
        whole answer (`message`, `response`, `status`). The session lock is held until the stream
        ends; the turn is kept only if the answer completed."""
        key = session_key(session_id)
        lock = self._lock(key, body.max_tokens)
        await lock.__aenter__()
        try:
            model, session, request = await self._prepare(body, await self._store.load(key))
            deltas = await self._generation.stream(model, request)
        except BaseException as exc:
            await lock.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        text: list[str] = []

        abandoned = False

        async def abandon() -> None:
            # The client left between this call and the response's first read, so `saving` never
            # started and its `finally` will never run: end the Triton stream and free the session.
            nonlocal abandoned
            abandoned = True
            try:
                await deltas.aclose()
                await lock.__aexit__(None, None, None)
            finally:
                _ABANDONING.difference_update(t for t in list(_ABANDONING) if t.done() or t is asyncio.current_task())

        loop = asyncio.get_running_loop()
        watchdog = loop.call_later(UNREAD_STREAM_S, lambda: _ABANDONING.add(loop.create_task(abandon())))

        async def saving() -> AsyncIterator[StreamDelta]:
            watchdog.cancel()
            if abandoned:
                return
            try:
                async for delta in deltas:
                    text.append(delta.text)
                    if delta.finish_reason is not None:
                        await self._store.save(key, _answered(session, "".join(text)))
                    yield delta
            finally:
                await deltas.aclose()
                await lock.__aexit__(None, None, None)

        def encode(delta: StreamDelta) -> list[str]:
            if delta.finish_reason is None:
                return [orjson.dumps({"token": delta.text, "finished": False}).decode()] if delta.text else []
            done = ChatResponse(message=body.message, response="".join(text)).model_dump()
            return [orjson.dumps({"token": delta.text, "finished": True, **done}).decode()]

        return relay(saving(), encode, _error_event)

    async def reset(self, session_id: str | None) -> ResetResponse:
        key = session_key(session_id)
        async with self._lock(key):
            await self._store.delete(key)
        return ResetResponse()

    async def status(self, session_id: str | None) -> StatusResponse:
        session = await self._store.load(session_key(session_id))
        model = self._model(session.model)
        # Triton owns the device and its memory: the gateway cannot see either, so it says where
        # the model is served and 0 bytes (docs/sessions.md; GPUs: the monitoring API).
        return StatusResponse(model_name=model.name, device="triton", conversation_length=len(session.messages),
                              memory_allocated=0)


def _answered(session: Session, answer: str) -> Session:
    messages: list[Message] = session.messages + [{"role": "assistant", "content": answer}]
    return Session(model=session.model, messages=capped(messages))


def _error_event(exc: errors.ConchError) -> str:
    body = errors.envelope(exc.status, exc.code, exc.message, "/chat", param=exc.param, details=exc.details)
    return orjson.dumps({**body, "finished": True}).decode()
