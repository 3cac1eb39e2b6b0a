"""The twin's power model: what the floor draws, second by second of virtual time, and its energy.

A powered node draws, per GPU slot, its host share (CPUs, memory, network, fans) and the GPU's idle
power, or its busy power while a job holds it (a fraction of a GPU: that fraction of the difference). A node that is
off draws nothing. Facility power = IT power x PUE. The figures come from the plan's catalogue,
each with its source (`PowerSpec.sources`): busy = the GPU's measured training power where
published, else its TDP; idle = `[power] idle_fraction` of TDP; host = the catalogue system of
that GPU, its rated power less its GPUs' TDP, per GPU.

`PowerMeter` integrates exactly: the draw changes only when a job starts or ends or a node goes
on or off, and each change adds draw x time since the last one (O(1) per change, so the meter
costs a replay a few per cent).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from aifactory.core.errors import SpecError
from aifactory.twin.grid import GridSeries

J_PER_KWH = 3.6e6


@dataclass(frozen=True, slots=True)
class PowerSpec:
    """Watts of one node kind (every node of a replay is priced as `gpu`) and the facility around it."""

    gpu: str
    idle_w: float  # per powered GPU holding no work
    busy_w: float  # per GPU a job holds and keeps fully busy
    host_w: float  # per GPU slot of a powered node: its share of CPUs, memory, network, fans
    pue: float = 1.1
    grid_g_per_kwh: float = 480.0
    usd_per_kwh: float | None = None
    sources: dict[str, str] = field(default_factory=dict)
    util: float = 1.0  # mean utilisation of held GPUs: power rises linearly from idle to busy with it
    grid_series: GridSeries | None = None  # intensity over time (instead of grid_g_per_kwh), from the trace start

    def __post_init__(self) -> None:
        for name in ("idle_w", "busy_w", "host_w", "grid_g_per_kwh"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise SpecError(name, f"must be a number >= 0 W, got {value}")
        if self.busy_w < self.idle_w:
            raise SpecError("busy_w", f"{self.busy_w} W is below the idle {self.idle_w} W")
        if not self.pue >= 1:
            raise SpecError("pue", f"must be >= 1, got {self.pue}")
        if self.usd_per_kwh is not None and not (self.usd_per_kwh >= 0 and math.isfinite(self.usd_per_kwh)):
            raise SpecError("usd-per-kwh", f"must be a price >= 0, got {self.usd_per_kwh}")
        if not 0 <= self.util <= 1:
            raise SpecError("gpu-util", f"must be a fraction in [0, 1], got {self.util}")

    @property
    def held_w(self) -> float:
        """Watts of a GPU a job holds, at the mean utilisation: idle + (busy - idle) x util."""
        return self.idle_w + (self.busy_w - self.idle_w) * self.util


def power_spec(
    gpu_name: str,
    pue: float | None = None,
    grid: float | None = None,
    usd_per_kwh: float | None = None,
    catalog: Any = None,
    util: float = 1.0,
) -> PowerSpec:
    """The power of nodes of `gpu_name` from the plan's catalogue, every figure with its source."""
    from aifactory.plan.catalog import load_catalog
    from aifactory.plan.energy import DEFAULT_SOURCES, Facility

    cat = catalog or load_catalog()
    gpu = cat.gpu(gpu_name)
    settings = cat.power
    fraction = float(settings.get("idle_fraction", 0.2))
    said = settings.get("sources", {})
    system = next((s for s in cat.systems.values() if s.gpu.name == gpu.name and s.rated_kw), None)
    if system is not None and system.rated_kw is not None:
        host = max(0.0, system.rated_kw * 1000 - system.gpus * gpu.tdp_w) / system.gpus
        host_source = f"{system.name}: {said.get('node_base', '')}"
    else:
        host = 100.0
        host_source = f"assumed 100 W per GPU slot: no system of {gpu.name} in the catalogue"
    facility = Facility()
    idle = gpu.idle_w if gpu.idle_w is not None else fraction * gpu.tdp_w
    idle_source = (
        gpu.source("idle_w")
        if gpu.idle_w is not None
        else f"{fraction:g} x TDP {gpu.tdp_w:g} W: {said.get('idle_fraction', 'assumed')}"
    )
    return PowerSpec(
        gpu=gpu.name,
        idle_w=idle,
        busy_w=float(gpu.power_w),
        host_w=host,
        pue=pue if pue is not None else facility.pue,
        grid_g_per_kwh=grid if grid is not None else facility.grid_g_per_kwh,
        usd_per_kwh=usd_per_kwh,
        util=util,
        sources={
            "busy_w": gpu.source("measured_power_w" if gpu.measured_power_w else "tdp_w"),
            "idle_w": idle_source,
            "host_w": f"per GPU slot: {host_source}",
            "pue": "given" if pue is not None else DEFAULT_SOURCES["pue"],
            "grid": "given" if grid is not None else DEFAULT_SOURCES["grid"],
        },
    )


