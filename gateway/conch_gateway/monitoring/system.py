"""I/O adapter: the host's CPU, memory and disk (psutil)."""

from __future__ import annotations

import psutil

from .protocol import ResourceUsage


def resources(disk_path: str = "/") -> ResourceUsage:
    memory = psutil.virtual_memory()
    disk = psutil.disk_usage(disk_path)
    return ResourceUsage(cpu_percent=psutil.cpu_percent(interval=None), memory_used_bytes=memory.total - memory.available,
                         memory_total_bytes=memory.total, memory_percent=memory.percent, disk_used_bytes=disk.used,
                         disk_total_bytes=disk.total, disk_percent=disk.percent)
