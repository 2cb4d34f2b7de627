"""Every route of the gateway's own OpenAPI document, fuzzed by schemathesis against the real
gateway, the real Triton and the bundled SmolLM2 (issue 11).

For each operation, in both of schemathesis' modes:
- positive (requests the document allows): the answer is a success that matches the documented
  schema, or a refusal the document cannot express (a model's context ran out, an embedding
  model's fixed dimensions); a document that allows what the server refuses is a bug;
- negative (requests the document forbids): a 4xx with the error envelope;
- both: no 5xx, except 503/504 with the code of a real downstream condition; no 424 hiding a
  server failure (TGI's name for a failed generation); no error event inside a 200 stream that
  a client did not cause.

Bounded in time: fixed example counts (CONCH_FUZZ_EXAMPLES raises them, CONCH_FUZZ_SEED explores
other inputs; the default seed keeps CI reproducible), and the generation cost kept small within the
contract: at most MAX_FUZZ_TOKENS new tokens and 2 choices or prompts per request on SmolLM2 (the
echo model answers at once, so its requests keep whatever the fuzzer drew, defaults included).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from conch_gateway.protocol.errors import ErrorEnvelope
from support.stack import LLMAPI_MODEL, llmapi_models, make_gateway, repository_models

pytestmark = pytest.mark.triton

# Requests per operation: positive ones mostly reach Triton, negative ones stop at validation.
EXAMPLES = int(os.environ.get("CONCH_FUZZ_EXAMPLES", "10"))
NEGATIVE_EXAMPLES = 4 * EXAMPLES
SEED = int(os.environ.get("CONCH_FUZZ_SEED", "11"))
MAX_FUZZ_TOKENS = 3
MAX_FUZZ_ITEMS = 2

TEXT_MODELS = ("smollm2", LLMAPI_MODEL, "echo")  # never "fault": it fails on purpose
EMBEDDING_MODEL = "all-minilm-l6-v2"
CHEAP_MODEL = "echo"
EMBEDDING_ROUTES = ("POST /v1/embeddings", "POST /embed", "POST /models/{model_id}/pipeline/feature-extraction")
DEFAULT_MODEL = "smollm2"  # the gateway fixture's default (TGI and /api/v1 requests without a model)

# A 503/504 is acceptable only as the answer to a real downstream condition.
DOWNSTREAM_CODES = {"MODEL_NOT_READY", "DOWNSTREAM_REQUEST_FAILED", "INFERENCE_TIMEOUT", "MODEL_OVERLOADED"}
# Refusals of requests the document allows, for rules no static document can state.
UNDOCUMENTABLE_REFUSALS = {
    "CONTEXT_LENGTH_EXCEEDED",  # depends on the model's context and its tokenizer
    "PAYLOAD_TOO_LARGE",  # the gateway's body limit, a deployment setting
    "AUTH_DISABLED",  # POST /api/auth/token on a gateway whose CONCH_AUTH is off (404)
}
# Server-side failures, whatever status or stream event carries them.
SERVER_CODES = {"TRITON_SERVER_ERROR", "INTERNAL_ERROR"}


def _document_operations() -> list[tuple[str, bool]]:
    """The operations of the gateway's document, read from the app (no server needed) so that
    each is its own test, and whether it takes any input to get wrong (a body or parameters);
    `test_every_served_operation_is_fuzzed` checks the served document."""
    app = make_gateway([]).app
    return [(f"{method.upper()} {path}", "requestBody" in operation)
            for path, item in app.openapi()["paths"].items() for method, operation in item.items()]


OPERATIONS = _document_operations()
CASES = [pytest.param(label, mode, id=f"{label}-{mode.value}") for label, has_input in OPERATIONS
         for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE) if has_input or mode == GenerationMode.POSITIVE]


@pytest.fixture(scope="module")
def fuzz_gateway(triton) -> Iterator[str]:
    """A gateway of its own (the fuzzer's load and odd requests stay out of the shared one's
    metrics and admission), with the same models as the integration tier's."""
    grpc = f"127.0.0.1:{triton.ports.grpc}"
    models = repository_models(triton.url, grpc) + llmapi_models(triton.url, grpc)
    with make_gateway(models, default_model=DEFAULT_MODEL) as server:
        yield server.url


