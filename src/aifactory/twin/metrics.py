"""Metrics of a replay, computed from the StateChanged log the Factory emits.

The recorder keeps O(1) work per transition: per-job first start and end, and
per-project GPU-seconds held (integrated at each release). Time series (GPU
allocation, per-project usage, queue length, fragmentation) come from samples
taken every `sample_every_s` of virtual time. Units: seconds and GPUs.

Two waits, named for what they are: `first_wait_s` runs from submission to the first start;
`queued_s` adds up all the time a job spent queued, after each preemption too.

Fragmentation: the share of free GPU capacity that is not on a wholly free node
(a full-node job cannot use it). Jain's index is taken over the projects' mean
slowdown (JCT / run time): 1.0 when every project is slowed down alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from aifactory.core.actions import StateChanged
from aifactory.core.cluster import Cluster
from aifactory.core.job import MILLI
from aifactory.core.states import TERMINAL, JobState

# Module constants: the recorder runs once per transition (hundreds of thousands per replay).
_RUNNING = JobState.RUNNING
_PREEMPTED = JobState.PREEMPTED
_QUEUED = JobState.QUEUED
_HOLDING = frozenset((JobState.RUNNING, JobState.PREEMPTED))


@dataclass(slots=True)
class Samples:
    """Series sampled every `period_s` of virtual time."""

    period_s: float
    at: list[float] = field(default_factory=list)
    allocated: list[float] = field(default_factory=list)  # GPUs held
    pending: list[int] = field(default_factory=list)  # jobs queued
    fragmentation: list[float] = field(default_factory=list)  # 0..1
    by_project: dict[str, list[float]] = field(default_factory=dict)  # GPUs held per project
    power_kw: list[float] = field(default_factory=list)  # facility power (with a power model)


def free_and_fragmentation(cluster: Cluster) -> tuple[float, float]:
    """Free GPUs, and the share of free milli-GPU on nodes not wholly free (0 when nothing is free)."""
    free = whole = 0
    for node in cluster.nodes.values():
        if not node.up:
            continue
        if node.free_whole == node.gpu_count:  # wholly free: no need to add up its GPUs
            f = node.gpu_count * MILLI
            whole += f
        else:
            f = sum(node.free)
        free += f
    return free / MILLI, (0.0 if free == 0 else 1.0 - whole / free)


class Recorder:
    """Consumes StateChanged actions; job ids are indices into the trace."""

    def __init__(self, gpus: list[float], projects: list[str], total_gpus: float) -> None:
        n = len(gpus)
        self.gpus = gpus  # per job
        self.project_of = projects  # per job
        self.total_gpus = total_gpus
        self.submitted = [math.nan] * n
        self.started = [math.nan] * n  # first start
        self.ended = [math.nan] * n
        self.final: list[JobState | None] = [None] * n
        self._since = [0.0] * n  # start of the current holding, or of the current stay in the queue
        self.queued = [0.0] * n  # seconds queued, all stays together
        self.start_order: list[int] = []  # job ids in the order of their first start
        self.gpu_s: dict[str, float] = {}  # project -> GPU-seconds held
        self.job_gpu_s = [0.0] * n  # per job: GPU-seconds held, every attempt (its energy at the held power)
        self.first_at = math.inf
        self.last_at = 0.0

    def record(self, a: StateChanged) -> None:
        i, new, at = a.job_id, a.new, a.at
        if new is _RUNNING:
            if self.started[i] != self.started[i]:  # NaN: first start
                self.started[i] = at
                self.start_order.append(i)
            self.queued[i] += at - self._since[i]
            self._since[i] = at
            return
        old = a.old
        if old is None:
            self.submitted[i] = at
            self._since[i] = at
            if at < self.first_at:
                self.first_at = at
        elif old is _QUEUED:  # cancelled while queued
            self.queued[i] += at - self._since[i]
        elif old in _HOLDING and new is not _PREEMPTED:
            p = self.project_of[i]
            held = self.gpus[i] * (at - self._since[i])
            self.gpu_s[p] = self.gpu_s.get(p, 0.0) + held
            self.job_gpu_s[i] += held
            if new is _QUEUED:  # back in the queue after a preemption
                self._since[i] = at
        if new in TERMINAL:
            self.ended[i] = at
            self.final[i] = new
            self.last_at = at


def sample(samples: Samples, now: float, cluster: Cluster, usage: dict[str, float], pending: int) -> None:
    free, frag = free_and_fragmentation(cluster)
    samples.at.append(now)
    samples.allocated.append(cluster.total_gpus() - free)
    samples.pending.append(pending)
    samples.fragmentation.append(frag)
    for name, used in usage.items():
        samples.by_project.setdefault(name, [0.0] * (len(samples.at) - 1)).append(used)


def jain(values: list[float]) -> float:
    """Jain's fairness index (sum x)^2 / (n sum x^2): 1 = all equal, 1/n = one takes all."""
    xs = [v for v in values if v == v]
    sq = sum(v * v for v in xs)
    return 1.0 if not xs or sq == 0 else sum(xs) ** 2 / (len(xs) * sq)


