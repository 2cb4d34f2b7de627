"""routes/fastpath.py: the hot routes validate a JSON body straight from its bytes, and must answer
every request exactly as FastAPI's own handler does — the same model when the body is accepted,
the same error (FastAPI's, through Conch's envelope) for everything else."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.routing import APIRoute
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.exceptions import HTTPException
from starlette.responses import Response

from conch_gateway import errors
from conch_gateway.protocol.generate import GenerateRequest
from conch_gateway.routes import fastpath
from conch_gateway.routes.fastpath import JSONBodyRoute

GOOD = {"model_id": "echo", "inputs": "Why is the sky blue?", "parameters": {"max_new_tokens": 64, "do_sample": False}}

# Bodies at the edges of JSON and of the request type: each must be accepted by both paths alike,
# or refused by the fast one (FastAPI's handler then answers it).
EDGE_BODIES = [
    json.dumps(GOOD).encode(),
    b'{"model_id":"echo","inputs":"hi","inputs":"yo"}',  # duplicate key: the last one wins
    b'{"model_id":"echo","inputs":"\\ud800"}',  # lone surrogate
    b'{"model_id":"echo","inputs":"a\\ud83d\\ude00"}',  # a surrogate pair
    b'{"model_id":"echo","inputs":"a\nb"}',  # a raw control character
    b'{"model_id":"echo","inputs":"\xed\xa0\x80"}',  # an encoded surrogate
    b'{"model_id":"echo","inputs":"\xff"}',  # not UTF-8
    b'\xef\xbb\xbf{"model_id":"echo","inputs":"hi"}',  # byte-order mark
    '{"model_id":"echo","inputs":"hi"}'.encode("utf-16"),
    b' {"model_id":"echo","inputs":"hi"} ',
    b'{"model_id":"echo","inputs":"hi"}x',
    b'{"model_id":"echo","inputs":"hi","parameters":{"seed":18446744073709551615}}',
    b'{"model_id":"echo","inputs":"hi","parameters":{"seed":18446744073709551616}}',
    b'{"model_id":"echo","inputs":"hi","parameters":{"seed":1e3,"max_new_tokens":64.0}}',
    b'{"model_id":"echo","inputs":"hi","parameters":{"seed":9007199254740993.0}}',
    b'{"model_id":"echo","inputs":"hi","parameters":{"temperature":NaN}}',
    b'{"model_id":"echo","inputs":"hi","parameters":{"temperature":Infinity}}',
    b'{"model_id":"echo","inputs":"hi","parameters":{"temperature":1e-400,"top_p":5e-324}}',
    b'{"model_id":"echo","inputs":"hi","parameters":{"max_new_tokens":1e400}}',
    b'{"model_id":"echo","inputs":"hi","parameters":{"temperature":1,"top_k":-0}}',
    b'{"model_id":"echo","inputs":"hi","parameters":{"temperature":0.1000000000000000055511151231257827}}',
    b'{"model_id":"echo","inputs":"hi","parameters":{"top_k": 010}}',
    b'{"model_id":"echo","inputs":"hi","parameters":null}',
    b'{"model_id":"echo","inputs":"hi","stream":1}',
    b'{"model_id":"echo","inputs":"hi","extra":1}',
    b'{"model_id":"echo","inputs":" \\u0000 "}',
    b'[]', b'null', b'', b'{}',
]


def slow_model(body: bytes) -> GenerateRequest | None:
    """What FastAPI's handler makes of a JSON body: json.loads, then the model validates the dict."""
    try:
        return GenerateRequest.model_validate(json.loads(body), from_attributes=True)
    except ValueError:  # JSONDecodeError, UnicodeDecodeError, ValidationError
        return None


def assert_same_acceptance(body: bytes) -> None:
    try:
        fast = GenerateRequest.model_validate_json(body)
    except ValueError:
        return  # refused here: FastAPI's handler answers it
    slow = slow_model(body)
    assert slow is not None, f"the fast path accepts what FastAPI refuses: {body!r}"
    assert fast.model_dump_json() == slow.model_dump_json()
    assert fast.model_fields_set == slow.model_fields_set
    assert fast.parameters.model_fields_set == slow.parameters.model_fields_set


@pytest.mark.parametrize("body", EDGE_BODIES)
def test_edge_bodies_are_accepted_alike(body):
    assert_same_acceptance(body)


_NUMBER = st.one_of(st.integers(-2**70, 2**70), st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from(["1e400", "-0", "0.0", "4096.0", "1.5e-320", "1E2"]))
_VALUE = st.one_of(st.none(), st.booleans(), _NUMBER, st.text(max_size=8),
                   st.lists(st.text(max_size=4), max_size=3))
_PARAMETERS = st.dictionaries(st.sampled_from(["max_new_tokens", "temperature", "top_p", "do_sample", "stop", "top_k",
                                               "repetition_penalty", "seed", "typo"]), _VALUE, max_size=6)


