"""A route class for the hot JSON endpoints: `async def endpoint(body: SomeModel, request: Request)
-> Response`.

FastAPI's handler reads such a request by parsing the body with `json.loads` (after parsing the
Content-Type with `email.message`), solving the route's dependencies (the request and the body,
validated as a Python dict through a TypeAdapter) and collecting per-request telemetry — about a
fifth of the gateway's CPU per `/v1/generate` request (bench/profile_gateway.py). For the common
request, a JSON Content-Type and a body the model accepts, `JSONBodyRoute` validates the body
straight from its bytes with pydantic's own JSON parser and calls the endpoint.

Everything else goes to FastAPI's own handler, unchanged: another or no Content-Type, a body that
is not valid JSON or that the model refuses (so every error is exactly FastAPI's 422, with the same
`loc`s), a body that failed to arrive (its exception is replayed to FastAPI's handler, which maps
it as always), FastAPI telemetry being on, or an endpoint of any other shape (dependencies, path
or query parameters, background tasks…), for which the class is just `APIRoute`.

Why "accepts" means the same thing on both paths: pydantic's JSON parser refuses whatever
`json.loads` refuses (control characters in strings, trailing data, invalid UTF-8) and more
(a byte-order mark, UTF-16, lone surrogates: FastAPI's path is taken for those), and validating a
JSON document gives the same model as validating the dict `json.loads` makes of it for the types
the request models use (strict str/bool/int/float, lists, nested models);
tests/unit/gateway/test_fastpath.py holds both paths to that.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Coroutine

import fastapi.routing
from fastapi import params
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response

try:  # FastAPI ≥ 0.16x: a handler records the request for OpenTelemetry when telemetry is on
    from fastapi.telemetry import get_telemetry_data
except ImportError:  # pragma: no cover - older FastAPI has no telemetry
    def get_telemetry_data() -> None:
        return None

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class JSONBodyRoute(APIRoute):
    def get_route_handler(self) -> Handler:
        slow = super().get_route_handler()
        plan = _plan(_effective(self))
        if plan is None:
            return slow
        model, call, body_name, request_name = plan

        async def handler(request: Request) -> Response:
            if not _json_content_type(request.scope["headers"]) or get_telemetry_data() is not None:
                return await slow(request)
            try:
                body = await request.body()
            except Exception as exc:
                # FastAPI's handler meets the same failure when it reads the body, and answers it as always.
                return await slow(Request(request.scope, _raising(exc)))
            try:
                value = model.model_validate_json(body)
            except ValidationError:
                return await slow(request)  # the body is kept on the request: FastAPI parses it again for its 422
            response = await call(**{body_name: value, request_name: request})
            if not isinstance(response, Response):
                raise TypeError(f"{call.__qualname__} must return a Response to be served by JSONBodyRoute")
            return response

        return handler


def _effective(route: APIRoute) -> Any:
    """What FastAPI builds the handler from: inside `include_router`, FastAPI ≥ 0.16x builds it for
    an inclusion context (with the including routers' dependencies) set in a context variable."""
    context_var = getattr(fastapi.routing, "_effective_route_context_var", None)
    context = context_var.get() if context_var is not None else None
    if context is not None and getattr(context, "original_route", None) is route:
        return context
    return route


def _plan(route: Any) -> tuple[type[BaseModel], Callable, str, str] | None:
    """(body model, endpoint, its body parameter, its request parameter) when the endpoint takes
    exactly a request body model and the Request, and nothing else; else None."""
    dependant = getattr(route, "dependant", None)
    if dependant is None or not inspect.iscoroutinefunction(dependant.call):
        return None
    if (dependant.path_params or dependant.query_params or dependant.header_params or dependant.cookie_params
            or dependant.dependencies or len(dependant.body_params) != 1 or dependant.request_param_name is None):
        return None
    for other in ("websocket_param_name", "http_connection_param_name", "response_param_name",
                  "background_tasks_param_name", "security_scopes_param_name"):
        if getattr(dependant, other, None) is not None:
            return None
    field = dependant.body_params[0]
    model = field.field_info.annotation
    if (getattr(route, "_embed_body_fields", True) or type(field.field_info) is not params.Body
            or not (isinstance(model, type) and issubclass(model, BaseModel))):
        return None
    return model, dependant.call, field.name, dependant.request_param_name


def _json_content_type(headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether FastAPI would parse the body as JSON: its first Content-Type is `application/json`,
    parameters aside (FastAPI also takes `+json` types, which go its own way here)."""
    for name, value in headers:
        if name == b"content-type":
            return value.split(b";", 1)[0].strip().lower() == b"application/json"
    return False


def _raising(exc: Exception):
    async def receive() -> Any:
        raise exc

    return receive
