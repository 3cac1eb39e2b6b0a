"""Calibrate the power model from the factory's own history: each GPU model's idle and busy power.

The floor's telemetry keeps one row per GPU per minute: mean utilisation (percent) and power
(W). Per GPU model, a least-squares line power = idle + slope x utilisation gives the idle power
(at 0 %) and the busy power (at 100 %), the two figures the twin's power model uses. The fit is
written as a catalogue file (`$AIFACTORY_HOME/calibrated.toml`) that the plan and the twin read
over the packaged catalogue (the user's own `catalog.toml` still wins), each figure sourced to
the telemetry it came from, so the twin's energy of the floor's history matches the floor's.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from aifactory.core.errors import SpecError

MIN_SAMPLES = 30  # GPU-minutes of one model
MIN_SPREAD_PCT = 30.0  # utilisation must span this much, or the slope says nothing


@dataclass(frozen=True, slots=True)
class Fit:
    model: str
    samples: int
    idle_w: float  # at 0 % utilisation
    busy_w: float  # at 100 %
    r2: float


def fit(rows: Iterable[tuple[str, float, float]]) -> dict[str, Fit]:
    """(GPU model, utilisation %, power W) rows -> a fit per model; SpecError naming a model that
    has too few rows or too little spread of utilisation to fit."""
    by_model: dict[str, list[tuple[float, float]]] = {}
    for model, util, power in rows:
        if np.isfinite(util) and np.isfinite(power) and power > 0:
            by_model.setdefault(model, []).append((util, power))
    if not by_model:
        raise SpecError("telemetry", "no GPU power samples in the store (is telemetry on, with NVML?)")
    out = {}
    for model, points in sorted(by_model.items()):
        us = np.array([p[0] for p in points])
        ps = np.array([p[1] for p in points])
        if len(points) < MIN_SAMPLES:
            raise SpecError(model, f"{model}: {len(points)} GPU-minutes of telemetry; need {MIN_SAMPLES} to fit")
        if us.max() - us.min() < MIN_SPREAD_PCT:
            raise SpecError(
                model,
                f"{model}: utilisation only spans {us.min():.0f}-{us.max():.0f} %; the fit needs idle and busy minutes",
            )
        slope, intercept = np.polyfit(us, ps, 1)
        predicted = intercept + slope * us
        total = float(np.sum((ps - ps.mean()) ** 2))
        r2 = 1 - float(np.sum((ps - predicted) ** 2)) / total if total else 1.0
        idle, busy = float(intercept), float(intercept + 100 * slope)
        if idle <= 0 or busy < idle:
            raise SpecError(model, f"{model}: the fit gives idle {idle:.0f} W and busy {busy:.0f} W, which cannot be")
        out[model] = Fit(model, len(points), idle, busy, r2)
    return out


def to_toml(fits: dict[str, Fit], where: str, when: float | None = None) -> str:
    """The fits as a catalogue file: `[gpus.MODEL] idle_w, measured_power_w` with their sources."""
    stamp = time.strftime("%Y-%m-%d", time.gmtime(when if when is not None else time.time()))
    lines = ["# Fitted by `aifactory twin calibrate` from this factory's GPU telemetry; read over the catalogue.", ""]
    for f in fits.values():
        said = f"fitted on {stamp} from {f.samples} GPU-minutes of {where} (power = idle + slope x utilisation, R^2 {f.r2:.3f})"
        lines += [
            f'[gpus."{f.model}"]',
            f"idle_w = {f.idle_w:.1f}",
            f"measured_power_w = {f.busy_w:.1f}",
            f'[gpus."{f.model}".sources]',
            f'idle_w = "{said}"',
            f'measured_power_w = "{said}"',
            "",
        ]
    return "\n".join(lines)
