"""Energy, carbon and money of GPU time.

IT energy = GPU-hours x power per GPU; facility energy = IT energy x PUE; tCO2e = facility kWh x grid
intensity (gCO2e/kWh) / 1e6. Defaults are documented in `Facility` with their sources.
"""

from __future__ import annotations

from dataclasses import dataclass

from aifactory.core.errors import SpecError

PUE_HYPERSCALE = 1.1  # Uptime Institute Global Data Center Survey 2023
PUE_INDUSTRY_AVERAGE = 1.58  # Uptime Institute Global Data Center Survey 2023
GRID_WORLD_AVERAGE_G_PER_KWH = 480.0  # Ember, Global Electricity Review 2024 (world average 2023)
DEFAULT_SOURCES = {
    "pue": "hyperscale, Uptime Institute Global Data Center Survey 2023 (industry average 1.58)",
    "grid": "world average 2023, Ember Global Electricity Review 2024",
}


@dataclass(frozen=True, slots=True)
class Facility:
    """Where the GPUs run: power usage effectiveness, grid carbon intensity and prices (None = not costed)."""

    pue: float = PUE_HYPERSCALE
    grid_g_per_kwh: float = GRID_WORLD_AVERAGE_G_PER_KWH
    usd_per_gpu_hour: float | None = None
    usd_per_kwh: float | None = None

    def __post_init__(self) -> None:
        if not self.pue >= 1.0:
            raise SpecError("pue", f"must be >= 1 (facility energy / IT energy), got {self.pue}")
        if not self.grid_g_per_kwh >= 0:
            raise SpecError("grid", f"must be >= 0 gCO2e/kWh, got {self.grid_g_per_kwh}")
        for name in ("usd_per_gpu_hour", "usd_per_kwh"):
            value = getattr(self, name)
            if value is not None and not value >= 0:
                raise SpecError(name.replace("_", "-"), f"must be >= 0, got {value}")


@dataclass(frozen=True, slots=True)
class Footprint:
    """Energy in kWh, emissions in tonnes CO2e, cost in USD (None where no price was given)."""

    gpu_hours: float
    power_w: float
    pue: float
    it_kwh: float
    facility_kwh: float
    grid_g_per_kwh: float
    tco2e: float
    cost_usd: float | None


def footprint(gpu_hours: float, power_w: float, facility: Facility) -> Footprint:
    """Energy, carbon and cost of `gpu_hours` at `power_w` per GPU in `facility`."""
    if not gpu_hours >= 0:
        raise SpecError("gpu-hours", f"must be >= 0, got {gpu_hours}")
    if not power_w > 0:
        raise SpecError("power-w", f"must be > 0 W, got {power_w}")
    it_kwh = gpu_hours * power_w / 1000.0
    facility_kwh = it_kwh * facility.pue
    tco2e = facility_kwh * facility.grid_g_per_kwh / 1e6
    cost = None
    if facility.usd_per_gpu_hour is not None or facility.usd_per_kwh is not None:
        cost = gpu_hours * (facility.usd_per_gpu_hour or 0.0) + facility_kwh * (facility.usd_per_kwh or 0.0)
    return Footprint(gpu_hours, power_w, facility.pue, it_kwh, facility_kwh, facility.grid_g_per_kwh, tco2e, cost)


def infer_grid_intensity(gpu_hours: float, power_w: float, pue: float, tco2e: float) -> float:
    """The grid intensity (gCO2e/kWh) that turns this GPU time into the reported tCO2e."""
    facility_kwh = gpu_hours * power_w / 1000.0 * pue
    if not facility_kwh > 0:
        raise SpecError("gpu-hours", "need GPU time and power > 0 to infer a grid intensity")
    return tco2e * 1e6 / facility_kwh
