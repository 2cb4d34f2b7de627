"""One error envelope for every route.

    {"error": {"code", "message", "type", "param", "details"}, "error_code", "error_type", "timestamp", "path"}

`error.code/message` is what the `/api/v1` and management clients read, `error_code` the
generate API's clients, `error.message/type/param/code` the OpenAI SDKs (which pick their exception class from the HTTP status), and
`error_type` Hugging Face's clients (TGI's validation / overloaded / generation).
"""

from __future__ import annotations

import logging
import re
from datetime import datetime, timezone
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from .responses import JSONBytes
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("conch.gateway")

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "conflict_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    424: "server_error",
    429: "rate_limit_error",
    500: "server_error",
    501: "server_error",
    503: "service_unavailable_error",
    504: "timeout_error",
}

# Hugging Face TGI's `error_type`, so `huggingface_hub` raises its matching exception class: a
# request the client got wrong is "validation", too much load "overloaded", a failed generation
# "generation" (TGI answers those 424).
_TGI_OVERLOADED = {429, 503}

_HTTP_CODES = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 408: "REQUEST_TIMEOUT", 413: "PAYLOAD_TOO_LARGE"}


class ConchError(Exception):
    """An error the client should see, with a stable code."""

    def __init__(self, status: int, code: str, message: str, *, param: str | None = None,
                 details: Any = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.param = param
        self.details = details
        self.headers = headers


def invalid_request(message: str, param: str | None = None, details: Any = None) -> ConchError:
    return ConchError(422, "INVALID_REQUEST", message, param=param, details=details)


def model_not_found(model_id: str, param: str = "model_id", status: int = 400) -> ConchError:
    """400 where a request names a model to use (the generate API); 404 where the model is the resource."""
    return ConchError(status, "MODEL_NOT_FOUND", f"model '{model_id}' is not served here; GET /v1/models lists the models",
                      param=param)


def unsupported_parameter(param: str, message: str, status: int = 400) -> ConchError:
    return ConchError(status, "UNSUPPORTED_PARAMETER", message, param=param)


def no_default_model(candidates: list[str], param: str = "model") -> ConchError:
    listed = ", ".join(sorted(candidates)) or "none"
    return ConchError(400, "MODEL_NOT_FOUND", f"no model was named and no default is configured (CONCH_DEFAULT_MODEL); "
                      f"name one of: {listed}", param=param)


def unsupported_task(model_id: str, wanted: str, supports: str, param: str | None = None) -> ConchError:
    return ConchError(400, "UNSUPPORTED_TASK", f"model '{model_id}' does not do {wanted}; it supports: {supports}",
                      param=param)


def model_not_ready(model_id: str, reason: str) -> ConchError:
    return ConchError(503, "MODEL_NOT_READY", f"model '{model_id}' is not ready: {reason}", headers={"Retry-After": "5"})


def prompt_format_failed(message: str, param: str | None = None) -> ConchError:
    return ConchError(400, "PROMPT_FORMAT_FAILED", message, param=param)


def downstream_failed(model_id: str, message: str) -> ConchError:
    return ConchError(503, "DOWNSTREAM_REQUEST_FAILED", f"the inference server for '{model_id}' is unreachable: {message}",
                      headers={"Retry-After": "5"})


def stream_stalled(model_id: str, seconds: float) -> ConchError:
    return ConchError(504, "INFERENCE_TIMEOUT", f"the stream from '{model_id}' sent nothing for {seconds:g}s "
                      "(the inference server may be hung) and was cancelled")


def shutting_down() -> ConchError:
    return ConchError(503, "SHUTTING_DOWN", "this gateway is shutting down and stopped the request; retry it",
                      headers={"Retry-After": "1", "Connection": "close"})


def inference_timeout(model_id: str, seconds: float) -> ConchError:
    return ConchError(504, "INFERENCE_TIMEOUT", f"inference on '{model_id}' took longer than {seconds:g}s and was cancelled")


def triton_server_error(model_id: str, message: str) -> ConchError:
    return ConchError(500, "TRITON_SERVER_ERROR", f"the inference server failed for '{model_id}': {message}")


def refused_by_model(model_id: str, message: str) -> ConchError:
    return ConchError(400, "INVALID_PARAMETER", f"model '{model_id}' refused the request: {message}")


def context_length_exceeded(model_id: str, message: str) -> ConchError:
    return ConchError(400, "CONTEXT_LENGTH_EXCEEDED", f"the request does not fit the context of '{model_id}': {message}")


# Who may call, how much, and overload (docs/auth.md) --------------------------------------------

def authentication_failed(message: str) -> ConchError:
    return ConchError(401, "AUTHENTICATION_FAILED", message, headers={"WWW-Authenticate": 'Bearer realm="conch"'})


def authorization_failed(message: str) -> ConchError:
    return ConchError(403, "AUTHORIZATION_FAILED", message)


def rate_limited(message: str, retry_after_s: int, headers: dict[str, str] | None = None) -> ConchError:
    return ConchError(429, "RATE_LIMIT_EXCEEDED", message, headers={**(headers or {}), "Retry-After": str(retry_after_s)})


def model_overloaded(model_id: str, retry_after_s: int) -> ConchError:
    # TGI's words, so its clients recognise the condition.
    return ConchError(429, "MODEL_OVERLOADED", f"Model is overloaded: '{model_id}' has as many requests as it can take; "
                      "retry later", headers={"Retry-After": str(retry_after_s)})


def model_ambiguous(name: str, qualified: list[str]) -> ConchError:
    return ConchError(409, "MODEL_AMBIGUOUS", f"model '{name}' exists in several namespaces; name one of: "
                      f"{', '.join(sorted(qualified))}", details={"candidates": sorted(qualified)})


def service_not_configured(code: str, message: str) -> ConchError:
    return ConchError(503, code, message, headers={"Retry-After": "30"})


_ADDRESS = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s'\"]+|\b(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?\b"
                      r"|\[[0-9a-f:]+\](?::\d+)?|\b[a-z0-9-]+(?:\.[a-z0-9-]+)+:\d+\b", re.I)


