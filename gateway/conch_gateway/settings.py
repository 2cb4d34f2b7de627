"""Gateway settings, from environment variables (prefix CONCH_; PORT also works)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CONCH_", extra="ignore")

    host: str = Field("127.0.0.1", description="Address to listen on.")
    port: int = Field(8000, validation_alias=AliasChoices("PORT", "CONCH_PORT"), description="Port to listen on.")
    model_source: Literal["local", "kubernetes"] = Field("local", description="Where the model list comes from.")
    local_models_file: Path | None = Field(None, description="YAML file of Model resources (local source).")
    watch_namespace: str | None = Field(None, description="Namespace of Models to serve (kubernetes source); all if unset.")
    default_model: str | None = Field(None, description="Model of the APIs without a model field (TGI, /api/v1); "
                                      "unset means the only text-generation model, if there is one.")
    stream_transport: Literal["http", "grpc"] = Field(
        "http", description="How streams reach Triton: http (generate_stream; cheaper, and Triton 2.51 was measured to "
        "cancel it on disconnect) or grpc (ModelStreamInfer, for Models that publish grpcAddress; the cancellation "
        "Triton documents).")
    inference_timeout_s: float = Field(60.0, gt=0, description="Time limit of one inference.")
    inference_timeout_per_token_s: float = Field(0.5, ge=0, description="Time limit grows with max tokens asked.")
    health_probe_interval_s: float = Field(2.0, gt=0, description="How often the local source probes Triton.")
    backend_pool_size: int = Field(512, ge=1, description="Connections kept to inference servers.")
    cors_allow_origins: list[str] = Field(["*"], description="Origins allowed by CORS.")
    log_level: str = Field("info", description="Python log level.")
    access_log: bool = Field(False, description="Log every request (costs throughput).")
