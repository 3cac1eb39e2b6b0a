"""Why a job waits, in one line: what the pass saw, or computed on demand."""

from __future__ import annotations

from collections.abc import Mapping

from aifactory.core.job import MILLI, Job
from aifactory.core.states import JobState
from aifactory.core.view import FloorState


def fit_reason(factory: FloorState, job: Job) -> str:
    """Why `job` does not fit on the free GPUs right now (from the cluster's free-block index)."""
    spec = job.spec
    pool = factory.pool_of(spec.project)
    cluster = factory.cluster
    where = f" in pool {pool}" if pool else ""
    model = f" {spec.gpu_model}" if spec.gpu_model else ""
    if spec.host and fits_now(factory, job):
        return host_reason(factory, job, where)
    if spec.fractional:
        partial = (f for n in cluster.partial_nodes(pool, spec.gpu_model) for f in n.free if f < MILLI)
        best = MILLI if cluster.whole_free(pool, spec.gpu_model) else max(partial, default=0)
        need = spec.milli_on(factory.capacity(pool, spec.gpu_model).biggest_mib) / MILLI
        return f"needs {need:.2f} of a{model} GPU{where}; most free on one GPU is {best / MILLI:.2f}"
    if spec.multi_node:
        free = cluster.whole_free(pool, spec.gpu_model)
        return f"needs {spec.whole_gpus}{model} GPUs{where}; {free} free"
    block = cluster.max_block(pool, spec.gpu_model)
    return f"needs {spec.whole_gpus}{model} GPUs on one node{where}; largest free block is {block}"


def host_reason(factory: FloorState, job: Job, where: str) -> str:
    """The GPUs would fit but the CPU or memory does not: what the job asks per node, and the most free."""
    spec = job.spec
    nodes = [
        n for n in factory.cluster.pool_nodes(factory.pool_of(spec.project)) if n.up and (n.gpu_count or spec.cpu_only)
    ]
    asks = []
    if spec.cpu_milli:
        best = max((n.cpu_free for n in nodes if n.cpu_milli), default=0)
        asks.append(f"{spec.cpu_milli / 1000:g} CPUs (most free on a node: {best / 1000:g})")
    if spec.memory_mib:
        best = max((n.memory_free for n in nodes if n.memory_mib), default=0)
        asks.append(f"{spec.memory_mib} MiB memory (most free on a node: {best})")
    beside = "" if spec.cpu_only else " beside its GPUs"
    return f"needs {' and '.join(asks)} per node{where}{beside}"


def fits_now(factory: FloorState, job: Job) -> bool:
    """Is there room for the job's shape on the free GPUs (from the cluster's free-block index)?"""
    spec = job.spec
    pool = factory.pool_of(spec.project)
    cluster = factory.cluster
    if spec.cpu_only:
        return True  # no GPU to wait for: only its CPU and memory (host_reason)
    if spec.fractional:
        return bool(cluster.whole_free(pool, spec.gpu_model) or cluster.partial_nodes(pool, spec.gpu_model))
    if spec.multi_node:
        return cluster.whole_free(pool, spec.gpu_model) >= spec.whole_gpus
    return cluster.max_block(pool, spec.gpu_model) >= spec.whole_gpus


def limit_reason(factory: FloorState, job: Job, granted: Mapping[str, float] | None = None) -> str | None:
    """The project's or department's hard limit, if starting `job` would break it.

    `granted` is GPUs the current pass has already given each project (not yet in usage): a
    department's limit counts what its sibling projects got in the pass too.
    """
    project = factory.projects[job.spec.project]
    extra = granted.get(project.name, 0.0) if granted else 0.0
    if project.limit is not None:
        used = factory.usage.get(project.name, 0.0) + extra
        if used + job.demand > project.limit + 1e-9:
            return f"project {project.name} at its limit {used:g}/{project.limit:g}"
    if project.department is None:  # the usual case: a pass asks this of every job it places
        return None
    dept = factory.departments.get(project.department)
    if dept is not None and dept.limit is not None:
        held = factory.dept_usage.get(dept.name, 0.0)
        if granted:
            projects = factory.projects
            held += sum(g for name, g in granted.items() if projects[name].department == dept.name)
        if held + job.demand > dept.limit + 1e-9:
            return f"department {dept.name} at its limit {held:g}/{dept.limit:g}"
    return None


def pending_reason(factory: FloorState, job: Job) -> str:
    if job.state is not JobState.QUEUED:
        return ""
    if job.pending_reason:
        return job.pending_reason
    limit = limit_reason(factory, job)
    if limit is not None:
        return limit
    if not fits_now(factory, job):
        return fit_reason(factory, job)
    if getattr(factory.policy, "uses_quota", False):
        return project_ahead(factory, job)
    queue = factory.queues.get(factory.pool_of(job.spec.project), {})
    ahead = 0
    for other in queue:
        if other == job.id:
            break
        ahead += 1
    return f"{ahead} job{'s' if ahead != 1 else ''} ahead in the queue"


def project_ahead(factory: FloorState, job: Job) -> str:
    """Under fair share the pass picks among projects, and within one by priority then submission."""
    name = job.spec.project
    pq = factory.pending.projects(factory.pool_of(name)).get(name)
    mine = (-job.spec.priority, job.id)
    ahead = 0
    if pq is not None:
        for bucket in pq.buckets.values():
            ahead += sum(1 for other in bucket.values() if (-other.spec.priority, other.id) < mine)
    plural = "s" if ahead != 1 else ""
    return f"{ahead} job{plural} of project {name} ahead; waiting for its fair-share turn"


def pending_kind(factory: FloorState, job: Job) -> str:
    """What `pending_reason` says, as `reason_kind`'s word, without counting the jobs ahead
    (what /metrics asks of every queued job at each scrape)."""
    if job.state is not JobState.QUEUED:
        return "none"
    if job.pending_reason:
        return reason_kind(job.pending_reason)
    limit = limit_reason(factory, job)
    if limit is not None:
        return reason_kind(limit)
    return "resources" if not fits_now(factory, job) else "queue_order"


def reason_kind(reason: str) -> str:
    """A pending reason (as the functions above phrase it) as one word, for metrics labels:
    resources, power_budget, project_limit, department_limit, queue_order, or none."""
    if reason.startswith("needs "):
        return "resources"
    if reason.startswith("power budget:"):
        return "power_budget"
    if reason.startswith("project ") and " at its limit " in reason:
        return "project_limit"
    if reason.startswith("department ") and " at its limit " in reason:
        return "department_limit"
    if " ahead" in reason:
        return "queue_order"
    return "none"
