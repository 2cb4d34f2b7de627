"""Hugging Face Text Generation Inference's API: `/generate`, `/generate_stream`, `/`,
`/invocations`, `/info`. Requests carry no model: the gateway's default model serves them, or the
one named by Conch's optional top-level `model` field."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StrictBool, StrictStr

from .types import (NULL, Documented, MaxTokens, ModelId, Penalty, PromptText, RepetitionPenalty, RequestModel,
                    Seed, StopString, TopK, TopP, integer, sampling_float)

TGITemperature = sampling_float(gt=0.0, le=100.0)


class TGIParameters(RequestModel):
    max_new_tokens: MaxTokens | None = 100
    temperature: TGITemperature | None = None
    top_p: TopP | None = None
    top_k: TopK | None = None
    do_sample: StrictBool = False
    seed: Seed | None = None
    stop: list[StopString] = Field(default_factory=list, max_length=16)
    return_full_text: StrictBool | None = False
    details: StrictBool = False
    decoder_input_details: Annotated[StrictBool, Documented({"const": False})] = False
    repetition_penalty: RepetitionPenalty | None = None
    frequency_penalty: Penalty | None = None
    # Accepted by name so the refusal is explicit (services/tgi.py, 422 as TGI's validation errors); the
    # document shows the values that are served.
    best_of: Annotated[integer(ge=1) | None, Documented({"enum": [1, None]})] = None
    top_n_tokens: Annotated[integer(ge=0) | None, Documented({"enum": [0, None]})] = None
    truncate: Annotated[integer(ge=1) | None, Documented(NULL)] = None
    typical_p: Annotated[TopP | None, Documented(NULL)] = None
    watermark: Annotated[StrictBool, Documented({"const": False})] = False
    grammar: Annotated[dict[str, Any] | None, Documented(NULL)] = None
    adapter_id: Annotated[StrictStr | None, Documented(NULL)] = None

class TGIRequest(RequestModel):
    inputs: PromptText
    parameters: TGIParameters = Field(default_factory=TGIParameters)
    stream: StrictBool = False  # read by `/` and `/invocations` only
    model: ModelId | None = Field(None, description="Conch extension: the model to use instead of the default.")


class TGIDetails(BaseModel):
    finish_reason: Literal["length", "eos_token", "stop_sequence"]
    generated_tokens: int | None  # None: the model's interface does not count tokens
    seed: int | None = None
    # Triton's TensorRT-LLM interfaces return text, not token ids or log-probabilities.
    prefill: list[dict[str, Any]] = Field(default_factory=list)
    tokens: list[dict[str, Any]] = Field(default_factory=list)
    top_tokens: None = None
    best_of_sequences: None = None


class TGIResponse(BaseModel):
    generated_text: str
    details: TGIDetails | None = None


class TGIInfo(BaseModel):
    model_id: str
    model_sha: str | None = None
    model_dtype: str | None = None
    model_device_type: str | None = None
    model_pipeline_tag: str = "text-generation"
    max_concurrent_requests: int
    max_best_of: int = 1
    max_stop_sequences: int = 16
    max_input_tokens: int | None = None
    max_total_tokens: int | None = None
    validation_workers: int = 1
    version: str
    sha: str | None = None
    docker_label: str | None = None
    router: str = "conch-gateway"