def _dump(value: Any) -> str:
    if isinstance(value, str) and value[:1].isdigit() or value in ("-0", "1e400", "1E2"):
        return value  # a number literal as written
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{_dump(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(parameters=_PARAMETERS, inputs=st.one_of(st.text(max_size=10), _VALUE), stream=_VALUE,
       scenario=st.sampled_from(["base", "qa", "poem", 1]))
def test_generated_bodies_are_accepted_alike(parameters, inputs, stream, scenario):
    body = {"model_id": "echo", "inputs": inputs, "scenario": scenario, "parameters": parameters, "stream": stream}
    assert_same_acceptance(_dump(body).encode())


# End to end: the same app with FastAPI's route and with JSONBodyRoute answers alike -----------------


def make_app(route_class: type[APIRoute], fail_body: Exception | None = None) -> FastAPI:
    app = FastAPI()
    errors.install_error_handlers(app)
    router = APIRouter(route_class=route_class)

    @router.post("/v1/generate")
    async def generate(body: GenerateRequest, request: Request) -> Response:
        return Response(body.model_dump_json(), media_type="application/json", headers={"x-path": request.url.path})

    app.include_router(router)
    if fail_body is not None:  # a body that fails to arrive: every receive raises
        inner = app.build_middleware_stack

        def build():
            stack = inner()

            async def asgi(scope, receive, send):
                async def broken():
                    raise fail_body

                await stack(scope, broken, send)

            return asgi

        app.build_middleware_stack = build
    return app


async def answers(app: FastAPI, body: bytes, content_type: str | None) -> tuple[int, dict, Any]:
    headers = {"content-type": content_type} if content_type is not None else {}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        response = await client.post("/v1/generate", content=body, headers=headers)
    payload = response.json()
    if isinstance(payload, dict):
        payload.pop("timestamp", None)
    return response.status_code, {k: v for k, v in response.headers.items() if k != "content-length"}, payload


CONTENT_TYPES = [None, "application/json", "application/json; charset=utf-8", "APPLICATION/JSON",
                 " application/json ;x=1", "application/merge-patch+json", "text/plain", "application/jsonx",
                 "application/json-seq", "application/json,text/plain", "multipart/form-data; boundary=x"]


@pytest.mark.parametrize("content_type", CONTENT_TYPES)
@pytest.mark.parametrize("body", EDGE_BODIES)
def test_every_request_is_answered_as_fastapi_answers_it(body, content_type):
    fast = asyncio.run(answers(make_app(JSONBodyRoute), body, content_type))
    slow = asyncio.run(answers(make_app(APIRoute), body, content_type))
    assert fast == slow


@pytest.mark.parametrize("failure", [HTTPException(408, "the request body did not arrive within 5s"),
                                     HTTPException(413, "too large"), RuntimeError("disconnected")])
def test_a_body_that_fails_to_arrive_is_answered_as_fastapi_answers_it(failure):
    body = json.dumps(GOOD).encode()
    fast = asyncio.run(answers(make_app(JSONBodyRoute, failure), body, "application/json"))
    slow = asyncio.run(answers(make_app(APIRoute, failure), body, "application/json"))
    assert fast == slow
    assert fast[0] in (400, 408, 413)


def test_the_fast_path_serves_the_common_request(monkeypatch):
    seen = []
    real = GenerateRequest.model_validate_json.__func__

    def spy(cls, data, *args, **kwargs):
        seen.append(data)
        return real(cls, data, *args, **kwargs)

    monkeypatch.setattr(GenerateRequest, "model_validate_json", classmethod(spy))
    status, _, payload = asyncio.run(answers(make_app(JSONBodyRoute), json.dumps(GOOD).encode(), "application/json"))
    assert status == 200 and payload["parameters"]["max_new_tokens"] == 64 and len(seen) == 1


def test_other_endpoint_shapes_keep_fastapis_handler():
    router = APIRouter(route_class=JSONBodyRoute)

    async def needs(request: Request) -> int:
        return 1

    @router.post("/a")
    async def with_query(body: GenerateRequest, request: Request, q: int = 0) -> Response: ...

    @router.post("/b")
    async def with_dependency(body: GenerateRequest, request: Request, n: int = Depends(needs)) -> Response: ...

    @router.post("/c")
    async def without_request(body: GenerateRequest) -> Response: ...

    @router.post("/d")
    async def two_bodies(body: GenerateRequest, other: GenerateRequest, request: Request) -> Response: ...

    @router.post("/e")
    def not_async(body: GenerateRequest, request: Request) -> Response: ...

    @router.post("/f")
    async def the_shape(body: GenerateRequest, request: Request) -> Response: ...

    plans = {route.path: fastpath._plan(route) for route in router.routes}
    assert {path for path, plan in plans.items() if plan is not None} == {"/f"}
