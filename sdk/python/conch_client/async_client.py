"""`AsyncClient`: the same calls as `Client` (from `calls`), awaitable; streams are async iterators."""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Callable

import httpx
from httpx_sse import aconnect_sse

from . import calls
from .calls import Call
from .client import http_options
from .errors import raise_for
from .retry import wait_before_retry
from .types import Accepted, ChatReply, GenerateResult, Model, SessionStatus, StreamEvent


async def _raise_for(response: httpx.Response) -> None:
    if response.status_code >= 400:
        await response.aread()  # a streamed error body must be read before it can be parsed
        raise_for(response)


class AsyncClient:
    def __init__(self, base_url: str | None = None, api_key: str | None = None, *, api_token: str | None = None,
                 timeout: float = 120.0, max_retries: int = 3, event_hooks: dict[str, list[Callable]] | None = None):
        self._http = httpx.AsyncClient(**http_options(base_url, api_key, api_token, timeout, event_hooks))
        self.max_retries = max_retries

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def call(self, call: Call) -> Any:
        for attempt in range(self.max_retries + 1):
            response = await self._http.request(call.method, call.path, **call.options())
            wait = wait_before_retry(response.status_code, response.headers.get("Retry-After"), attempt, self.max_retries)
            if wait is None:
                raise_for(response)
                return call.parse(response)
            await asyncio.sleep(wait)

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        return await self.call(Call(method, path, kwargs.pop("json", None), kwargs.pop("params", None),
                                    kwargs.pop("headers", None) or {}))

    async def events(self, call: Call) -> AsyncIterator[dict]:
        for attempt in range(self.max_retries + 1):
            async with aconnect_sse(self._http, call.method, call.path, **call.options()) as source:
                response = source.response
                wait = wait_before_retry(response.status_code, response.headers.get("Retry-After"), attempt,
                                         self.max_retries)
                if wait is None:
                    await _raise_for(response)
                    async for event in source.aiter_sse():
                        if event.data == "[DONE]":
                            return
                        yield event.json()
                    return
            await asyncio.sleep(wait)

    async def generate(self, prompt: str, model_id: str | None = None, max_tokens: int = 512, **extra: Any) -> GenerateResult:
        return await self.call(calls.generate(prompt, model_id, max_tokens, extra))

    async def generate_stream(self, prompt: str, model_id: str | None = None, max_tokens: int = 512,
                              **extra: Any) -> AsyncIterator[StreamEvent]:
        async for data in self.events(calls.generate_stream(prompt, model_id, max_tokens, extra)):
            yield StreamEvent.model_validate(data)

    async def chat_completions(self, **body: Any) -> dict:
        return await self.call(calls.chat_completions(body))

    def chat_completions_stream(self, **body: Any) -> AsyncIterator[dict]:
        return self.events(calls.chat_completions(body, stream=True))

    async def completions(self, **body: Any) -> dict:
        return await self.call(calls.completions(body))

    async def embeddings(self, input: str | list[str], model: str | None = None) -> dict:
        return await self.call(calls.embeddings(input, model))

    async def list_models(self, **filters: Any) -> list[Model]:
        return await self.call(calls.list_models(filters))

    async def managed_models(self, page: int | None = None, size: int | None = None, status: str | None = None,
                             framework: str | None = None) -> list[Model]:
        return await self.call(calls.managed_models(page, size, status, framework))

    async def create_model(self, name: str, framework: str | None = None, config: dict | None = None,
                           **spec: Any) -> Accepted:
        return await self.call(calls.create_model(name, framework, config, spec))

    async def get_model(self, model_id: str) -> Model:
        return await self.call(calls.get_model(model_id))

    async def update_model(self, model_id: str, **body: Any) -> Model:
        return await self.call(calls.update_model(model_id, body))

    async def delete_model(self, model_id: str) -> None:
        await self.call(calls.delete_model(model_id))

    async def model_action(self, model_id: str, action: str, timeout: float | None = None) -> Accepted:
        return await self.call(calls.model_action(model_id, action, timeout))

    async def start_model(self, model_id: str, timeout: float | None = None) -> Accepted:
        return await self.model_action(model_id, "start", timeout)

    async def stop_model(self, model_id: str, timeout: float | None = None) -> Accepted:
        return await self.model_action(model_id, "stop", timeout)

    async def restart_model(self, model_id: str) -> Accepted:
        return await self.model_action(model_id, "restart")

    async def model_logs(self, model_id: str, tail: int | None = 100, since: int | None = None) -> str:
        return await self.call(calls.model_logs(model_id, tail, since))

    async def follow_logs(self, model_id: str, tail: int | None = 10, since: int | None = None) -> AsyncIterator[str]:
        call = calls.model_logs(model_id, tail, since, follow=True)
        async with self._http.stream(call.method, call.path, params=call.params,
                                     timeout=httpx.Timeout(None, connect=10.0)) as response:
            await _raise_for(response)
            async for line in response.aiter_lines():
                yield line

    async def chat(self, message: str, session: str | None = None, max_tokens: int = 512, temperature: float = 0.7,
                   model: str | None = None) -> ChatReply:
        return await self.call(calls.chat(message, session, max_tokens, temperature, model))

    async def chat_stream(self, message: str, session: str | None = None, max_tokens: int = 512,
                          temperature: float = 0.7, model: str | None = None) -> AsyncIterator[StreamEvent]:
        async for data in self.events(calls.chat(message, session, max_tokens, temperature, model, stream=True)):
            yield StreamEvent.model_validate(data)

    async def reset(self, session: str | None = None) -> Any:
        return await self.call(calls.reset(session))

    async def status(self, session: str | None = None) -> SessionStatus:
        return await self.call(calls.status(session))

    async def token(self, username: str, password: str) -> dict:
        return await self.call(calls.token(username, password))

    async def health(self) -> dict:
        return await self.call(calls.health())
