"""The error envelope every route answers with (built by `conch_gateway.errors`), as a type, so the
OpenAPI document can state it: `ERROR_RESPONSES` is meant for the routes' `responses`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class ErrorBody(BaseModel):
    code: str = Field(description="Stable code, e.g. INVALID_REQUEST, MODEL_NOT_FOUND, UNSUPPORTED_PARAMETER.")
    message: str
    type: str = Field(description="OpenAI's error type, e.g. invalid_request_error.")
    param: str | None = Field(description="The request field at fault, dotted (parameters.top_p).")
    details: Any = None


class ErrorEnvelope(BaseModel):
    error: ErrorBody
    error_code: str = Field(description="The same code, where the generate API's clients read it.")
    error_type: Literal["validation", "overloaded", "generation"] = Field(
        description="Hugging Face TGI's kind of error, which its clients map onto exception classes.")
    timestamp: str
    path: str


# A 5xx other than these is a bug in the gateway, so none is documented.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {"model": ErrorEnvelope, "description": "The request is refused; error.code says why."},
    503: {"model": ErrorEnvelope, "description": "The model or its inference server is not available now; "
                                                  "retry after Retry-After seconds."},
    504: {"model": ErrorEnvelope, "description": "Inference took longer than the gateway's time limit."},
}
