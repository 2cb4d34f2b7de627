"""Operator settings, from environment variables (prefix CONCH_OPERATOR_)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# One source of truth: the Triton image conch_engines.tensorrt_llm pins ships the TensorRT-LLM
# release its engines are built with (an engine only loads in the release that built it).
from conch_engines.tensorrt_llm import TRITON_TRTLLM_IMAGE


class OperatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CONCH_OPERATOR_", extra="ignore", frozen=True)

    cpu_triton_image: str = Field("ghcr.io/conch-dev/triton-cpu:0.1.0",
                                  description="Image of Triton with the llama-cpp runtime (runtime llama-cpp).")
    cpu_default_requests: dict[str, str] = Field({"cpu": "1", "memory": "1Gi"},
                                                 description="Triton container requests when a Model sets none.")
    trtllm_triton_image: str = Field(TRITON_TRTLLM_IMAGE,
                                     description="Triton image with the TensorRT-LLM backend (runtime tensorrt-llm).")
    trtllm_builder_image: str = Field("ghcr.io/conch-dev/trtllm-builder:0.1.0",
                                      description="Image of the engine build Job (conch_engines + TensorRT-LLM).")
    gpu_default_requests: dict[str, str] = Field({"cpu": "4", "memory": "32Gi"},
                                                 description="CPU and memory requests of a GPU Triton container when a "
                                                 "Model sets none (the GPUs come from spec.engine.tensorParallel).")
    build_requests: dict[str, str] = Field({"cpu": "8", "memory": "64Gi"},
                                           description="CPU and memory requests of an engine build Job (quantizing "
                                           "loads the full-precision checkpoint).")
    build_backoff_limit: int = Field(2, ge=0, description="Pod retries inside one build Job (e.g. a lost node).")
    build_retry_base_s: float = Field(60.0, gt=0, description="Wait before rebuilding after the first failed build; "
                                      "doubles with every further failure.")
    build_retry_cap_s: float = Field(3600.0, gt=0, description="Longest wait between failed builds.")
    build_job_ttl_s: int = Field(86400, ge=0, description="Finished build Jobs (and their logs) are kept this long; "
                                 "the engine record outlives them.")
    rejected_retry_base_s: float = Field(60.0, gt=0, description="Wait before writing a Model's objects again "
                                         "after the API server refused them (invalid, over quota, forbidden); "
                                         "doubles with every further refusal. A spec change retries at once.")
    rejected_retry_cap_s: float = Field(1800.0, gt=0, description="Longest wait between refused writes.")
    resync_interval_s: float = Field(300.0, gt=0, description="How often every Model is reconciled even without events.")
    external_probe_interval_s: float = Field(10.0, gt=0, description="How often external endpoints are probed.")
    external_probe_timeout_s: float = Field(2.0, gt=0, description="Time limit of an external endpoint health probe.")
    metrics_port: int = Field(8090, description="Port of the operator's Prometheus metrics; 0 disables them.")
    max_workers: int = Field(8, ge=1, description="Threads running reconciles concurrently.")
