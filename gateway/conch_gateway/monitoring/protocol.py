"""Shapes of the monitoring API's answers."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class ResourceUsage(BaseModel):
    cpu_percent: float
    memory_used_bytes: int
    memory_total_bytes: int
    memory_percent: float
    disk_used_bytes: int
    disk_total_bytes: int
    disk_percent: float


class SystemStatus(BaseModel):
    version: str
    uptime_s: float
    models: dict[str, int] = Field(description="Models counted by state (healthy, unhealthy, deploying, ...).")
    models_total: int
    resources: ResourceUsage


class GPUDevice(BaseModel):
    index: int
    name: str
    memory_used_bytes: int | None = None
    memory_total_bytes: int | None = None
    utilization_percent: float | None = None


class NodeGPUs(BaseModel):
    node: str
    product: str | None = Field(None, description="The node's nvidia.com/gpu.product label.")
    capacity: int = Field(description="nvidia.com/gpu in the node's capacity.")
    allocatable: int = Field(description="nvidia.com/gpu in the node's allocatable.")


class GPUStatus(BaseModel):
    gpus: list[GPUDevice]
    nodes: list[NodeGPUs] = Field(default_factory=list, description="Cluster nodes with GPUs (source kubernetes).")
    total_capacity: int | None = None
    total_allocatable: int | None = None
    source: str = Field(description="nvml (this host), kubernetes (the cluster's Nodes), or none")
    reason: str | None = Field(None, description="Why the list is empty.")


class LatencyStats(BaseModel):
    # Prometheus keeps histogram buckets, not single requests: min and max are null from it.
    min_s: float | None = None
    avg_s: float
    max_s: float | None = None
    p50_s: float
    p95_s: float
    p99_s: float


class SeriesStats(BaseModel):
    key: str
    requests: int
    errors: int
    error_rate: float
    requests_per_s: float
    latency: LatencyStats | None


class MetricsReport(BaseModel):
    start_time: datetime
    end_time: datetime
    source: str = Field(description="local: this replica's bounded in-process history; prometheus: the "
                                    "configured Prometheus (every scraped replica).")
    model_id: str | None = Field(None, description="The model the report is restricted to (performance?model_id=).")
    total: SeriesStats
    series: list[SeriesStats] = Field(description="One per route template.")
    models: list[SeriesStats] = Field(default_factory=list, description="One per model the requests resolved to "
                                      "(requests that named no served model are in total and series only).")
