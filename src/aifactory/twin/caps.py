"""What-if: GPU power caps, with the slowdown and the power they save taken from published measurements.

McDonald et al. 2022 (Great Power, Great Responsibility, arXiv:2205.09646) capped V100s at 150 W of
their 250 W default while training language models at scale: 13.7 % less energy for 6.8 % more
training time on average. So at a cap of 60 % of TDP a job runs 1.068 x as long and its GPUs draw
0.863 / 1.068 = 0.808 x the power. Between no cap and that point both are interpolated linearly;
below it nothing was measured, so caps under 60 % of TDP are refused rather than guessed.
"""

from __future__ import annotations

from aifactory.core.errors import SpecError

SOURCE = "McDonald et al. 2022 (arXiv:2205.09646): V100 at 150 of 250 W, 13.7 % less energy, 6.8 % more time"
MEASURED_CAP = 0.6  # of TDP
SLOWER_AT_MEASURED = 0.068
POWER_AT_MEASURED = (1 - 0.137) / (1 + SLOWER_AT_MEASURED)


def check_cap(cap: float) -> float:
    if not MEASURED_CAP <= cap <= 1:
        raise SpecError(
            "power-cap", f"must be a fraction of TDP from {MEASURED_CAP} to 1 (what was measured), got {cap}"
        )
    return cap


def time_factor(cap: float) -> float:
    """How much longer a job runs under the cap."""
    return 1 + (1 - check_cap(cap)) / (1 - MEASURED_CAP) * SLOWER_AT_MEASURED


def power_factor(cap: float) -> float:
    """The busy GPU's draw under the cap, as a share of its draw without one."""
    return 1 - (1 - check_cap(cap)) / (1 - MEASURED_CAP) * (1 - POWER_AT_MEASURED)
