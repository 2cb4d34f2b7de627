"""The gateway's error envelope (`{"error": {code, message, type, param}, ...}`) as exceptions."""

from __future__ import annotations

from typing import Any

import httpx


class ConchError(Exception):
    def __init__(self, status: int, code: str, message: str, param: str | None = None, details: Any = None):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.param, self.details = status, code, message, param, details


class ValidationError(ConchError): ...
class UnauthorizedError(ConchError): ...
class NotFoundError(ConchError): ...
class RateLimitedError(ConchError): ...
class OverloadedError(ConchError): ...


class ModelNotFoundError(NotFoundError, ValidationError): ...


# Codes that say more than their status: the gateway answers an unknown model with 400 (a bad field).
_BY_CODE: dict[str, type[ConchError]] = {"MODEL_NOT_FOUND": ModelNotFoundError}


def _kind(status: int, code: str = "") -> type[ConchError]:
    if code in _BY_CODE:
        return _BY_CODE[code]
    if status in (401, 403):
        return UnauthorizedError
    if status == 404:
        return NotFoundError
    if status == 429:
        return RateLimitedError
    if status in (503, 504):
        return OverloadedError
    if 400 <= status < 500:
        return ValidationError
    return ConchError


def from_response(status: int, body: bytes) -> ConchError:
    """Pure: a status and a body (an envelope, or anything a proxy sent) to the typed exception."""
    import json

    try:
        error = json.loads(body)["error"]
        code, message, param, details = error["code"], error["message"], error.get("param"), error.get("details")
    except (ValueError, KeyError, TypeError):
        code, message, param, details = f"HTTP_{status}", body.decode(errors="replace")[:500], None, None
    return _kind(status, code)(status, code, message, param, details)


def raise_for(response: httpx.Response) -> None:
    if response.status_code >= 400:
        raise from_response(response.status_code, response.read())