class PowerMeter:
    """Integrates the floor's IT power over virtual time; keeps the peak and a sampled series."""

    __slots__ = (
        "_at",
        "_draw",
        "_end_at",
        "_end_g",
        "_end_j",
        "_start",
        "alloc",
        "gpus_on",
        "it_g",
        "it_j",
        "peak_w",
        "spec",
    )

    def __init__(self, spec: PowerSpec, gpus_on: int, start: float = 0.0) -> None:
        self.spec = spec
        self.gpus_on = gpus_on  # GPU slots of powered nodes
        self.alloc = 0.0  # GPUs held by jobs (a fraction counts as its fraction)
        self.it_j = 0.0
        self.it_g = 0.0  # gCO2e of the IT energy, where the grid is a time series
        self._start = start
        self._at = start
        self._draw = self._watts()
        self.peak_w = self._draw
        # Energy up to the last time a job gave GPUs back: the replay's figures end with its last job,
        # not with whatever a what-if does after it (a node powering off half an hour later).
        self._end_at, self._end_j, self._end_g = start, 0.0, 0.0

    def _watts(self) -> float:
        s = self.spec
        return self.gpus_on * (s.host_w + s.idle_w) + self.alloc * (s.held_w - s.idle_w)

    def _advance(self, now: float) -> None:
        if now > self._at:
            self.it_j += self._draw * (now - self._at)
            series = self.spec.grid_series
            if series is not None and self._draw:
                self.it_g += self._draw * series.integral(self._at - self._start, now - self._start) / J_PER_KWH
            self._at = now

    def held(self, now: float, gpus: float) -> None:
        """Jobs took (gpus > 0) or gave back (< 0) GPUs at `now`."""
        self._advance(now)
        if gpus < 0:
            self._end_at, self._end_j, self._end_g = now, self.it_j, self.it_g
        self.alloc += gpus
        self._draw = self._watts()
        if self._draw > self.peak_w:
            self.peak_w = self._draw

    def powered(self, now: float, gpus: int) -> None:
        """Nodes with `gpus` GPU slots in all went on (> 0) or off (< 0) at `now`."""
        self._advance(now)
        self.gpus_on += gpus
        self._draw = self._watts()
        if self._draw > self.peak_w:
            self.peak_w = self._draw

    def draw_w(self, now: float) -> float:
        """IT watts now (also brings the integral up to `now`)."""
        self._advance(now)
        return self._draw

    def figures(self, start: float) -> dict[str, Any]:
        """kWh (IT, facility), mean and peak facility kW, tCO2e and energy cost from `start` (the first
        arrival) to the end of the last job."""
        s = self.spec
        span_s = self._end_at - start
        it = self._end_j / J_PER_KWH
        facility = it * s.pue
        return {
            "it_kwh": it,
            "energy_kwh": facility,
            "mean_kw": facility / (span_s / 3600) if span_s > 0 else 0.0,
            "peak_kw": self.peak_w * s.pue / 1000,
            "tco2e": (self._end_g * s.pue if s.grid_series is not None else facility * s.grid_g_per_kwh) / 1e6,
            "energy_usd": facility * s.usd_per_kwh if s.usd_per_kwh is not None else None,
        }
