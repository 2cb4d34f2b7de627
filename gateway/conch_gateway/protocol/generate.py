"""The generate API: `POST /v1/generate`."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from .types import MAX_NEW_TOKENS, ModelId, PromptText, StopString

Probability = Annotated[float, Field(strict=True, allow_inf_nan=False)]


class GenerateParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_new_tokens: StrictInt = Field(128, ge=1, le=MAX_NEW_TOKENS, description="Most tokens to generate.")
    temperature: Probability = Field(0.7, ge=0.0, le=2.0, description="Sampling temperature, 0–2.")
    top_p: Probability = Field(0.9, gt=0.0, le=1.0, description="Nucleus sampling mass, (0, 1].")
    do_sample: StrictBool = Field(True, description="false means greedy decoding.")
    stop: list[StopString] = Field(default_factory=list, max_length=16,
                                   description="Strings that end generation; they are not returned.")
    top_k: StrictInt | None = Field(None, ge=1, le=1000, description="Sample from the k most likely tokens.")
    repetition_penalty: Probability | None = Field(None, gt=0.0, le=10.0)
    seed: StrictInt | None = Field(None, ge=0, le=2**63 - 1, description="Makes sampling reproducible.")


class GenerateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_id: ModelId = Field(description="A model id from GET /v1/models.")
    inputs: PromptText = Field(description="The prompt text.")
    scenario: StrictStr = Field("base", description="base, qa, summarize or rewrite.")
    parameters: GenerateParameters = Field(default_factory=GenerateParameters)
    stream: StrictBool = Field(False, description='true answers with SSE events {"token", "finished"}; '
                               'the last one also carries generated_text, model and tokens.')


class GenerateResponse(BaseModel):
    generated_text: str = Field(description="The generated text, without the prompt.")
    model: str = Field(description="The real name of the model that answered.")
    tokens: int | None = Field(description="Generated tokens, as counted by the inference server; null when "
                               "the model's interface does not count them (TensorRT-LLM's llmapi model).")
