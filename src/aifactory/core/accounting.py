"""Fair-share usage history and per-project accounting, updated from the `now` passed in.

History is decayed GPU-seconds with a half-life h: between two updates dt apart a
project holding u GPUs goes from H to H * d + u * (h / ln 2) * (1 - d), d = 2^(-dt/h),
which is the exact integral of u over the interval with exponential decay. A project
that has held u GPUs for long converges to u * h / ln 2, so H * ln 2 / h reads as
"GPUs held on average lately". Each project is updated lazily, only when its usage
changes or someone reads it, so an event costs O(1) here, not O(projects).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from aifactory.core.project import Account

if TYPE_CHECKING:
    from aifactory.core.factory import Factory


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


def accounts(factory: Factory, now: float) -> list[Account]:
    """Quota, in use, borrowed, lent and pending per project, sorted by name.

    `lent` splits the GPUs borrowed in a pool over the idle guarantees of that pool's
    projects, in proportion to each one's idle guarantee.
    """
    idle: dict[str, float] = {}
    borrowed_in: dict[str | None, float] = {}
    idle_in: dict[str | None, float] = {}
    for p in factory.projects.values():
        used = factory.usage.get(p.name, 0.0)
        key = factory.pool_of(p.name)
        idle[p.name] = max(0.0, p.quota - used)
        idle_in[key] = idle_in.get(key, 0.0) + idle[p.name]
        borrowed_in[key] = borrowed_in.get(key, 0.0) + max(0.0, used - p.quota)
    out = []
    for p in sorted(factory.projects.values(), key=lambda p: p.name):
        used = factory.usage.get(p.name, 0.0)
        key = factory.pool_of(p.name)
        share = min(1.0, borrowed_in[key] / idle_in[key]) if idle_in[key] > 0 else 0.0
        count, gpus = factory.pending.totals(p.name)
        out.append(
            Account(
                settings=p,
                running=len(factory.running_by_project.get(p.name, ())),
                in_use=used,
                borrowed=max(0.0, used - p.quota),
                lent=idle[p.name] * share,
                pending_jobs=count,
                pending_gpus=gpus,
                history_gpu_s=factory.history.gpu_seconds(p.name, used, now),
            )
        )
    return out
