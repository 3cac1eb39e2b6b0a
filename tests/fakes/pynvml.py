"""A fake `pynvml` (nvidia-ml-py's module) for tests: the system boundary, nothing else faked.

It answers from the JSON file named by $AIFACTORY_FAKE_NVML, read again on every call, so a test
changes what the "driver" says while a server runs (put this directory first on PYTHONPATH of
the server's process):

    {"gpus": [{"name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-0", "total_mib": 81559,
               "used_mib": 1024, "util": 87, "power_mw": 310000, "temp": 61,
               "procs": [[4242, 1000]]}]}

A GPU without "power_mw" or "temp" answers NVMLError_NotSupported for it, as old GPUs do.
"""

from __future__ import annotations

import json
import os
from types import SimpleNamespace
from typing import Any

NVML_TEMPERATURE_GPU = 0
MIB = 1024 * 1024
calls = {"init": 0, "shutdown": 0}


class NVMLError(Exception):
    pass


class NVMLError_NotSupported(NVMLError):
    pass


def _gpus() -> list[dict[str, Any]]:
    path = os.environ.get("AIFACTORY_FAKE_NVML")
    if not path or not os.path.exists(path):
        raise NVMLError("NVML Shared Library Not Found")
    with open(path) as f:
        return list(json.load(f)["gpus"])


def nvmlInit() -> None:
    _gpus()
    calls["init"] += 1


def nvmlShutdown() -> None:
    calls["shutdown"] += 1


def nvmlDeviceGetCount() -> int:
    return len(_gpus())


def nvmlDeviceGetHandleByIndex(index: int) -> int:
    return index


def _gpu(handle: int) -> dict[str, Any]:
    return _gpus()[handle]


def nvmlDeviceGetName(handle: int) -> str:
    return str(_gpu(handle)["name"])


def nvmlDeviceGetUUID(handle: int) -> str:
    return str(_gpu(handle)["uuid"])


def nvmlDeviceGetMemoryInfo(handle: int) -> SimpleNamespace:
    g = _gpu(handle)
    total, used = g["total_mib"] * MIB, g.get("used_mib", 0) * MIB
    return SimpleNamespace(total=total, used=used, free=total - used)


def nvmlDeviceGetUtilizationRates(handle: int) -> SimpleNamespace:
    g = _gpu(handle)
    return SimpleNamespace(gpu=g.get("util", 0), memory=g.get("mem_util", 0))


def nvmlDeviceGetPowerUsage(handle: int) -> int:
    g = _gpu(handle)
    if "power_mw" not in g:
        raise NVMLError_NotSupported("Not Supported")
    return int(g["power_mw"])


def nvmlDeviceGetTemperature(handle: int, sensor: int) -> int:
    g = _gpu(handle)
    if "temp" not in g:
        raise NVMLError_NotSupported("Not Supported")
    return int(g["temp"])


def nvmlDeviceGetComputeRunningProcesses(handle: int) -> list[SimpleNamespace]:
    return [SimpleNamespace(pid=pid, usedGpuMemory=mib * MIB) for pid, mib in _gpu(handle).get("procs", [])]