@pytest.fixture(scope="module")
def document(fuzz_gateway) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{fuzz_gateway}/openapi.json")


def test_every_served_operation_is_fuzzed(document):
    served = {f"{op.ok().method.upper()} {op.ok().path}" for op in document.get_all_operations()}
    assert served == {label for label, _ in OPERATIONS}


def test_error_answers_are_documented(fuzz_gateway):
    document = httpx.get(f"{fuzz_gateway}/openapi.json").json()
    envelope = "#/components/schemas/ErrorEnvelope"
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if "requestBody" not in operation:
                continue
            refusals = {status: answer for status, answer in operation["responses"].items() if status.startswith("4")}
            assert refusals, f"{method.upper()} {path} documents no refusal"
            for status, answer in refusals.items():
                schema = answer["content"]["application/json"]["schema"]
                assert schema.get("$ref") == envelope, f"{method.upper()} {path} documents {status} as {schema}"


@pytest.mark.parametrize(("label", "mode"), CASES)
def test_fuzz(label: str, mode: GenerationMode, document, fuzz_gateway):
    operation = document.find_operation_by_label(label)
    assert operation is not None, f"{label} is not in the served document"
    # A document that cannot be turned into requests at all is a finding of its own.
    strategy = operation.as_strategy(generation_mode=mode)

    @seed(SEED)
    # No shrinking: each step is a real generation, and the first failing request is reported whole.
    @settings(max_examples=EXAMPLES if mode == GenerationMode.POSITIVE else NEGATIVE_EXAMPLES, deadline=None, database=None, phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(case=strategy, pick=st.integers(min_value=0, max_value=len(TEXT_MODELS) - 1))
    def run(case: schemathesis.Case, pick: int) -> None:
        body = case.body if isinstance(case.body, (dict, list)) else None
        if isinstance(body, dict):
            cheapen(body, label, pick, positive=mode == GenerationMode.POSITIVE)
        if mode == GenerationMode.POSITIVE and label in EMBEDDING_ROUTES and case.path_parameters:
            case.path_parameters["model_id"] = EMBEDDING_MODEL  # the model a feature-extraction URL names
        response = case.call(base_url=fuzz_gateway, timeout=60)
        if os.environ.get("CONCH_FUZZ_TRACE"):
            print(f"{label} {response.elapsed:.2f}s {response.status_code} {case.body!r}"[:2000], flush=True)
        check_answer(case, response, label, positive=mode == GenerationMode.POSITIVE)

    run()


# Keeping each generation small, within the contract ----------------------------------------------

# Where each generating operation takes its token budget: (the object holding it, the field).
PARAMETERS = ("POST /v1/generate", "POST /generate", "POST /generate_stream", "POST /", "POST /invocations")
TOP_LEVEL = ("POST /v1/chat/completions", "POST /v1/completions", "POST /api/v1/generate",
             "POST /api/v1/generate/stream")


def cheapen(body: dict[str, Any], label: str, pick: int, *, positive: bool) -> None:
    """Names a served model (in positive requests only: a negative one may be wrong in its model
    field on purpose) and bounds the work on SmolLM2, without leaving the documented contract."""
    if positive:
        for field in ("model", "model_id"):
            if isinstance(body.get(field), str):
                body[field] = EMBEDDING_MODEL if label in EMBEDDING_ROUTES else TEXT_MODELS[pick]
    if label == "POST /api/v1/batch/generate" and isinstance(body.get("requests"), list):
        del body["requests"][MAX_FUZZ_ITEMS:]
        for item in body["requests"]:
            if isinstance(item, dict):
                cheapen(item, "POST /api/v1/generate", pick, positive=positive)
        return
    if body.get("model", body.get("model_id")) == CHEAP_MODEL:
        return
    if label in PARAMETERS:
        parameters = body.setdefault("parameters", {})
        if isinstance(parameters, dict):
            _cap(parameters, "max_new_tokens")
    elif label in TOP_LEVEL:
        _cap(body, "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens")
    if label == "POST /v1/completions":
        if _is_number(body.get("n")) and body["n"] > MAX_FUZZ_ITEMS:
            if body.get("best_of") == body["n"]:
                body["best_of"] = MAX_FUZZ_ITEMS
            body["n"] = MAX_FUZZ_ITEMS
        if isinstance(body.get("prompt"), list):
            del body["prompt"][MAX_FUZZ_ITEMS:]


def _cap(holder: dict[str, Any], field: str) -> None:
    """At most MAX_FUZZ_TOKENS; absent or null (the default, up to 512) becomes MAX_FUZZ_TOKENS."""
    value = holder.get(field)
    if value is None or (_is_number(value) and value > MAX_FUZZ_TOKENS):
        holder[field] = MAX_FUZZ_TOKENS


def _is_number(value: Any) -> bool:
    # JSON Schema's integers include 3.0, which the fuzzer draws too.
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# What an answer must be -------------------------------------------------------------------------

def check_answer(case: schemathesis.Case, response: schemathesis.Response, label: str, *, positive: bool) -> None:
    status = response.status_code
    sent = f"{label} {_shown(case.body)}"
    answer = f"→ {status} {response.text[:1500]}"
    media = (response.headers.get("content-type") or [""])[0]
    if status < 400:
        if media.startswith("text/event-stream"):
            problem = stream_problem(response.text)
            assert problem is None, f"{problem}\n{sent}\n{answer}"
        else:
            case.validate_response(response, checks=[response_schema_conformance, content_type_conformance])
        return
    envelope = _envelope(response)
    assert envelope is not None, f"an error without Conch's error envelope\n{sent}\n{answer}"
    code = envelope.error.code
    assert code not in SERVER_CODES, f"a server failure\n{sent}\n{answer}"
    if status >= 500:
        assert status in (503, 504) and code in DOWNSTREAM_CODES, f"a 5xx\n{sent}\n{answer}"
    if positive and status < 500 and case.operation.method.upper() == "POST":
        assert code in UNDOCUMENTABLE_REFUSALS or _documented_as_model_dependent(envelope, case.body), (
            f"the document allows this request, the server refuses it\n{sent}\n{answer}")


def _shown(body: Any) -> str:
    try:
        return json.dumps(body, ensure_ascii=True)[:2000]
    except (TypeError, ValueError):
        return repr(body)[:2000]


def _documented_as_model_dependent(envelope: ErrorEnvelope, body: Any) -> bool:
    """What one model cannot do, which the document says in words: an embedding model's dimensions
    are its own; the llmapi interface has no repetition penalty."""
    if envelope.error.code != "UNSUPPORTED_PARAMETER":
        return False
    model = body.get("model", body.get("model_id")) if isinstance(body, dict) else None
    return envelope.error.param == "dimensions" or (
        envelope.error.param == "repetition_penalty" and model == LLMAPI_MODEL)


def _envelope(response: schemathesis.Response) -> ErrorEnvelope | None:
    try:
        envelope = ErrorEnvelope.model_validate_json(response.content)
    except ValueError:
        return None
    return envelope if envelope.error_code == envelope.error.code else None


def stream_problem(text: str) -> str | None:
    """The first error event of a 200 stream that a client did not cause, or None."""
    # SSE ends lines at CR, LF or CRLF only (str.splitlines would also split at U+2028 inside JSON text).
    for event in re.split(r"(?:\r\n|\r|\n){2}", text):
        lines = re.split(r"\r\n|\r|\n", event)
        data = "\n".join(line[5:].removeprefix(" ") for line in lines if line.startswith("data:"))
        if not data or data == "[DONE]":
            continue
        try:
            payload = json.loads(data)
        except ValueError:
            return f"an event that is not JSON: {data[:200]!r}"
        code = _event_error_code(payload)
        if code is not None and (code in SERVER_CODES or code not in DOWNSTREAM_CODES | UNDOCUMENTABLE_REFUSALS):
            return f"an error event in a 200 stream: {data[:500]}"
    return None


def _event_error_code(payload: Any) -> str | None:
    """The error code of an event in any dialect: OpenAI's and the generate API's envelope,
    `/api/v1`'s `{"error": {"code"}}`, TGI's `{"error": message, "error_code"}`."""
    if not isinstance(payload, dict) or "error" not in payload:
        return None
    error = payload["error"]
    if isinstance(error, dict):
        return str(error.get("code"))
    return str(payload.get("error_code", "UNKNOWN"))
