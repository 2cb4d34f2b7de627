"""The SDK's pure parts: Retry-After back-off, the error envelope to typed exceptions, output formats."""

from __future__ import annotations

import json

import pytest

from conch_client.errors import (ConchError, NotFoundError, OverloadedError, RateLimitedError, UnauthorizedError,
                                 ValidationError, from_response)
from conch_client.retry import delay


def test_retry_after_seconds_wins_over_backoff():
    assert delay(0, "7") == 7.0
    assert delay(5, "2") == 2.0


def test_backoff_doubles_and_is_capped():
    assert [delay(n, None) for n in range(4)] == [0.5, 1.0, 2.0, 4.0]
    assert delay(20, None) == 30.0
    assert delay(0, "3600") == 30.0  # a server asking for an hour must not hang a client forever


def test_http_date_retry_after_falls_back_to_backoff():
    assert delay(1, "Wed, 21 Oct 2015 07:28:00 GMT") == 1.0


ENVELOPE = {"error": {"code": "INVALID_REQUEST", "message": "no model x", "type": "invalid_request_error",
                      "param": "model"}, "error_code": "INVALID_REQUEST", "error_type": "validation",
            "timestamp": "t", "path": "/api/v1/generate"}


@pytest.mark.parametrize("status,kind", [(400, ValidationError), (422, ValidationError), (401, UnauthorizedError),
                                         (403, UnauthorizedError), (404, NotFoundError), (429, RateLimitedError),
                                         (503, OverloadedError), (504, OverloadedError), (500, ConchError)])
def test_envelope_becomes_typed_exception(status, kind):
    error = from_response(status, json.dumps(ENVELOPE).encode())
    assert type(error) is kind
    assert (error.status, error.code, error.message, error.param) == (status, "INVALID_REQUEST", "no model x", "model")


def test_non_envelope_body_keeps_status_and_text():
    error = from_response(502, b"<html>bad gateway</html>")
    assert error.code == "HTTP_502" and "bad gateway" in error.message


def test_unknown_model_is_a_not_found_whatever_the_status():
    body = json.dumps({"error": {"code": "MODEL_NOT_FOUND", "message": "m"}}).encode()
    error = from_response(400, body)
    assert isinstance(error, NotFoundError) and isinstance(error, ValidationError)
