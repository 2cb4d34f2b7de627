"""`Client` (sync) and `AsyncClient`: one method per gateway API, retries on 429/503, typed results."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any, AsyncIterator, Iterator

import httpx
from httpx_sse import aconnect_sse, connect_sse

from .errors import raise_for
from .retry import RETRYABLE, delay
from .types import ChatReply, GenerateResult, Model, SessionStatus, StreamEvent

DEFAULT_URL = "http://127.0.0.1:8000"


def _options(base_url: str | None, api_key: str | None, api_token: str | None, timeout: float) -> dict[str, Any]:
    headers = {}
    key = api_key or api_token or os.environ.get("CONCH_API_KEY")
    if key:
        headers["Authorization"] = f"Bearer {key}"
    return {"base_url": base_url or os.environ.get("CONCH_URL") or DEFAULT_URL, "headers": headers,
            "timeout": httpx.Timeout(timeout, connect=10.0)}


def _generate_body(prompt: str, model_id: str | None, max_tokens: int, extra: dict[str, Any]) -> dict[str, Any]:
    return {"prompt": prompt, **({"model": model_id} if model_id else {}), "max_tokens": max_tokens, **extra}


def _session(session: str | None) -> dict[str, str]:
    return {"X-Session-Id": session} if session else {}


def _models(payload: Any) -> list[Model]:
    items = payload.get("data", payload.get("items", payload.get("models", []))) if isinstance(payload, dict) else payload
    return [Model.model_validate(m if "id" in m else {**m, "id": m.get("name")}) for m in items]


class Client:
    """Sync client. `api_token` is seed 003's spelling of `api_key`."""

    def __init__(self, base_url: str | None = None, api_key: str | None = None, *, api_token: str | None = None,
                 timeout: float = 120.0, max_retries: int = 3):
        self._http = httpx.Client(**_options(base_url, api_key, api_token, timeout))
        self.max_retries = max_retries

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        for attempt in range(self.max_retries + 1):
            response = self._http.request(method, path, **kwargs)
            if response.status_code in RETRYABLE and attempt < self.max_retries:
                time.sleep(delay(attempt, response.headers.get("Retry-After")))
                continue
            raise_for(response)
            return response.json() if response.content else None

    def _stream(self, path: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> Iterator[dict]:
        # Leaving the loop early closes the connection, which the gateway turns into a cancel in Triton.
        with connect_sse(self._http, "POST", path, json=body, headers=dict(headers or {})) as source:
            raise_for(source.response)
            for event in source.iter_sse():
                if event.data == "[DONE]":
                    return
                yield event.json()

    # generate (/api/v1, seed 003's shape)
    def generate(self, prompt: str, model_id: str | None = None, max_tokens: int = 512, **extra: Any) -> GenerateResult:
        return GenerateResult.model_validate(self.request("POST", "/api/v1/generate",
                                                          json=_generate_body(prompt, model_id, max_tokens, extra)))

    def generate_stream(self, prompt: str, model_id: str | None = None, max_tokens: int = 512,
                        **extra: Any) -> Iterator[StreamEvent]:
        for data in self._stream("/api/v1/generate/stream", _generate_body(prompt, model_id, max_tokens, extra)):
            yield StreamEvent.model_validate(data)

    # OpenAI-style (dicts: the OpenAI shape is documented elsewhere and large)
    def chat_completions(self, **body: Any) -> dict:
        return self.request("POST", "/v1/chat/completions", json=body)

    def chat_completions_stream(self, **body: Any) -> Iterator[dict]:
        return self._stream("/v1/chat/completions", {**body, "stream": True})

    def completions(self, **body: Any) -> dict:
        return self.request("POST", "/v1/completions", json=body)

    def embeddings(self, input: str | list[str], model: str | None = None) -> dict:
        return self.request("POST", "/v1/embeddings", json={"input": input, **({"model": model} if model else {})})

    # models and management
    def list_models(self, **filters: Any) -> list[Model]:
        return _models(self.request("GET", "/v1/models", params=filters or None))

    def managed_models(self, **filters: Any) -> list[Model]:
        return _models(self.request("GET", "/api/models", params=filters or None))

    def create_model(self, name: str, framework: str | None = None, config: dict | None = None, **spec: Any) -> Model:
        body = {"name": name, **({"framework": framework} if framework else {}), **({"config": config} if config else {}), **spec}
        return Model.model_validate(self.request("POST", "/api/models", json=body))

    def get_model(self, model_id: str) -> Model:
        return Model.model_validate(self.request("GET", f"/api/models/{model_id}"))

    def update_model(self, model_id: str, **changes: Any) -> Model:
        return Model.model_validate(self.request("PUT", f"/api/models/{model_id}", json=changes))

    def delete_model(self, model_id: str) -> None:
        self.request("DELETE", f"/api/models/{model_id}")

    def model_action(self, model_id: str, action: str) -> Any:
        return self.request("POST", f"/api/models/{model_id}/{action}")  # start | stop | restart

    def model_logs(self, model_id: str, **params: Any) -> Any:
        return self.request("GET", f"/api/models/{model_id}/logs", params=params or None)

    # sessions (seed 002)
    def chat(self, message: str, session: str | None = None, max_tokens: int = 512, temperature: float = 0.7,
             model: str | None = None) -> ChatReply:
        body = _chat_body(message, max_tokens, temperature, model)
        return ChatReply.model_validate(self.request("POST", "/chat", json=body, headers=_session(session)))

    def chat_stream(self, message: str, session: str | None = None, max_tokens: int = 512,
                    temperature: float = 0.7, model: str | None = None) -> Iterator[StreamEvent]:
        body = {**_chat_body(message, max_tokens, temperature, model), "stream": True}
        for data in self._stream("/chat", body, _session(session)):
            yield StreamEvent.model_validate(data)

    def reset(self, session: str | None = None) -> Any:
        return self.request("POST", "/reset", headers=_session(session))

    def status(self, session: str | None = None) -> SessionStatus:
        return SessionStatus.model_validate(self.request("GET", "/status", headers=_session(session)))

    # auth
    def token(self, username: str, password: str) -> dict:
        return self.request("POST", "/api/auth/token", json={"username": username, "password": password})

    def health(self) -> dict:
        return self.request("GET", "/health")


class AsyncClient:
    """The same surface as `Client`, awaitable; streams are async iterators."""

    def __init__(self, base_url: str | None = None, api_key: str | None = None, *, api_token: str | None = None,
                 timeout: float = 120.0, max_retries: int = 3):
        self._http = httpx.AsyncClient(**_options(base_url, api_key, api_token, timeout))
        self.max_retries = max_retries

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        for attempt in range(self.max_retries + 1):
            response = await self._http.request(method, path, **kwargs)
            if response.status_code in RETRYABLE and attempt < self.max_retries:
                await asyncio.sleep(delay(attempt, response.headers.get("Retry-After")))
                continue
            raise_for(response)
            return response.json() if response.content else None

    async def _stream(self, path: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> AsyncIterator[dict]:
        async with aconnect_sse(self._http, "POST", path, json=body, headers=dict(headers or {})) as source:
            if source.response.status_code >= 400:
                await source.response.aread()
                raise_for(source.response)
            async for event in source.aiter_sse():
                if event.data == "[DONE]":
                    return
                yield event.json()

    async def generate(self, prompt: str, model_id: str | None = None, max_tokens: int = 512, **extra: Any) -> GenerateResult:
        return GenerateResult.model_validate(await self.request("POST", "/api/v1/generate",
                                                                json=_generate_body(prompt, model_id, max_tokens, extra)))

    async def generate_stream(self, prompt: str, model_id: str | None = None, max_tokens: int = 512,
                              **extra: Any) -> AsyncIterator[StreamEvent]:
        async for data in self._stream("/api/v1/generate/stream", _generate_body(prompt, model_id, max_tokens, extra)):
            yield StreamEvent.model_validate(data)

    async def chat_completions(self, **body: Any) -> dict:
        return await self.request("POST", "/v1/chat/completions", json=body)

    def chat_completions_stream(self, **body: Any) -> AsyncIterator[dict]:
        return self._stream("/v1/chat/completions", {**body, "stream": True})

    async def completions(self, **body: Any) -> dict:
        return await self.request("POST", "/v1/completions", json=body)

    async def embeddings(self, input: str | list[str], model: str | None = None) -> dict:
        return await self.request("POST", "/v1/embeddings", json={"input": input, **({"model": model} if model else {})})

    async def list_models(self, **filters: Any) -> list[Model]:
        return _models(await self.request("GET", "/v1/models", params=filters or None))

    async def create_model(self, name: str, framework: str | None = None, config: dict | None = None, **spec: Any) -> Model:
        body = {"name": name, **({"framework": framework} if framework else {}), **({"config": config} if config else {}), **spec}
        return Model.model_validate(await self.request("POST", "/api/models", json=body))

    async def chat(self, message: str, session: str | None = None, max_tokens: int = 512, temperature: float = 0.7,
                   model: str | None = None) -> ChatReply:
        body = _chat_body(message, max_tokens, temperature, model)
        return ChatReply.model_validate(await self.request("POST", "/chat", json=body, headers=_session(session)))

    async def reset(self, session: str | None = None) -> Any:
        return await self.request("POST", "/reset", headers=_session(session))

    async def status(self, session: str | None = None) -> SessionStatus:
        return SessionStatus.model_validate(await self.request("GET", "/status", headers=_session(session)))

    async def token(self, username: str, password: str) -> dict:
        return await self.request("POST", "/api/auth/token", json={"username": username, "password": password})


def _chat_body(message: str, max_tokens: int, temperature: float, model: str | None) -> dict:
    # `model` picks the session's model; the server remembers it for the session's later turns
    body = {"message": message, "max_tokens": max_tokens, "temperature": temperature}
    return body if model is None else {**body, "model": model}
