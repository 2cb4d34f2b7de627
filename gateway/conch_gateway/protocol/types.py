"""Field types shared by every API dialect, so each bound is stated once, and the helpers that
state in the OpenAPI document the rules a type alone cannot (mutual exclusions, refused values)."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StrictStr, WithJsonSchema,
                      field_validator)

MAX_NEW_TOKENS = 4096


class RequestModel(BaseModel):
    """Base of every request body: an unknown field is an error, and so is text that is not Unicode.
    JSON may carry lone UTF-16 surrogates ("\\ud800"), which no UTF-8 encoder (Triton's tensors, the
    tokenizer, the error envelope that quotes a model name) accepts: refused here, not a 500 later."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _unicode_only(cls, value: Any) -> Any:
        if not _encodable(value):
            raise ValueError("is not valid Unicode text (it holds a lone UTF-16 surrogate such as \\ud800)")
        return value


def _encodable(value: Any) -> bool:
    # A loop, not recursion: JSON nests as deep as the parser allows, deeper than this stack would.
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return False
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
    return True


# "Text" is a character that is neither whitespace nor a control character. One regex class, written
# with escapes every regex dialect reads alike, is both the check and the documented `pattern` (a
# JSON Schema pattern matches anywhere), so the two cannot disagree: Python's `str.isspace` counts
# \x1c-\x1f as whitespace, ECMA's `\s` (the document's dialect) does not. Some tokenizers drop
# control characters (SmolLM2's drops six): a prompt of nothing else would have no token at all.
TEXT_CHARACTER = r"[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]"
# A raw completion prompt may be only whitespace ("\n" is a prompt); not only other control characters.
PROMPT_CHARACTER = r"[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]"


def _has(character: str, message: str):
    pattern = re.compile(character)

    def check(value: str) -> str:
        if not pattern.search(value):
            raise ValueError(message)
        return value

    return check


has_text = _has(TEXT_CHARACTER, "must contain text, not only whitespace or control characters")
has_prompt = _has(PROMPT_CHARACTER, "must contain text, not only control characters")


PromptText = Annotated[StrictStr, Field(min_length=1, max_length=200_000, json_schema_extra={"pattern": TEXT_CHARACTER}),
                       AfterValidator(has_text)]
StopString = Annotated[StrictStr, Field(min_length=1, max_length=256)]
ModelId = Annotated[StrictStr, Field(min_length=1, max_length=253)]


def _integral(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def integer(**bounds: int) -> Any:
    """An integer within `bounds` (ge/gt/le/lt), as JSON Schema's `integer`: 3 and 3.0, never "3"
    or true. The bounds sit inside the type, before the validator, or the document loses them
    (see `sampling_float`)."""
    return Annotated[int, Field(strict=True, **bounds), BeforeValidator(_integral)]


Integer = integer()
MaxTokens = integer(ge=1, le=MAX_NEW_TOKENS)
TopK = integer(ge=1, le=1000)
# As JSON Schema's `number`: ints too (JSON clients send 1 for 1.0), never "1", true, NaN or infinity.
Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]

# Sampling values reach Triton as FP32 tensors, where a positive double below FP32's range (5e-324)
# becomes 0.0, which the runtimes refuse ("top_p must be in (0, 1]"). Such a value means "as small
# as possible", so it is raised to FP32's smallest normal number at the edge.
FLOAT32_MIN_NORMAL = 1.1754943508222875e-38


def _fp32_positive(value: float) -> float:
    return FLOAT32_MIN_NORMAL if 0 < value < FLOAT32_MIN_NORMAL else value


def sampling_float(**bounds: float) -> Any:
    """A sampling value within `bounds` (ge/gt/le), raised off FP32's zero. The bounds sit inside the
    type: given outside (`Field(ge=…)` on the field), pydantic cannot state them in the schema of a
    validated type and writes `{"ge": 0}`, which JSON Schema ignores."""
    return Annotated[float, Field(strict=True, allow_inf_nan=False, **bounds), AfterValidator(_fp32_positive)]


Temperature = sampling_float(ge=0.0, le=2.0)
TopP = sampling_float(gt=0.0, le=1.0)
# Per model: the llmapi interface has none (400 UNSUPPORTED_PARAMETER), which a static document can only say.
RepetitionPenalty = Annotated[sampling_float(gt=0.0, le=10.0), Field(
    description="Not on models behind TensorRT-LLM's llmapi interface: use presence or frequency penalty.")]
Penalty = Annotated[Number, Field(ge=-2.0, le=2.0)]  # presence and frequency

# Bounds on every text field that had none (the request body's size limit bounds them all together;
# these say which field is too long, and stop one field from taking the whole budget).
MAX_TEXT = 200_000  # characters, as PromptText
MAX_LIST = 2048  # prompts, messages, inputs, parts
BoundedText = Annotated[StrictStr, Field(max_length=MAX_TEXT)]
BoundedTokens = Annotated[list[Integer], Field(max_length=MAX_TEXT)]
TextList = Annotated[list[BoundedText], Field(max_length=MAX_LIST)]
TokensList = Annotated[list[BoundedTokens], Field(max_length=MAX_LIST)]


# The OpenAPI document --------------------------------------------------------------------------
#
# The document states the whole contract: a request it allows is served, and generated clients and
# fuzzers read it (issue 11). Two kinds of rule are not visible in a field's type:
# - values a field accepts by name only, which the service refuses with a named error
#   (400 UNSUPPORTED_PARAMETER "logprobs are not available…") instead of pydantic's generic 422:
#   `Documented` shows the values that are served;
# - rules between fields (mutual exclusions): a model validator enforces them, `rules` adds them
#   to the model's schema as JSON Schema `allOf` entries.

def Documented(schema: dict[str, Any]) -> WithJsonSchema:  # noqa: N802 (reads as a type annotation)
    """The field's schema in the OpenAPI document, where the service refuses the other values."""
    return WithJsonSchema(schema)


NULL: dict[str, Any] = {"type": "null"}


def text_schema(pattern: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": MAX_TEXT}
    return schema | {"pattern": pattern} if pattern else schema


def texts_schema(max_items: int, pattern: str | None = None) -> dict[str, Any]:
    """A non-empty text, or a non-empty list of them (the text forms of OpenAI's prompt and input)."""
    text = text_schema(pattern)
    return {"anyOf": [text, {"type": "array", "items": text, "minItems": 1, "maxItems": max_items}]}


def requires(field: str, when: dict[str, Any]) -> dict[str, Any]:
    """JSON Schema for "`field` may be given (non-null) only when the properties match `when`"."""
    return {"anyOf": [{"not": {"required": [field]}}, {"properties": {field: NULL}},
                      {"properties": when, "required": list(when)}]}


def rules(*schemas: dict[str, Any]):
    """A `json_schema_extra` adding cross-field rules to a model's schema."""

    def extra(schema: dict[str, Any]) -> None:
        schema.setdefault("allOf", []).extend(schemas)

    return extra


# Documented as OpenAI's int64, accepted as Triton's UINT64 seed tensor. The document writes bounds as
# doubles, which cannot spell integers past 2**53: tools read `exclusiveMaximum: 2**63` as admitting a
# few values just above it (2**63 + 191 rounds to 2**63), and the wider range serves those too.
Seed = Annotated[integer(ge=0, lt=2**64), Documented({"type": "integer", "minimum": 0, "exclusiveMaximum": 2**63})]
