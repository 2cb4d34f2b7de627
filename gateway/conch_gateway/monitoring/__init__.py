"""Monitoring: system/GPU status, request history and its aggregates (docs/monitoring.md).

Layout: `protocol` (pydantic shapes), `history` and `aggregate` (pure), `system` and `gpu`
(I/O adapters: psutil, NVML), `middleware` (feeds the history), `routes` (thin)."""
