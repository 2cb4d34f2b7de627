"""I/O adapter: local GPUs through NVML when the library and a driver are present."""

from __future__ import annotations

from .protocol import GPUDevice, GPUStatus


def local_gpus() -> GPUStatus:
    try:
        import pynvml  # optional: only hosts with NVIDIA's driver have it
    except ImportError:
        return GPUStatus(gpus=[], source="none", reason="NVML (pynvml) is not installed; no GPU is visible")
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # NVMLError has many subclasses; any of them means no usable driver
        return GPUStatus(gpus=[], source="none", reason=f"NVML could not start: {exc}")
    try:
        devices = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            name = pynvml.nvmlDeviceGetName(handle)
            devices.append(GPUDevice(index=index, name=name.decode() if isinstance(name, bytes) else name,
                                     memory_used_bytes=memory.used, memory_total_bytes=memory.total,
                                     utilization_percent=pynvml.nvmlDeviceGetUtilizationRates(handle).gpu))
        return GPUStatus(gpus=devices, source="nvml", reason=None if devices else "NVML sees no GPU")
    finally:
        pynvml.nvmlShutdown()
