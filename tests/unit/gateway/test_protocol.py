"""The request types and the OpenAPI document built from them: the document states the contract
the edge enforces (issue 11), so a body it allows passes validation and the services' refusals, and
the values each type refuses get a 422 with the field named."""

from __future__ import annotations

import math
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from pydantic import BaseModel, ValidationError

from conch_gateway import errors
from conch_gateway.prompts import SCENARIOS
from conch_gateway.monitoring import config as monitoring_config
from conch_gateway.protocol import api_v1, auth, generate, openai, sessions, tei, tgi
from conch_gateway.protocol.errors import ErrorEnvelope
from conch_gateway.protocol.types import FLOAT32_MIN_NORMAL
from conch_gateway.services import openai as openai_service
from conch_gateway.services import tgi as tgi_service
from support.stack import make_gateway

DOCUMENT = make_gateway([]).app.openapi()

# Each POST body's type and the service's own refusals (pure checks, no backend).
BODIES: dict[str, tuple[type[BaseModel], Any]] = {
    "/v1/generate": (generate.GenerateRequest, lambda r: _known_scenario(r.scenario)),
    "/v1/chat/completions": (openai.ChatCompletionRequest, openai_service.check_chat),
    "/v1/completions": (openai.CompletionRequest, openai_service.check_completion),
    "/v1/embeddings": (openai.EmbeddingRequest, lambda r: _text_input(r.input)),
    "/api/v1/generate": (api_v1.ApiV1GenerateRequest, None),
    "/api/v1/generate/stream": (api_v1.ApiV1GenerateRequest, None),
    "/api/v1/batch/generate": (api_v1.BatchRequest,
                               lambda r: [api_v1.ApiV1GenerateRequest.model_validate(i) for i in r.requests]),
    "/generate": (tgi.TGIRequest, lambda r: tgi_service.check(r.parameters)),
    "/generate_stream": (tgi.TGIRequest, lambda r: tgi_service.check(r.parameters)),
    "/": (tgi.TGIRequest, lambda r: tgi_service.check(r.parameters)),
    "/invocations": (tgi.TGIRequest, lambda r: tgi_service.check(r.parameters)),
    "/embed": (tei.EmbedRequest, None),
    "/api/auth/token": (auth.TokenRequest, None),
    "/models/{model_id}/pipeline/feature-extraction": (tei.EmbedRequest, None),
    "/chat": (sessions.ChatRequest, None),
    "/api/config": (monitoring_config.MonitoringConfig, None),
    "/api/config/alerts": (monitoring_config.AlertRule, None),
}
METHODS = {"/api/config": "PUT"}  # every other body is a POST's


def _known_scenario(name: str) -> None:
    assert name in SCENARIOS


def _text_input(value: Any) -> None:
    # What services/openai.py's embed refuses before it calls the model.
    texts = [value] if isinstance(value, str) else value
    assert texts and all(isinstance(t, str) and t for t in texts)


@pytest.mark.parametrize("path", sorted(BODIES))
def test_every_body_the_document_allows_passes_the_edge(path):
    operation = schemathesis.openapi.from_dict(DOCUMENT).find_operation_by_label(f"{METHODS.get(path, 'POST')} {path}")
    model, service_check = BODIES[path]

    # No shrinking: a failing body is reported as found (shrinking a large generated body once
    # outlasted the test's timeout and hung the run).
    @settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck),
              phases=(Phase.explicit, Phase.reuse, Phase.generate))
    @given(case=operation.as_strategy())
    def accepted(case):
        request = model.model_validate(case.body)
        if service_check is not None:
            service_check(request)

    accepted()


def test_every_request_body_of_the_document_is_checked_here():
    with_body = {path for path, item in DOCUMENT["paths"].items() for op in item.values() if "requestBody" in op}
    assert with_body == set(BODIES)


def test_the_document_states_every_bound():
    """pydantic writes a bound it cannot place in the schema as a raw `ge`/`le` key, which JSON
    Schema ignores (it did so for the FP32-clamped floats): none may be left."""
    raw = [path for path, node in _walk(DOCUMENT) if isinstance(node, dict) and {"ge", "gt", "le", "lt"} & set(node)
           and "type" in node]
    assert raw == []


def test_the_documented_scenarios_are_the_prompts():
    assert set(generate.SCENARIOS) == set(SCENARIOS)


# What each type refuses ------------------------------------------------------------------------

def chat(**fields) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields}


