"""The `/api/v1` API: generate, its token stream, batches, and the model list."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from .types import MAX_NEW_TOKENS, ModelId, Number, PromptText, StopString

MAX_BATCH = 64


class ApiV1GenerateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: PromptText = Field(description="The user's message.")
    model: ModelId | None = Field(None, description="A model id; the gateway's default model if omitted.")
    max_tokens: StrictInt = Field(512, ge=1, le=MAX_NEW_TOKENS)
    temperature: Number = Field(0.7, ge=0.0, le=2.0, description="0 means greedy decoding.")
    top_p: Number = Field(0.9, gt=0.0, le=1.0)
    top_k: StrictInt | None = Field(None, ge=1, le=1000)
    stop: list[StopString] = Field(default_factory=list, max_length=16)
    seed: StrictInt | None = Field(None, ge=0, le=2**63 - 1)
    stream: StrictBool = Field(False, description="true answers like /api/v1/generate/stream.")


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ApiV1GenerateResponse(BaseModel):
    text: str
    usage: Usage | None  # None: the model's interface does not count tokens
    latency: float = Field(description="Seconds the gateway spent on the request.")
    model: str
    finish_reason: str


class ItemError(BaseModel):
    code: str
    message: str
    details: object = None


class BatchItem(BaseModel):
    """One result of a batch: the answer, or the error of that request alone."""

    text: str | None = None
    usage: Usage | None = None
    latency: float | None = None
    model: str | None = None
    finish_reason: str | None = None
    error: ItemError | None = None


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Items are validated one by one in the service, so one bad item fails alone.
    requests: list[dict] = Field(min_length=1, max_length=MAX_BATCH)


class BatchResponse(BaseModel):
    results: list[BatchItem]


class ApiV1Model(BaseModel):
    name: str
    format: str | None
    size: str | None = None
    loaded: bool
    memory_usage: str | None = None
    status: str


class ApiV1ModelList(BaseModel):
    models: list[ApiV1Model]
