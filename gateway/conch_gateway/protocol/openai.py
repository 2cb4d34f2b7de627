"""OpenAI's `/v1/chat/completions`, `/v1/completions` and `/v1/embeddings`, as the official SDKs
send them. Fields Conch cannot honour are accepted by name and refused with a clear 400 by the
service (`services/openai.py`) rather than silently ignored; the OpenAPI document shows only the
values that are served (`Documented`), and the rules between fields (`rules`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, ValidationInfo, field_validator

from .types import (MAX_LIST, NULL, PROMPT_CHARACTER, BoundedText, BoundedTokens, Documented, MaxTokens, ModelId,
                    Number, Penalty, RepetitionPenalty, RequestModel, Seed, StopString, Temperature, TextList,
                    TokensList, TopK, TopP, has_prompt, integer, requires, rules, texts_schema)

MAX_CHOICES = 8
MAX_COMPLETIONS = 64  # prompts × n in one /v1/completions request
MAX_STOP = 16
Choices = integer(ge=1, le=MAX_CHOICES)

_EMPTY_LIST = {"anyOf": [{"type": "array", "maxItems": 0}, NULL]}
_EMPTY_OBJECT = {"anyOf": [{"type": "object", "maxProperties": 0}, NULL]}
_STREAM_OPTIONS_RULE = requires("stream_options", {"stream": {"const": True}})


class _Request(RequestModel):
    """Unknown fields are an error (OpenAI answers 400 "Unrecognized request argument")."""


class TextPart(_Request):
    type: Literal["text"]
    text: BoundedText


class ChatMessage(_Request):
    role: Literal["system", "developer", "user", "assistant"]
    content: BoundedText | Annotated[list[TextPart], Field(max_length=MAX_LIST)] | None = None
    name: StrictStr | None = Field(None, max_length=64)
    # Sent back by clients that replay an assistant turn; must be empty, as Conch makes no tool calls.
    tool_calls: Annotated[list[dict[str, Any]] | None, Documented(_EMPTY_LIST)] = Field(None, max_length=128)
    refusal: StrictStr | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""


class StreamOptions(_Request):
    include_usage: StrictBool = False
    include_obfuscation: StrictBool | None = None


class _Sampling(_Request):
    model: ModelId
    max_tokens: MaxTokens | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    n: Choices = 1
    stream: StrictBool = False
    stream_options: StreamOptions | None = Field(None, description="Only with stream: true.")
    stop: StopString | Annotated[list[StopString], Field(max_length=MAX_STOP)] | None = None
    seed: Seed | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    logit_bias: Annotated[dict[str, Number] | None, Documented(_EMPTY_OBJECT)] = Field(
        None, description="Not supported: only an empty object.")
    user: StrictStr | None = Field(None, max_length=256)
    # Conch extensions, as vLLM and TGI name them.
    top_k: TopK | None = None
    repetition_penalty: RepetitionPenalty | None = None

    @field_validator("stream_options")
    @classmethod
    def _only_when_streaming(cls, value: StreamOptions | None, info: ValidationInfo) -> StreamOptions | None:
        if value is not None and info.data.get("stream") is False:
            raise ValueError("stream_options is only allowed with stream: true")
        return value

    def stop_strings(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)


class ChatCompletionRequest(_Sampling):
    model_config = ConfigDict(json_schema_extra=rules(_STREAM_OPTIONS_RULE))

    messages: list[ChatMessage] = Field(min_length=1, max_length=2048)
    max_completion_tokens: MaxTokens | None = None
    logprobs: Annotated[StrictBool | None, Documented({"enum": [False, None]})] = Field(
        None, description="Not available: Triton's TensorRT-LLM interfaces return no log-probabilities.")
    top_logprobs: Annotated[integer(ge=0, le=20) | None, Documented({"enum": [0, None]})] = None
    response_format: Annotated[dict[str, Any] | None, Documented(
        {"anyOf": [{"type": "object", "properties": {"type": {"const": "text"}}}, NULL]})] = Field(
        None, description='Only {"type": "text"}.')
    tools: Annotated[list[dict[str, Any]] | None, Documented(_EMPTY_LIST)] = Field(
        None, max_length=128, description="Tool calling is not supported: only an empty list.")
    tool_choice: Annotated[StrictStr | dict[str, Any] | None, Documented({"enum": ["none", None]})] = None
    parallel_tool_calls: StrictBool | None = None
    functions: Annotated[list[dict[str, Any]] | None, Documented(_EMPTY_LIST)] = Field(None, max_length=128)
    function_call: Annotated[StrictStr | dict[str, Any] | None, Documented(NULL)] = None
    store: StrictBool | None = None
    metadata: dict[str, StrictStr] | None = None
    service_tier: StrictStr | None = None
    reasoning_effort: StrictStr | None = None
    modalities: list[StrictStr] | None = None


# best_of is 1 or n (choices are not ranked); prompts × n is at most MAX_COMPLETIONS.
_BEST_OF_RULE = {"anyOf": [{"not": {"required": ["best_of"]}}, {"properties": {"best_of": {"enum": [None, 1]}}},
                           *({"properties": {"n": {"const": n}, "best_of": {"const": n}}, "required": ["n", "best_of"]}
                             for n in range(2, MAX_CHOICES + 1))]}
_COMPLETIONS_RULE = {"anyOf": [{"not": {"required": ["n"]}},
                               *({"properties": {"n": {"const": n}, "prompt": {"maxItems": MAX_COMPLETIONS // n}}}
                                 for n in range(1, MAX_CHOICES + 1))]}


class CompletionRequest(_Sampling):
    model_config = ConfigDict(json_schema_extra=rules(_STREAM_OPTIONS_RULE, _BEST_OF_RULE, _COMPLETIONS_RULE))

    # Token-id prompts are accepted by name and refused by the service (text only).
    prompt: Annotated[BoundedText | TextList | BoundedTokens | TokensList, Documented(texts_schema(MAX_COMPLETIONS, PROMPT_CHARACTER))]
    echo: StrictBool = False
    suffix: Annotated[StrictStr | None, Documented({"enum": ["", None]})] = Field(
        None, description="Fill-in-the-middle is not supported.")
    best_of: Choices | None = Field(None, description="1 or n: choices are not ranked.")
    logprobs: Annotated[integer(ge=0, le=5) | None, Documented(NULL)] = Field(
        None, description="Not available: Triton's TensorRT-LLM interfaces return no log-probabilities.")

    @field_validator("prompt")
    @classmethod
    def _not_empty(cls, value: Any, info: ValidationInfo) -> Any:
        # An empty prompt has no token to start from: the runtime would fail on it.
        if value == "" or value == [] or (isinstance(value, list) and "" in value):
            raise ValueError("prompt must not be empty")
        for text in [value] if isinstance(value, str) else value:
            if isinstance(text, str):
                has_prompt(text)
        count = (1 if isinstance(value, str) or (value and isinstance(value[0], int)) else len(value))
        if count * info.data.get("n", 1) > MAX_COMPLETIONS:
            raise ValueError(f"at most {MAX_COMPLETIONS} completions per request (prompts × n)")
        return value


class EmbeddingRequest(_Request):
    model: ModelId
    # Token-id input is accepted by name and refused by the service (text only).
    input: Annotated[BoundedText | TextList | BoundedTokens | TokensList, Documented(texts_schema(MAX_LIST))]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: integer(ge=1) | None = Field(None, description="The model's own dimensions; they cannot be shortened.")
    user: StrictStr | None = Field(None, max_length=256)


# Responses ------------------------------------------------------------------------------------

class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str
    refusal: None = None


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: Literal["stop", "length"]
    logprobs: None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    system_fingerprint: str | None = None
    choices: list[ChatChoice]
    usage: Usage | None  # None: the model's interface does not count tokens


class CompletionChoice(BaseModel):
    index: int
    text: str
    finish_reason: Literal["stop", "length"]
    logprobs: None = None


class Completion(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    system_fingerprint: str | None = None
    choices: list[CompletionChoice]
    usage: Usage | None  # None: the model's interface does not count tokens


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage
