"""Accounting, as Slurm's `sreport` answers it: per project, user or department over a period,
GPU-hours allocated (from the event log: every stretch a job held its GPUs, cut to the period),
GPU-hours busy and energy (a job wholly inside the period: its own usage record, kept as it ran;
one across the period's edges: the GPUs' stored minutes within the period that it held them
alone), and cost (allocated GPU-hours at the price of the GPU model, from
config.toml's `[prices]`). A GPU shared by fractional jobs is nobody's alone: its busy hours and
energy are not split among them (their allocated hours are counted).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aifactory.core.errors import SpecError
from aifactory.core.states import JobState
from aifactory.live.store import Store
from aifactory.live.store.repository import HeldJob

BY = ("project", "user", "department")
DAY = 86400.0
_HOLDING = (JobState.RUNNING.value, JobState.PREEMPTED.value)


@dataclass(frozen=True, slots=True)
class UsageRow:
    key: str  # the project, user or department ("-": a project in none)
    jobs: int  # jobs that held GPUs in the period
    gpu_hours: float  # allocated
    busy_gpu_hours: float  # allocated x measured utilisation (0 where nothing was measured)
    energy_kwh: float
    cost: float  # allocated GPU-hours x the price of their GPU model (0 where no price is set)

    @property
    def busy_ratio(self) -> float | None:
        return self.busy_gpu_hours / self.gpu_hours if self.gpu_hours else None


def stretches(events: Iterable[tuple[int, str, float]], since: float, until: float) -> list[tuple[int, float, float]]:
    """(job id, from, to): every stretch a job held its GPUs, cut to [since, until), from its
    transitions (job id, new state, time) in log order (a stretch still open runs to `until`)."""
    start: dict[int, float] = {}
    out: list[tuple[int, float, float]] = []
    for job_id, new, at in events:
        if new in _HOLDING and job_id not in start:
            start[job_id] = at
        elif new not in _HOLDING and job_id in start:
            out.append((job_id, max(start.pop(job_id), since), min(at, until)))
    out += [(job_id, max(began, since), until) for job_id, began in start.items()]
    return [s for s in out if s[2] > s[1]]


def held_seconds(events: Iterable[tuple[int, str, float]], since: float, until: float) -> dict[int, float]:
    """job id -> seconds it held its GPUs within [since, until)."""
    out: dict[int, float] = {}
    for job_id, a, b in stretches(events, since, until):
        out[job_id] = out.get(job_id, 0.0) + b - a
    return out


def daily(store: Store, since: float, until: float, projects: frozenset[str] | None = None) -> dict[str, Any]:
    """GPU-hours allocated per project per day (days of 86,400 s from `since`): the dashboard's chart."""
    jobs, events = store.held_between(since, until)
    rows = {j.id: j for j in jobs if projects is None or j.project in projects}
    days = max(1, math.ceil((until - since) / DAY))
    per: dict[str, list[float]] = {}
    for job_id, a, b in stretches((e for e in events if e[0] in rows), since, until):
        row = rows[job_id]
        series = per.setdefault(row.project, [0.0] * days)
        while a < b:
            k = int((a - since) // DAY)
            end = min(b, since + (k + 1) * DAY)
            series[k] += (end - a) * row.gpus / 3600
            a = end
    return {"days": [since + k * DAY for k in range(days)], "projects": dict(sorted(per.items()))}


def report(
    store: Store,
    since: float,
    until: float,
    by: str = "project",
    prices: Mapping[str, float] | None = None,
    projects: frozenset[str] | None = None,
) -> list[UsageRow]:
    """The period's usage grouped `by` (project, user or department), largest first; `projects`:
    only these projects' jobs (a tenant's view)."""
    if by not in BY:
        raise SpecError("by", f"must be one of {', '.join(BY)}, got {by!r}")
    if not until > since:
        raise SpecError("since", "the period must end after it starts")
    jobs, events = store.held_between(since, until)
    rows = {j.id: j for j in jobs if projects is None or j.project in projects}
    held = held_seconds((e for e in events if e[0] in rows), since, until)
    # A job wholly inside the period: its own usage record; one across an edge: its GPUs' minutes in it.
    inside = [j for j in held if _within(rows[j], since, until)]
    whole = store.job_usage(inside)
    measured = {j: (u.busy_gpu_s, u.energy_j) for j, u in whole.items()}
    measured |= store.gpu_usage_by_job(since, until, [j for j in held if j not in whole])
    models = {n.name: n.gpu_model for n in store.load_nodes()}
    departments = {p.name: p.department for p in store.load_projects()}
    prices = prices or {}
    groups: dict[str, list[float]] = {}
    for job_id, seconds in held.items():
        row = rows[job_id]
        key = _key(row, by, departments)
        gpu_s = seconds * row.gpus
        busy_s, energy_j = measured.get(job_id, (0.0, 0.0))
        model = models.get(row.node, "")
        acc = groups.setdefault(key, [0, 0.0, 0.0, 0.0, 0.0])
        acc[0] += 1
        acc[1] += gpu_s / 3600
        acc[2] += busy_s / 3600
        acc[3] += energy_j / 3.6e6
        acc[4] += gpu_s / 3600 * prices.get(model, 0.0)
    out = [UsageRow(k, int(a[0]), a[1], a[2], a[3], a[4]) for k, a in groups.items()]
    return sorted(out, key=lambda u: (-u.gpu_hours, u.key))


def _within(row: HeldJob, since: float, until: float) -> bool:
    start, end = row.started_at, row.finished_at
    return start is not None and end is not None and since <= start and end < until


def _key(row: HeldJob, by: str, departments: Mapping[str, str | None]) -> str:
    if by == "project":
        return row.project
    if by == "user":
        return row.user
    return departments.get(row.project) or "-"
