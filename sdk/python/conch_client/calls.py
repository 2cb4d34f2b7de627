"""Every gateway call as data (method, path, body, how to read the answer), shared by `Client` and
`AsyncClient` so the two cannot drift apart. Pure: nothing here does I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import quote

import httpx

from .types import Accepted, ChatReply, GenerateResult, Model, SessionStatus


def _json(response: httpx.Response) -> Any:
    return response.json() if response.content else None


def _text(response: httpx.Response) -> str:
    return response.text


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    json: Any = None
    params: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    parse: Callable[[httpx.Response], Any] = _json

    def options(self) -> dict[str, Any]:
        """httpx.request's keyword arguments."""
        options: dict[str, Any] = {"headers": self.headers}
        if self.json is not None:
            options["json"] = self.json
        if self.params:
            options["params"] = self.params
        return options


def _model_path(model_id: str, suffix: str = "") -> str:
    # quoted: an id with "/" or "?" must name one model, not another route
    return f"/api/models/{quote(model_id, safe='')}{suffix}"


def _session(session: str | None) -> dict[str, str]:
    return {"X-Session-Id": session} if session else {}


def _set(**fields: Any) -> dict[str, Any]:
    """The fields that were given (None means "let the server choose")."""
    return {k: v for k, v in fields.items() if v is not None}


def models_of(payload: Any) -> list[Model]:
    """/v1/models (`data`), /api/models (`items`) or seed 000's `models`, as `Model`s."""
    items = payload.get("data", payload.get("items", payload.get("models", []))) if isinstance(payload, dict) else payload
    return [Model.model_validate(m if "id" in m else {**m, "id": m.get("name")}) for m in items]


def _typed(kind: type) -> Callable[[httpx.Response], Any]:
    return lambda response: kind.model_validate(response.json())


# generate (/api/v1, seed 001/003's shape) ------------------------------------------------------

def generate_body(prompt: str, model_id: str | None, max_tokens: int, extra: dict[str, Any]) -> dict[str, Any]:
    return {"prompt": prompt, **_set(model=model_id), "max_tokens": max_tokens, **extra}


def generate(prompt: str, model_id: str | None, max_tokens: int, extra: dict[str, Any]) -> Call:
    return Call("POST", "/api/v1/generate", generate_body(prompt, model_id, max_tokens, extra), parse=_typed(GenerateResult))


def generate_stream(prompt: str, model_id: str | None, max_tokens: int, extra: dict[str, Any]) -> Call:
    return Call("POST", "/api/v1/generate/stream", generate_body(prompt, model_id, max_tokens, extra))


# OpenAI-style (dicts: the OpenAI shape is documented elsewhere and large) -----------------------

def chat_completions(body: dict[str, Any], stream: bool = False) -> Call:
    return Call("POST", "/v1/chat/completions", {**body, "stream": True} if stream else body)


def completions(body: dict[str, Any]) -> Call:
    return Call("POST", "/v1/completions", body)


def embeddings(input: str | list[str], model: str | None) -> Call:
    return Call("POST", "/v1/embeddings", {"input": input, **_set(model=model)})


# models (served) and management (seed 003's /api/models) ----------------------------------------

def list_models(filters: dict[str, Any]) -> Call:
    return Call("GET", "/v1/models", params=filters or None, parse=lambda r: models_of(r.json()))


def managed_models(page: int | None, size: int | None, status: str | None, framework: str | None) -> Call:
    return Call("GET", "/api/models", params=_set(page=page, size=size, status=status, framework=framework),
                parse=lambda r: models_of(r.json()))


def create_body(name: str, framework: str | None, config: dict | None, spec: dict[str, Any]) -> dict[str, Any]:
    # framework defaults to llama.cpp: the one runtime a laptop serves, and seed 003's example
    return {"name": name, "framework": framework or "llama.cpp", **_set(config=config), **spec}


def create_model(name: str, framework: str | None, config: dict | None, spec: dict[str, Any]) -> Call:
    return Call("POST", "/api/models", create_body(name, framework, config, spec), parse=_typed(Accepted))


def get_model(model_id: str) -> Call:
    return Call("GET", _model_path(model_id), parse=_typed(Model))


def update_model(model_id: str, body: dict[str, Any]) -> Call:
    """PUT replaces the model's definition: `body` is the create body (plus `resource_version`
    from a GET, refused 409 CONFLICT when stale); the name defaults to the path's."""
    full = {"name": model_id, **body}
    full.setdefault("framework", "llama.cpp")
    return Call("PUT", _model_path(model_id), full, parse=_typed(Model))


def delete_model(model_id: str) -> Call:
    return Call("DELETE", _model_path(model_id))


ACTIONS = ("start", "stop", "restart")


def model_action(model_id: str, action: str, timeout: float | None = None) -> Call:
    """start | stop | restart; with `timeout` the server waits that long for the change (504
    OPERATION_TIMEOUT if it has not happened, though it goes on)."""
    if action not in ACTIONS:
        raise ValueError(f"action is one of {', '.join(ACTIONS)}, not {action!r}")
    body = {"timeout": timeout} if timeout is not None and action != "restart" else None
    return Call("POST", _model_path(model_id, f"/{action}"), body, parse=_typed(Accepted))


def model_logs(model_id: str, tail: int | None, since: int | None, follow: bool = False) -> Call:
    params = _set(tail=tail, since=since, follow="true" if follow else None)
    return Call("GET", _model_path(model_id, "/logs"), params=params, parse=_text)


# sessions (seed 002) --------------------------------------------------------------------------

def chat_body(message: str, max_tokens: int, temperature: float, model: str | None) -> dict[str, Any]:
    # `model` picks the session's model; the server remembers it for the session's later turns
    return {"message": message, "max_tokens": max_tokens, "temperature": temperature, **_set(model=model)}


def chat(message: str, session: str | None, max_tokens: int, temperature: float, model: str | None,
         stream: bool = False) -> Call:
    body = chat_body(message, max_tokens, temperature, model)
    return Call("POST", "/chat", {**body, "stream": True} if stream else body, headers=_session(session),
                parse=_typed(ChatReply))


def reset(session: str | None) -> Call:
    return Call("POST", "/reset", headers=_session(session))


def status(session: str | None) -> Call:
    return Call("GET", "/status", headers=_session(session), parse=_typed(SessionStatus))


# auth and health ------------------------------------------------------------------------------

def token(username: str, password: str) -> Call:
    return Call("POST", "/api/auth/token", {"username": username, "password": password})


def health() -> Call:
    return Call("GET", "/health")
