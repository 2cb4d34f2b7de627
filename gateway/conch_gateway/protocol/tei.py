"""Hugging Face Text Embeddings Inference (TEI): `POST /embed`, the route `huggingface_hub`'s
`InferenceClient.feature_extraction` calls, and HF Inference's
`/models/{model}/pipeline/feature-extraction`, with the same body."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class EmbedRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    inputs: str | list[str] = Field(..., description="A text, or a list of texts (one vector each).")
    normalize: bool = Field(True, description="Scale each vector to unit length (TEI's default).")
    truncate: bool | None = Field(None, description="Texts longer than the model's window are always cut on the "
                                  "right (TEI's truncate: true); false is accepted for TEI clients' defaults.")
    truncation_direction: Literal["Right", "right"] | None = Field(None, description="Only Right is supported.")
    prompt_name: None = Field(None, description="Not supported: the models served have no named prompts.")
    dimensions: int | None = Field(None, ge=1, description="Must equal the model's dimensions if given.")
    model: str | None = Field(None, description="Conch extension: the embedding model; by default the only one.")


EmbedResponse = list[list[float]]
