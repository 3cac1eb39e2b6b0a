"""GPU discovery through NVML (nvidia-ml-py). No library, driver or GPU is a normal case: []."""

from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class GpuInfo:
    index: int
    model: str
    memory_mib: int
    uuid: str


def _text(value: str | bytes) -> str:
    # Older nvidia-ml-py releases return bytes, newer ones str.
    return value.decode() if isinstance(value, bytes) else value


def discover() -> list[GpuInfo]:
    """The GPUs NVML sees on this machine, in NVML index order ([] where there is no NVML)."""
    try:
        import pynvml
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except (pynvml.NVMLError, OSError) as exc:
        log.debug("NVML unavailable: %s", exc)
        return []
    try:
        out: list[GpuInfo] = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            out.append(
                GpuInfo(
                    index=index,
                    model=_text(pynvml.nvmlDeviceGetName(handle)),
                    memory_mib=int(memory.total) // MIB,
                    uuid=_text(pynvml.nvmlDeviceGetUUID(handle)),
                )
            )
        return out
    except pynvml.NVMLError as exc:
        log.warning("NVML failed while listing GPUs: %s", exc)
        return []
    finally:
        pynvml.nvmlShutdown()
