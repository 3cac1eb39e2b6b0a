"""The grid's carbon intensity over time, from a CSV, and the cleanest hour to start flexible work.

CSV: a header `offset_h,g_per_kwh` and rows of hours from the trace's start (its first arrival) with the intensity
from then on (gCO2e/kWh). Offsets all below 24 are a daily profile that repeats (hour of the
day); otherwise the last value holds after the last row.
"""

from __future__ import annotations

import bisect
import csv
import math
from dataclasses import dataclass
from pathlib import Path

from aifactory.core.errors import SpecError

MAX_ROWS = 1_000_000


@dataclass(frozen=True, slots=True)
class GridSeries:
    offsets_s: tuple[float, ...]  # from the trace's start, ascending, the first 0
    values: tuple[float, ...]  # gCO2e/kWh from each offset on
    daily: bool  # a 24-hour profile that repeats

    def at(self, t: float) -> float:
        """Intensity at `t` seconds from the trace's start."""
        if self.daily:
            t = t % 86400.0
        i = bisect.bisect_right(self.offsets_s, t) - 1
        return self.values[max(0, i)]

    def next_change(self, t: float) -> float:
        """The next time after `t` the intensity may change (math.inf if never)."""
        base = 0.0
        if self.daily:
            base, t = t - t % 86400.0, t % 86400.0
        i = bisect.bisect_right(self.offsets_s, t)
        if i < len(self.offsets_s):
            return base + self.offsets_s[i]
        return base + 86400.0 if self.daily else math.inf

    def integral(self, t0: float, t1: float) -> float:
        """Integral of the intensity over [t0, t1] (g/kWh x s)."""
        total, t = 0.0, t0
        while t < t1:
            nxt = min(self.next_change(t), t1)
            total += self.at(t) * (nxt - t)
            t = nxt
        return total

    def cleanest_start(self, t: float, max_delay_s: float) -> float:
        """The time in [t, t + max_delay_s] with the lowest intensity (the earliest of ties)."""
        best_t, best_g = t, self.at(t)
        candidate = self.next_change(t)
        while candidate <= t + max_delay_s:
            g = self.at(candidate)
            if g < best_g:
                best_t, best_g = candidate, g
            candidate = self.next_change(candidate)
        return best_t


def read_grid(path: Path) -> GridSeries:
    path = Path(path)
    if not path.is_file():
        raise SpecError("grid-csv", f"no such file: {path}")
    rows: list[tuple[float, float]] = []
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            for i, row in enumerate(csv.DictReader(fh), start=2):
                if i > MAX_ROWS:
                    raise SpecError("grid-csv", f"{path.name}: more than {MAX_ROWS} rows")
                try:
                    offset, value = float(row["offset_h"]), float(row["g_per_kwh"])
                except (KeyError, TypeError, ValueError):
                    raise SpecError("grid-csv", f"{path.name}: line {i} needs numbers offset_h and g_per_kwh") from None
                if not (math.isfinite(offset) and math.isfinite(value) and offset >= 0 and value >= 0):
                    raise SpecError("grid-csv", f"{path.name}: line {i}: values must be numbers >= 0")
                rows.append((offset * 3600, value))
    except UnicodeDecodeError:
        raise SpecError("grid-csv", f"{path.name}: not a text CSV file") from None
    if not rows:
        raise SpecError("grid-csv", f"{path.name}: no rows")
    rows.sort()
    if rows[0][0] != 0:
        rows.insert(0, (0.0, rows[0][1]))
    daily = rows[-1][0] < 86400
    return GridSeries(tuple(r[0] for r in rows), tuple(r[1] for r in rows), daily)
