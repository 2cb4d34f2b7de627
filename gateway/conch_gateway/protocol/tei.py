"""Hugging Face Text Embeddings Inference (TEI): `POST /embed`, the route `huggingface_hub`'s
`InferenceClient.feature_extraction` calls, and HF Inference's
`/models/{model}/pipeline/feature-extraction`, with the same body."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StrictBool, field_validator

from .types import MAX_LIST, BoundedText, Documented, ModelId, RequestModel, TextList, integer, texts_schema


class EmbedRequest(RequestModel):
    inputs: Annotated[BoundedText | TextList, Documented(texts_schema(MAX_LIST))] = Field(
        ..., description="A text, or a list of texts (one vector each).")
    normalize: StrictBool = Field(True, description="Scale each vector to unit length (TEI's default).")
    truncate: StrictBool | None = Field(None, description="Texts longer than the model's window are always cut on the "
                                        "right (TEI's truncate: true); false is accepted for TEI clients' defaults.")
    truncation_direction: Literal["Right", "right"] | None = Field(None, description="Only Right is supported.")
    prompt_name: None = Field(None, description="Not supported: the models served have no named prompts.")
    dimensions: integer(ge=1) | None = Field(None, description="Must equal the model's dimensions if given.")
    model: ModelId | None = Field(None, description="Conch extension: the embedding model; by default the only one.")

    @field_validator("inputs")
    @classmethod
    def _not_empty(cls, value: str | list[str]) -> str | list[str]:
        if value == "" or value == [] or (isinstance(value, list) and "" in value):
            raise ValueError("inputs must be a non-empty text or a list of non-empty texts")
        return value


EmbedResponse = list[list[float]]