def redact(text: str, limit: int = 300) -> str:
    """Backend text made fit for a client: no URLs, addresses or host:port (they map the cluster
    for whoever asks), and short. The full text goes to the gateway's log instead."""
    cleaned = _ADDRESS.sub("<address>", text)
    return cleaned if len(cleaned) <= limit else cleaned[:limit] + "…"


def envelope(status: int, code: str, message: str, path: str, *, param: str | None = None,
             details: Any = None) -> dict[str, Any]:
    return {
        "error": {
            "code": code,
            "message": message,
            "type": _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error"),
            "param": param,
            "details": details,
        },
        "error_code": code,
        "error_type": tgi_error_type(status),
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "path": path,
    }


def tgi_error_type(status: int) -> str:
    if status in _TGI_OVERLOADED:
        return "overloaded"
    return "validation" if status < 500 and status != 424 else "generation"


def error_response(exc: ConchError, path: str) -> JSONBytes:
    body = envelope(exc.status, exc.code, exc.message, path, param=exc.param, details=exc.details)
    return JSONBytes(body, status_code=exc.status, headers=exc.headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ConchError)
    async def _conch(request: Request, exc: ConchError):
        return error_response(exc, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        unreadable = _unreadable_body(request, exc.errors())
        if unreadable is not None:
            return error_response(unreadable, request.url.path)
        problems = [_problem(e) for e in exc.errors()]
        first = problems[0] if problems else {"loc": "", "msg": "invalid request"}
        message = f"{first['loc']}: {first['msg']}" if first["loc"] else first["msg"]
        return error_response(invalid_request(message, param=first["loc"] or None, details=problems), request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        code = _HTTP_CODES.get(exc.status_code, f"HTTP_{exc.status_code}")
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == 404:
            message = f"no route for {request.method} {request.url.path}"
        error = ConchError(exc.status_code, code, message, headers=getattr(exc, "headers", None))
        return error_response(error, request.url.path)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        error = ConchError(500, "INTERNAL_ERROR", "the gateway failed to handle this request; see its log")
        return error_response(error, request.url.path)


def _unreadable_body(request: Request, problems: list[dict[str, Any]]) -> ConchError | None:
    """A body that is not a JSON object at all gets a message saying so, not pydantic's."""
    if len(problems) != 1:
        return None
    problem = problems[0]
    if problem.get("type") == "json_invalid":
        where = problem["loc"][-1] if len(problem.get("loc", ())) > 1 else None
        reason = (problem.get("ctx") or {}).get("error") or "malformed JSON"
        at = f" at character {where}" if isinstance(where, int) else ""
        return ConchError(400, "INVALID_JSON", f"the request body is not valid JSON: {reason}{at}")
    if problem.get("type") == "model_attributes_type" and tuple(problem.get("loc", ())) == ("body",):
        if isinstance(problem.get("input"), (bytes, str)):
            sent = request.headers.get("content-type") or "no Content-Type"
            return ConchError(415, "UNSUPPORTED_MEDIA_TYPE", "send the request body as JSON with the header "
                              f"'Content-Type: application/json' (got {sent})")
        return ConchError(422, "INVALID_REQUEST", "the request body must be a JSON object")
    return None


def _problem(error: dict[str, Any]) -> dict[str, Any]:
    loc = [str(part) for part in error.get("loc", ()) if part != "body"]
    return jsonable_encoder({"loc": ".".join(loc), "msg": error.get("msg", ""), "type": error.get("type", "")})
