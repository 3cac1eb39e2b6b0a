"""GPUs and CPUs side by side for one workload: time, energy, carbon and cost of the same FLOPs.

Each side is `count` devices of one catalogue entry (a GPU, a system's GPUs, or a CPU socket) at
its peak (the best of BF16, FP16, FP32 a GPU has; FP32 vector peak for a CPU) times an efficiency:
the GPU generation's default MFU or the CPUs' (with their sources in the catalogue), or one given.
Power is the GPU's measured or TDP power, or the CPU socket's TDP (the rest of a server is not
counted on either side).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from aifactory.core.errors import SpecError
from aifactory.plan.catalog import Catalog
from aifactory.plan.energy import Facility, Footprint, footprint
from aifactory.plan.train import DEFAULT_GOODPUT


@dataclass(frozen=True, slots=True)
class Hardware:
    name: str
    count: int
    usd_per_hour: float | None = None  # per device


def parse_hardware(text: str) -> Hardware:
    """`NAME:COUNT` or `NAME:COUNT:USD_PER_DEVICE_HOUR`."""
    parts = text.rsplit(":", 2) if text.count(":") >= 2 else text.rsplit(":", 1)
    if len(parts) < 2 or not parts[0]:
        raise SpecError("on", f"{text!r}: expected NAME:COUNT or NAME:COUNT:USD_PER_HOUR")
    try:
        count = int(parts[1])
        price = float(parts[2]) if len(parts) == 3 else None
    except ValueError:
        raise SpecError("on", f"{text!r}: COUNT must be a whole number and the price a number") from None
    if count < 1 or count > 10_000_000:
        raise SpecError("on", f"{text!r}: COUNT must be 1 to 10,000,000")
    if price is not None and not (price >= 0 and math.isfinite(price)):
        raise SpecError("on", f"{text!r}: the price must be a number >= 0")
    return Hardware(parts[0], count, price)


@dataclass(frozen=True, slots=True)
class Side:
    """One hardware choice for the workload."""

    name: str
    kind: str  # "gpu" or "cpu"
    count: int
    peak_tflops: float  # per device
    precision: str
    efficiency: float
    efficiency_source: str
    days: float
    footprint: Footprint  # gpu_hours there are device-hours (GPU-hours or CPU-socket-hours)
    cost_usd: float | None


def compare(
    flops: float,
    hardware: list[Hardware],
    catalog: Catalog,
    facility: Facility,
    efficiency: float | None = None,
    goodput: float = DEFAULT_GOODPUT,
) -> list[Side]:
    if not (flops > 0 and math.isfinite(flops)):
        raise SpecError("flops", f"must be a number > 0, got {flops}")
    if not hardware:
        raise SpecError("on", "name at least one NAME:COUNT to compare")
    if efficiency is not None and not 0 < efficiency <= 1:
        raise SpecError("efficiency", f"must be a fraction in (0, 1], got {efficiency}")
    if not 0 < goodput <= 1:
        raise SpecError("goodput", f"must be a fraction in (0, 1], got {goodput}")
    sides = []
    for hw in hardware:
        if catalog.is_cpu(hw.name):
            cpu = catalog.cpu(hw.name)
            name, kind, peak, precision, power = cpu.name, "cpu", cpu.fp32_tflops, "fp32", cpu.tdp_w
            default = catalog.mfu_by_generation.get("cpu", 0.3)
            default_source = f"CPUs: {catalog.mfu_sources.get('cpu', 'assumed')}"
        else:
            gpu = catalog.gpu(hw.name)
            precision = next(p for p in ("bf16", "fp16", "fp32") if p in gpu.tflops)
            name, kind, peak, power = gpu.name, "gpu", gpu.peak_tflops(precision), gpu.power_w
            default = catalog.default_mfu(gpu)
            default_source = f"{gpu.generation}: {catalog.mfu_sources.get(gpu.generation, 'assumed')}"
        eff = efficiency if efficiency is not None else default
        source = "given" if efficiency is not None else f"default for {default_source}"
        seconds = flops / (hw.count * peak * 1e12 * eff * goodput)
        hours = seconds * hw.count / 3600
        fp = footprint(hours, power, Facility(facility.pue, facility.grid_g_per_kwh, None, facility.usd_per_kwh))
        cost = None
        if hw.usd_per_hour is not None or facility.usd_per_kwh is not None:
            cost = hours * (hw.usd_per_hour or 0.0) + fp.facility_kwh * (facility.usd_per_kwh or 0.0)
        sides.append(Side(name, kind, hw.count, peak, precision, eff, source, seconds / 86400, fp, cost))
    return sides
