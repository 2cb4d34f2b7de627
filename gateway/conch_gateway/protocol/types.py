"""Field types shared by every API dialect, so each bound is stated once."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field, StrictStr

MAX_NEW_TOKENS = 4096


def _has_text(value: str) -> str:
    if not value.strip():
        raise ValueError("must contain text, not only whitespace")
    return value


PromptText = Annotated[StrictStr, Field(min_length=1, max_length=200_000), AfterValidator(_has_text)]
StopString = Annotated[StrictStr, Field(min_length=1, max_length=256)]
ModelId = Annotated[StrictStr, Field(min_length=1, max_length=253)]
# Accepts ints too (JSON clients send 1 for 1.0), never NaN or infinity.
Number = Annotated[float, Field(strict=False, allow_inf_nan=False)]
