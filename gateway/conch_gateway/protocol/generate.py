"""The generate API: `POST /v1/generate`."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, StrictBool, StrictStr

from .types import (Documented, MaxTokens, ModelId, PromptText, RepetitionPenalty, RequestModel, Seed, StopString,
                    Temperature, TopK, TopP)

# prompts.SCENARIOS' names (a unit test keeps them equal); an unknown one is refused by the service
# with 400 PROMPT_FORMAT_FAILED, which lists them.
SCENARIOS = ("base", "qa", "summarize", "rewrite")


class GenerateParameters(RequestModel):
    max_new_tokens: MaxTokens = Field(128, description="Most tokens to generate.")
    temperature: Temperature = Field(0.7, description="Sampling temperature, 0–2.")
    top_p: TopP = Field(0.9, description="Nucleus sampling mass, (0, 1].")
    do_sample: StrictBool = Field(True, description="false means greedy decoding.")
    stop: list[StopString] = Field(default_factory=list, max_length=16,
                                   description="Strings that end generation; they are not returned.")
    top_k: TopK | None = Field(None, description="Sample from the k most likely tokens.")
    repetition_penalty: RepetitionPenalty | None = None
    seed: Seed | None = Field(None, description="Makes sampling reproducible.")


class GenerateRequest(RequestModel):
    model_id: ModelId = Field(description="A model id from GET /v1/models.")
    inputs: PromptText = Field(description="The prompt text.")
    scenario: Annotated[StrictStr, Documented({"type": "string", "enum": list(SCENARIOS)})] = Field(
        "base", description="base, qa, summarize or rewrite.")
    parameters: GenerateParameters = Field(default_factory=GenerateParameters)
    stream: StrictBool = Field(False, description='true answers with SSE events {"token", "finished"}; '
                               'the last one also carries generated_text, model and tokens.')


class GenerateResponse(BaseModel):
    generated_text: str = Field(description="The generated text, without the prompt.")
    model: str = Field(description="The real name of the model that answered.")
    tokens: int | None = Field(description="Generated tokens, as counted by the inference server; null when "
                               "the model's interface does not count them (TensorRT-LLM's llmapi model).")
    finish_reason: Literal["stop", "length"] = Field(
        description="stop: the model ended its answer or a stop string was met; length: max_new_tokens or the "
                    "model's context window ran out.")