def refused_at(model: type[BaseModel], body: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as raised:
        model.model_validate(body)
    return ".".join(str(part) for part in raised.value.errors()[0]["loc"])


@pytest.mark.parametrize("prompt", ["", [""], [], ["a", ""]])
def test_an_empty_completion_prompt_is_refused(prompt):
    assert refused_at(openai.CompletionRequest, {"model": "m", "prompt": prompt}) == "prompt"


def test_at_most_64_completions_per_request():
    assert refused_at(openai.CompletionRequest, {"model": "m", "prompt": ["x"] * 9, "n": 8}) == "prompt"
    assert openai.CompletionRequest.model_validate({"model": "m", "prompt": ["x"] * 8, "n": 8}).n == 8


def test_stream_options_only_with_stream():
    assert refused_at(openai.ChatCompletionRequest, chat(stream_options={"include_usage": True})) == "stream_options"
    assert openai.ChatCompletionRequest.model_validate(chat(stream=True, stream_options={})).stream_options


@pytest.mark.parametrize(("model", "body", "field"), [
    (openai.ChatCompletionRequest, chat(model="m\ud800"), "model"),
    (openai.ChatCompletionRequest, chat(messages=[{"role": "user", "content": "a\udc00"}]), "messages"),
    (openai.CompletionRequest, {"model": "m", "prompt": ["ok", "\ud800"]}, "prompt"),
    (generate.GenerateRequest, {"model_id": "m", "inputs": "x", "parameters": {"stop": ["\udfff"]}}, "parameters"),
    (tgi.TGIRequest, {"inputs": "\ud800x"}, "inputs"),
])
def test_text_with_a_lone_surrogate_is_refused_where_it_is(model, body, field):
    assert refused_at(model, body) == field


def test_integers_as_json_schema_counts_them():
    assert openai.ChatCompletionRequest.model_validate(chat(max_tokens=3.0, n=2.0)).max_tokens == 3
    for value in ("3", True, 3.5):
        assert refused_at(openai.ChatCompletionRequest, chat(max_tokens=value)) == "max_tokens"


def test_numbers_are_numbers():
    assert generate.GenerateParameters(temperature=1).temperature == 1.0  # an int is a JSON number
    for value in ("0.5", True, math.nan, math.inf):
        assert refused_at(openai.ChatCompletionRequest, chat(temperature=value)) == "temperature"


def test_a_seed_is_documented_as_int64_and_served_as_uint64():
    """Bounds past 2**53 are doubles in the document; the server serves the values tools round in."""
    assert api_v1.ApiV1GenerateRequest(prompt="x", seed=2**63 + 191).seed == 2**63 + 191
    assert refused_at(api_v1.ApiV1GenerateRequest, {"prompt": "x", "seed": 2**64}) == "seed"
    seed = DOCUMENT["components"]["schemas"]["ApiV1GenerateRequest"]["properties"]["seed"]["anyOf"][0]
    assert seed["exclusiveMaximum"] == 2**63


@pytest.mark.parametrize("inputs", [" \t", "\x1c\x1d", "\x06", "\u3000\x85"])
def test_a_prompt_needs_a_character_of_text(inputs):
    """Neither whitespace (as JSON Schema's regex reads it, and Python's) nor control characters,
    which some tokenizers drop (SmolLM2 turns "\x06" into no token)."""
    assert refused_at(tgi.TGIRequest, {"inputs": inputs}) == "inputs"
    assert tgi.TGIRequest(inputs=inputs + "a").inputs


def test_a_raw_completion_prompt_may_be_whitespace_but_not_only_control_characters():
    assert openai.CompletionRequest(model="m", prompt=["\n", " "]).prompt == ["\n", " "]
    assert refused_at(openai.CompletionRequest, {"model": "m", "prompt": ["ok", "\x06\x1d"]}) == "prompt"


def test_sampling_values_fp32_cannot_carry_are_raised_to_its_smallest_normal():
    request = openai.ChatCompletionRequest.model_validate(chat(top_p=5e-324, temperature=1e-320))
    assert request.top_p == request.temperature == FLOAT32_MIN_NORMAL
    assert tgi.TGIParameters(top_p=5e-324).top_p == FLOAT32_MIN_NORMAL


@pytest.mark.parametrize("status", [400, 404, 422, 503])
def test_the_error_envelope_type_reads_what_the_gateway_sends(status):
    body = errors.envelope(status, "SOME_CODE", "why", "/v1/x", param="a.b", details=[{"loc": "a"}])
    envelope = ErrorEnvelope.model_validate(body)
    assert envelope.error.code == envelope.error_code == "SOME_CODE" and envelope.path == "/v1/x"


def _walk(node: Any, path: str = ""):
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, f"{path}/{index}")
