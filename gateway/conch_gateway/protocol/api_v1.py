"""The `/api/v1` API: generate, its token stream, batches, and the model list."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StrictBool

from .types import (Documented, MaxTokens, ModelId, PromptText, RequestModel, Seed, StopString, Temperature, TopK,
                    TopP)

MAX_BATCH = 64


class ApiV1GenerateRequest(RequestModel):
    prompt: PromptText = Field(description="The user's message.")
    model: ModelId | None = Field(None, description="A model id; the gateway's default model if omitted.")
    max_tokens: MaxTokens = 512
    temperature: Temperature = Field(0.7, description="0 means greedy decoding.")
    top_p: TopP = 0.9
    top_k: TopK | None = None
    stop: list[StopString] = Field(default_factory=list, max_length=16)
    seed: Seed | None = None
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
    finish_reason: Literal["stop", "length"]


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
    finish_reason: Literal["stop", "length"] | None = None
    error: ItemError | None = None


def _batch_item_schema() -> dict[str, Any]:
    schema = ApiV1GenerateRequest.model_json_schema()
    schema["properties"]["stream"] = {"const": False, "default": False, "description": "Batch items cannot stream."}
    return schema


class BatchRequest(RequestModel):
    # Items are validated one by one in the service, so one bad item fails alone; the document shows
    # what each must be.
    requests: list[Annotated[dict, Documented(_batch_item_schema())]] = Field(min_length=1, max_length=MAX_BATCH)


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