def _stats(prefix: str, values: Any) -> dict[str, float]:
    import numpy as np

    if len(values) == 0:
        return {f"{prefix}_{k}": math.nan for k in ("mean", "median", "p95", "p99")}
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {
        f"{prefix}_mean": float(np.mean(values)),
        f"{prefix}_median": float(p50),
        f"{prefix}_p95": float(p95),
        f"{prefix}_p99": float(p99),
    }


def _mean_started(values: Any) -> float:
    """Mean over the jobs that started (NaN elsewhere); not np.nanmean, whose warning machinery
    replaces objects someone may have frozen."""
    import numpy as np

    started = values[~np.isnan(values)]
    return float(started.mean()) if started.size else math.nan


def per_job(rec: Recorder, durations: list[float]) -> dict[str, Any]:
    """Per-job arrays (numpy): wait to the first start, time queued in all, JCT and slowdown of the
    jobs that finished; NaN elsewhere."""
    import numpy as np

    sub = np.asarray(rec.submitted)
    start = np.asarray(rec.started)
    end = np.asarray(rec.ended)
    dur = np.asarray(durations, dtype=float)
    jct = end - sub
    return {
        "first_wait": start - sub,
        "queued": np.asarray(rec.queued) + (start - start),  # NaN where never started
        "jct": jct,
        "slowdown": jct / np.maximum(dur, 1.0),  # run times under 1 s count as 1 s
        "done": ~np.isnan(end),
    }


def summarize(rec: Recorder, durations: list[float], quotas: dict[str, float]) -> dict[str, Any]:
    """The run's figures: waits, JCTs, makespan, utilisation, per-project shares, fairness."""
    import numpy as np

    jobs = per_job(rec, durations)
    done = jobs["done"]
    started = ~np.isnan(jobs["first_wait"])
    out: dict[str, Any] = {"jobs": len(durations), "finished": int(done.sum())}
    out["succeeded"] = sum(1 for s in rec.final if s is JobState.SUCCEEDED)
    out.update(_stats("first_wait_s", jobs["first_wait"][started]))
    out.update(_stats("queued_s", jobs["queued"][started]))
    out.update(_stats("jct_s", jobs["jct"][done]))
    out["slowdown_mean"] = float(np.mean(jobs["slowdown"][done])) if done.any() else math.nan
    span = rec.last_at - rec.first_at if done.any() else 0.0
    out["makespan_s"] = span
    used = sum(rec.gpu_s.values())
    out["gpu_hours"] = used / 3600
    out["utilisation"] = used / (rec.total_gpus * span) if span > 0 and rec.total_gpus else 0.0
    out["projects"] = _projects(rec, jobs, quotas, span)
    out["jain_slowdown"] = jain([p["slowdown_mean"] for p in out["projects"].values()])
    return out


def _projects(rec: Recorder, jobs: dict[str, Any], quotas: dict[str, float], span: float) -> dict[str, Any]:
    import numpy as np

    names = np.asarray(rec.project_of)
    done = jobs["done"]
    out: dict[str, Any] = {}
    for name in sorted(set(rec.project_of) | set(quotas)):
        mine = names == name
        fin = mine & done
        held = rec.gpu_s.get(name, 0.0) / span if span > 0 else 0.0
        quota = quotas.get(name, 0.0)
        out[name] = {
            "jobs": int(mine.sum()),
            "quota": quota,
            "mean_gpus": held,  # GPUs held on average over the makespan
            "share_of_quota": held / quota if quota else math.nan,
            "first_wait_mean_s": float(np.nanmean(jobs["first_wait"][mine])) if fin.any() else math.nan,
            "queued_mean_s": _mean_started(jobs["queued"][mine]) if fin.any() else math.nan,
            "slowdown_mean": float(np.mean(jobs["slowdown"][fin])) if fin.any() else math.nan,
        }
    return out


def duration_text(seconds: float) -> str:
    """A duration a person reads at a glance: 42 s, 12.5 min, 3.2 h, 4.1 d."""
    if seconds != seconds:  # NaN
        return "-"
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if abs(seconds) >= 1.5 * size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.3g} s" if abs(seconds) < 10 else f"{seconds:.0f} s"
