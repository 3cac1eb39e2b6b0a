"""Fair-share usage history, updated from the `now` passed in.

History is decayed GPU-seconds with a half-life h: between two updates dt apart a
project holding u GPUs goes from H to H * d + u * (h / ln 2) * (1 - d), d = 2^(-dt/h),
which is the exact integral of u over the interval with exponential decay. A project
that has held u GPUs for long converges to u * h / ln 2, so H * ln 2 / h reads as
"GPUs held on average lately". Each project is updated lazily, only when its usage
changes or someone reads it, so an event costs O(1) here, not O(projects).
"""

from __future__ import annotations

import math


class UsageHistory:
    def __init__(self, half_life_s: float) -> None:
        if half_life_s < 0:
            raise ValueError(f"negative half-life {half_life_s}")
        self.half_life_s = half_life_s
        self._mean_life_s = half_life_s / math.log(2)  # h / ln 2: what one GPU held for ever converges to
        self._h: dict[str, tuple[float, float]] = {}  # project -> (GPU-seconds, at)

    def _at(self, project: str, usage: float, now: float) -> float:
        value, at = self._h.get(project, (0.0, now))
        dt = now - at
        if dt <= 0 or self.half_life_s == 0:
            return value
        decay = 2.0 ** (-dt / self.half_life_s)
        return value * decay + usage * self._mean_life_s * (1.0 - decay)

    def advance(self, project: str, usage: float, now: float) -> None:
        """Integrate `usage` GPUs held since the last update up to `now` (call before usage changes)."""
        if self.half_life_s == 0:
            return
        self._h[project] = (self._at(project, usage, now), now)

    def gpu_seconds(self, project: str, usage: float, now: float) -> float:
        return self._at(project, usage, now) if self.half_life_s else 0.0

    def average_gpus(self, project: str, usage: float, now: float) -> float:
        """GPUs held on average over the last few half-lives."""
        if self.half_life_s == 0:
            return 0.0
        return self._at(project, usage, now) * math.log(2) / self.half_life_s

    def restore(self, project: str, gpu_seconds: float, at: float) -> None:
        self._h[project] = (gpu_seconds, at)
