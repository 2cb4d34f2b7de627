"""Hugging Face Text Generation Inference's API: `/generate`, `/generate_stream`, `/`,
`/invocations`, `/info`. Requests carry no model: the gateway's default model serves them, or the
one named by Conch's optional top-level `model` field."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from .types import MAX_NEW_TOKENS, ModelId, Number, PromptText, StopString


class TGIParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_new_tokens: StrictInt | None = Field(100, ge=1, le=MAX_NEW_TOKENS)
    temperature: Number | None = Field(None, gt=0.0, le=100.0)
    top_p: Number | None = Field(None, gt=0.0, le=1.0)
    top_k: StrictInt | None = Field(None, ge=1, le=1000)
    do_sample: StrictBool = False
    seed: StrictInt | None = Field(None, ge=0, le=2**63 - 1)
    stop: list[StopString] = Field(default_factory=list, max_length=16)
    return_full_text: StrictBool | None = False
    details: StrictBool = False
    decoder_input_details: StrictBool = False
    repetition_penalty: Number | None = Field(None, gt=0.0, le=10.0)
    frequency_penalty: Number | None = Field(None, ge=-2.0, le=2.0)
    # Accepted by name so the refusal is explicit (services/tgi.py).
    best_of: StrictInt | None = Field(None, ge=1)
    top_n_tokens: StrictInt | None = Field(None, ge=0)
    truncate: StrictInt | None = Field(None, ge=1)
    typical_p: Number | None = Field(None, gt=0.0, le=1.0)
    watermark: StrictBool = False
    grammar: dict[str, Any] | None = None
    adapter_id: StrictStr | None = None


class TGIRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

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
