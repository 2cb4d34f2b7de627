"""Operator settings, from environment variables (prefix CONCH_OPERATOR_)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class OperatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CONCH_OPERATOR_", extra="ignore", frozen=True)

    cpu_triton_image: str = Field("ghcr.io/conch-dev/triton-cpu:0.1.0",
                                  description="Image of Triton with the llama-cpp runtime (runtime llama-cpp).")
    cpu_default_requests: dict[str, str] = Field({"cpu": "1", "memory": "1Gi"},
                                                 description="Triton container requests when a Model sets none.")
    resync_interval_s: float = Field(300.0, gt=0, description="How often every Model is reconciled even without events.")
    external_probe_interval_s: float = Field(10.0, gt=0, description="How often external endpoints are probed.")
    external_probe_timeout_s: float = Field(2.0, gt=0, description="Time limit of an external endpoint health probe.")
    metrics_port: int = Field(8090, description="Port of the operator's Prometheus metrics; 0 disables them.")
    max_workers: int = Field(8, ge=1, description="Threads running reconciles concurrently.")
