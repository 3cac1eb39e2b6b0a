"""The pending jobs of one pool, indexed by project and by shape, for cheap passes.

A shape is everything that decides whether a job fits (GPU count or fraction, GPU
model, multi-node, CPU and memory) plus its priority. Jobs of one project and shape wait in
submission order, so a policy can look at the head of each (project, shape) bucket
instead of the whole queue, and once a shape does not fit in a pass, skip every
job of that shape: a pass costs O(projects x shapes + starts), not O(pending).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aifactory.core.job import Job, JobSpec

# whole GPUs, fraction, GPU memory MiB, model, multi-node, milli-CPU per node, host memory MiB per node
FitKey = tuple[int, float, int | None, str | None, bool, int, int]
Shape = tuple[int, FitKey]  # (priority, fit key)


def fit_key(spec: JobSpec) -> FitKey:
    frac = spec.gpus if spec.gpus < 1 else 0.0  # 0.0 with no whole GPU either: a CPU-only job
    return (
        spec.whole_gpus,
        frac,
        spec.gpu_memory_mib,
        spec.gpu_model,
        spec.multi_node,
        spec.cpu_milli,
        spec.memory_mib,
    )


def cpu_only(fk: FitKey) -> bool:
    """Is this the shape of a job that needs no GPU?"""
    return not fk[0] and not fk[1] and fk[2] is None


@dataclass(slots=True)
class ProjectQueue:
    """One project's pending jobs in one pool: buckets by shape, each in submission order."""

    buckets: dict[Shape, dict[int, Job]]
    fits: dict[FitKey, int] = field(default_factory=dict)  # fit key -> buckets with it (a pass skips
    # a project none of whose fit keys could fit)
    count: int = 0
    gpus: float = 0.0  # GPUs asked for by the pending jobs (demand, fractions as fractions)


class PendingIndex:
    def __init__(self) -> None:
        self.pools: dict[str | None, dict[str, ProjectQueue]] = {}
        self.fits: dict[str | None, dict[FitKey, int]] = {}  # per pool: fit key -> buckets with it
        self.cpu_only: dict[str | None, int] = {}  # per pool: buckets of jobs that need no GPU
        self._totals: dict[str, tuple[int, float]] = {}
        self._shapes: dict[int, Shape] = {}  # pending job id -> its shape (worked out once, on add)

    def add(self, key: str | None, job: Job) -> None:
        projects = self.pools.get(key)
        if projects is None:
            projects = self.pools[key] = {}
        pq = projects.get(job.spec.project)
        if pq is None:
            pq = projects[job.spec.project] = ProjectQueue({})
        shape: Shape = (job.spec.priority, fit_key(job.spec))
        self._shapes[job.id] = shape
        bucket = pq.buckets.get(shape)
        if bucket is None:
            bucket = pq.buckets[shape] = {}
            pq.fits[shape[1]] = pq.fits.get(shape[1], 0) + 1
            fits = self.fits.setdefault(key, {})
            fits[shape[1]] = fits.get(shape[1], 0) + 1
            if cpu_only(shape[1]):
                self.cpu_only[key] = self.cpu_only.get(key, 0) + 1
        last = next(reversed(bucket), None)
        bucket[job.id] = job
        if last is not None and job.id < last:
            pq.buckets[shape] = dict(sorted(bucket.items()))  # a requeued job keeps its place
        pq.count += 1
        pq.gpus += job.demand
        count, gpus = self._totals.get(job.spec.project, (0, 0.0))
        self._totals[job.spec.project] = (count + 1, gpus + job.demand)

    def remove(self, key: str | None, job: Job) -> None:
        projects = self.pools.get(key, {})
        pq = projects.get(job.spec.project)
        shape = self._shapes.get(job.id)
        if pq is None or shape is None:
            return
        bucket = pq.buckets.get(shape)
        if bucket is None or bucket.pop(job.id, None) is None:
            return
        del self._shapes[job.id]
        if not bucket:
            del pq.buckets[shape]
            if cpu_only(shape[1]):
                self.cpu_only[key] -= 1
            for fits in (pq.fits, self.fits[key]):
                fits[shape[1]] -= 1
                if not fits[shape[1]]:
                    del fits[shape[1]]
        pq.count -= 1
        pq.gpus = max(0.0, pq.gpus - job.demand)
        if pq.count == 0:
            del projects[job.spec.project]
        count, gpus = self._totals[job.spec.project]
        self._totals[job.spec.project] = (count - 1, max(0.0, gpus - job.demand))

    def projects(self, key: str | None) -> dict[str, ProjectQueue]:
        return self.pools.get(key, {})

    def totals(self, project: str) -> tuple[int, float]:
        """Pending jobs of `project` and the GPUs they ask for."""
        return self._totals.get(project, (0, 0.0))
