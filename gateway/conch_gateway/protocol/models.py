"""Model listing and health: `GET /v1/models`, `GET /health`, `GET /health/full`."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class OpenAIModel(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "conch"
    # Conch's additions (the OpenAI SDKs keep unknown fields)
    name: str | None = None
    status: str | None = None
    supports: list[str] | None = None


class GenerateApiModel(BaseModel):
    id: str
    name: str
    status: str
    supports: list[str]
    endpoint: str | None


class ModelList(BaseModel):
    """OpenAI's `{object, data}` and the generate API's `{models}` in one body."""

    object: Literal["list"] = "list"
    data: list[OpenAIModel]
    models: list[GenerateApiModel]


class Health(BaseModel):
    """The generate API's fields (`status`, `models`, `total`) plus those `/api/v1` clients read."""

    status: Literal["healthy", "degraded", "unhealthy"]
    models: dict[str, str]
    total: int
    healthy: int
    model_loaded: bool
    memory_usage: str
    active_connections: int
    error: str | None = None  # with error_type: TGI's ErrorResponse, present when unhealthy (503)
    error_type: Literal["healthcheck"] | None = None


class FullHealth(BaseModel):
    status: Literal["healthy", "degraded", "unhealthy"]
    details: dict[str, str]
    total: int
    healthy: int
