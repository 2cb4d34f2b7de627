"""cors.CORSMiddlewareFast answers every request exactly as Starlette's CORSMiddleware does."""

from __future__ import annotations

import asyncio

import pytest
from starlette.middleware.cors import CORSMiddleware

from conch_gateway.cors import CORSMiddlewareFast

ANSWER_HEADERS = [
    None,  # no "headers" key at all
    [],
    [(b"content-type", b"application/json")],
    [(b"vary", b"Accept-Encoding")],
    [(b"vary", b"Accept"), (b"x", b"1"), (b"vary", b"Cookie")],
    ((b"Vary", b"Accept"), (b"content-length", b"2")),  # a tuple, a key not in lower case
    [[b"vary", b"Accept"]],  # lists as pairs
]
REQUEST_HEADERS = [
    [],
    [(b"content-type", b"application/json")],
    [(b"origin", b"https://app.example")],
    [(b"origin", b"https://elsewhere.example")],
    [(b"origin", b"https://app.example"), (b"access-control-request-method", b"POST"),
     (b"access-control-request-headers", b"authorization")],
    ((b"host", b"x"),),  # a tuple
]


def run(middleware_class, method: str, request_headers, answer_headers, origins):
    sent = []

    async def app(scope, receive, send):
        start = {"type": "http.response.start", "status": 200}
        if answer_headers is not None:
            start["headers"] = answer_headers if isinstance(answer_headers, tuple) else [list(h) if isinstance(h, list) else h
                                                                                          for h in answer_headers]
        await send(start)
        await send({"type": "http.response.body", "body": b"{}"})

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": method, "path": "/v1/generate", "headers": request_headers}
    asyncio.run(middleware_class(app, allow_origins=origins, allow_methods=["*"], allow_headers=["*"],
                                 expose_headers=["*"])(scope, receive, send))
    return [{**m, "headers": [tuple(h) for h in m["headers"]]} if "headers" in m else m for m in sent], scope["headers"]


@pytest.mark.parametrize("origins", [[], ["https://app.example"], ["*"]])
@pytest.mark.parametrize("answer_headers", ANSWER_HEADERS)
@pytest.mark.parametrize("request_headers", REQUEST_HEADERS)
@pytest.mark.parametrize("method", ["POST", "OPTIONS"])
def test_answers_as_starlette(method, request_headers, answer_headers, origins):
    assert run(CORSMiddlewareFast, method, request_headers, answer_headers, origins) == \
        run(CORSMiddleware, method, request_headers, answer_headers, origins)
