"""`Client` (sync): one method per gateway API, retries on 429/503, typed results. The calls
themselves are described once, in `calls`; `AsyncClient` (async_client.py) runs the same ones."""

from __future__ import annotations

import os
import time
from typing import Any, Callable, Iterator

import httpx
from httpx_sse import connect_sse

from . import calls
from .calls import Call
from .errors import raise_for
from .retry import wait_before_retry
from .types import Accepted, ChatReply, GenerateResult, Model, SessionStatus, StreamEvent

DEFAULT_URL = "http://127.0.0.1:8000"


def http_options(base_url: str | None, api_key: str | None, api_token: str | None, timeout: float,
                 event_hooks: dict[str, list[Callable]] | None) -> dict[str, Any]:
    headers = {}
    key = api_key or api_token or os.environ.get("CONCH_API_KEY")
    if key:
        headers["Authorization"] = f"Bearer {key}"
    return {"base_url": base_url or os.environ.get("CONCH_URL") or DEFAULT_URL, "headers": headers,
            "timeout": httpx.Timeout(timeout, connect=10.0), "event_hooks": event_hooks}


class Client:
    """Sync client. `api_token` is seed 003's spelling of `api_key`; `event_hooks` are httpx's
    (called for every request and response, retries included: logging, metrics)."""

    def __init__(self, base_url: str | None = None, api_key: str | None = None, *, api_token: str | None = None,
                 timeout: float = 120.0, max_retries: int = 3, event_hooks: dict[str, list[Callable]] | None = None):
        self._http = httpx.Client(**http_options(base_url, api_key, api_token, timeout, event_hooks))
        self.max_retries = max_retries

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def call(self, call: Call) -> Any:
        for attempt in range(self.max_retries + 1):
            response = self._http.request(call.method, call.path, **call.options())
            wait = wait_before_retry(response.status_code, response.headers.get("Retry-After"), attempt, self.max_retries)
            if wait is None:
                raise_for(response)
                return call.parse(response)
            time.sleep(wait)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Any route, as JSON (retries and errors as for the named methods)."""
        return self.call(Call(method, path, kwargs.pop("json", None), kwargs.pop("params", None),
                              kwargs.pop("headers", None) or {}))

    def events(self, call: Call) -> Iterator[dict]:
        """The SSE events of `call`, as JSON. A 429/503 before the stream starts is retried like any
        call; leaving the loop early closes the connection, which the gateway turns into a cancel
        in Triton."""
        for attempt in range(self.max_retries + 1):
            with connect_sse(self._http, call.method, call.path, **call.options()) as source:
                response = source.response
                wait = wait_before_retry(response.status_code, response.headers.get("Retry-After"), attempt,
                                         self.max_retries)
                if wait is None:
                    raise_for(response)
                    for event in source.iter_sse():
                        if event.data == "[DONE]":
                            return
                        yield event.json()
                    return
            time.sleep(wait)

    # generate (/api/v1, seed 003's shape)
    def generate(self, prompt: str, model_id: str | None = None, max_tokens: int = 512, **extra: Any) -> GenerateResult:
        return self.call(calls.generate(prompt, model_id, max_tokens, extra))

    def generate_stream(self, prompt: str, model_id: str | None = None, max_tokens: int = 512,
                        **extra: Any) -> Iterator[StreamEvent]:
        for data in self.events(calls.generate_stream(prompt, model_id, max_tokens, extra)):
            yield StreamEvent.model_validate(data)

    # OpenAI-style
    def chat_completions(self, **body: Any) -> dict:
        return self.call(calls.chat_completions(body))

    def chat_completions_stream(self, **body: Any) -> Iterator[dict]:
        return self.events(calls.chat_completions(body, stream=True))

    def completions(self, **body: Any) -> dict:
        return self.call(calls.completions(body))

    def embeddings(self, input: str | list[str], model: str | None = None) -> dict:
        return self.call(calls.embeddings(input, model))

    # models served, and managed (seed 003)
    def list_models(self, **filters: Any) -> list[Model]:
        return self.call(calls.list_models(filters))

    def managed_models(self, page: int | None = None, size: int | None = None, status: str | None = None,
                       framework: str | None = None) -> list[Model]:
        return self.call(calls.managed_models(page, size, status, framework))

    def create_model(self, name: str, framework: str | None = None, config: dict | None = None, **spec: Any) -> Accepted:
        return self.call(calls.create_model(name, framework, config, spec))

    def get_model(self, model_id: str) -> Model:
        return self.call(calls.get_model(model_id))

    def update_model(self, model_id: str, **body: Any) -> Model:
        """Replaces the definition (PUT): pass the create body's fields, and `resource_version` from
        `get_model` to be refused (409 CONFLICT) if someone changed it meanwhile."""
        return self.call(calls.update_model(model_id, body))

    def delete_model(self, model_id: str) -> None:
        self.call(calls.delete_model(model_id))

    def model_action(self, model_id: str, action: str, timeout: float | None = None) -> Accepted:
        return self.call(calls.model_action(model_id, action, timeout))

    def start_model(self, model_id: str, timeout: float | None = None) -> Accepted:
        return self.model_action(model_id, "start", timeout)

    def stop_model(self, model_id: str, timeout: float | None = None) -> Accepted:
        return self.model_action(model_id, "stop", timeout)

    def restart_model(self, model_id: str) -> Accepted:
        return self.model_action(model_id, "restart")

    def model_logs(self, model_id: str, tail: int | None = 100, since: int | None = None) -> str:
        """The model's last `tail` log lines (or those of the last `since` seconds), as text."""
        return self.call(calls.model_logs(model_id, tail, since))

    def follow_logs(self, model_id: str, tail: int | None = 10, since: int | None = None) -> Iterator[str]:
        """Log lines as they are written, until the loop is left (no read timeout: logs can be quiet)."""
        call = calls.model_logs(model_id, tail, since, follow=True)
        with self._http.stream(call.method, call.path, params=call.params,
                               timeout=httpx.Timeout(None, connect=10.0)) as response:
            raise_for(response)
            yield from response.iter_lines()

    # sessions (seed 002)
    def chat(self, message: str, session: str | None = None, max_tokens: int = 512, temperature: float = 0.7,
             model: str | None = None) -> ChatReply:
        return self.call(calls.chat(message, session, max_tokens, temperature, model))

    def chat_stream(self, message: str, session: str | None = None, max_tokens: int = 512,
                    temperature: float = 0.7, model: str | None = None) -> Iterator[StreamEvent]:
        for data in self.events(calls.chat(message, session, max_tokens, temperature, model, stream=True)):
            yield StreamEvent.model_validate(data)

    def reset(self, session: str | None = None) -> Any:
        return self.call(calls.reset(session))

    def status(self, session: str | None = None) -> SessionStatus:
        return self.call(calls.status(session))

    # auth and health
    def token(self, username: str, password: str) -> dict:
        return self.call(calls.token(username, password))

    def health(self) -> dict:
        return self.call(calls.health())
