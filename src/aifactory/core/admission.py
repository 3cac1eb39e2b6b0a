"""Admission: would a job spec ever run here? Raises SpecError naming the field, changes nothing."""

from __future__ import annotations

from aifactory.core.errors import SpecError
from aifactory.core.job import JobSpec
from aifactory.core.project import PREEMPTIBLE
from aifactory.core.view import FloorState


def check_fits(factory: FloorState, spec: JobSpec) -> None:
    """Could the nodes the job may use ever hold it (its model, one node unless multi-node)?"""
    pool = factory.pool_of(spec.project)
    if spec.cpu_only:
        cap = factory.capacity(pool, None, cpu_only=True)
        where = f" in pool {pool!r}" if pool else ""
        if not cap.nodes:
            raise SpecError("gpus", f"no node{where} to run on")
        # A job with no GPU counts against no GPU quota: only tracked CPU or memory bounds it, so a
        # floor that tracks neither would let one tenant start any number of them.
        if not ((spec.cpu_milli and cap.cpu_milli) or (spec.memory_mib and cap.memory_mib)):
            raise SpecError(
                "gpus", f"no node{where} tracks the CPU or memory it asks for (start the factory with --cpus-per-node)"
            )
        return
    cap = factory.capacity(pool, spec.gpu_model)
    if spec.gpu_model is not None and not cap.nodes:
        known = sorted({n.gpu_model for n in factory.cluster.pool_nodes(pool)})
        raise SpecError("gpu_model", f"no GPU of model {spec.gpu_model!r} here (have: {', '.join(known)})")
    where = f" in pool {pool!r}" if pool is not None else ""
    if spec.fractional:
        if spec.gpu_memory_mib is not None and cap.biggest_mib and spec.gpu_memory_mib > cap.biggest_mib:
            raise SpecError(
                "gpu_memory", f"asks {spec.gpu_memory_mib} MiB, largest GPU{where} has {cap.biggest_mib} MiB"
            )
        if not cap.nodes:
            raise SpecError("gpus", f"no GPU{where} to run on")
        return
    largest, total = cap.largest, cap.total
    if spec.multi_node:
        if spec.whole_gpus > total:
            raise SpecError("gpus", f"asks {spec.whole_gpus} GPUs, the cluster{where} has {total}")
    elif spec.whole_gpus > largest:
        raise SpecError(
            "gpus",
            f"asks {spec.whole_gpus} GPUs on one node, the largest node{where} has {largest}"
            + (f" (the cluster has {total}; set multi_node to span nodes)" if spec.whole_gpus <= total else ""),
        )


def check_host(factory: FloorState, spec: JobSpec) -> None:
    """CPU and memory are asked per node: not negative, and no more than the biggest node that tracks them has
    (where no node tracks a resource, a request for it is not enforced)."""
    if spec.cpu_milli == 0 and spec.memory_mib == 0:  # the usual case: nothing asked
        return
    for field, asked, unit in (("cpus", spec.cpu_milli, "milli-CPU"), ("memory", spec.memory_mib, "MiB")):
        if not isinstance(asked, int) or isinstance(asked, bool) or asked < 0:
            raise SpecError(field, f"must be a whole number >= 0 ({unit} per node), got {asked!r}")
    pool = factory.pool_of(spec.project)
    cap = factory.capacity(pool, spec.gpu_model, spec.cpu_only)
    where = f" in pool {pool!r}" if pool is not None else ""
    if cap.largest_cpu and spec.cpu_milli > cap.largest_cpu:
        raise SpecError(
            "cpus",
            f"asks {spec.cpu_milli / 1000:g} CPUs per node, the largest node{where} has {cap.largest_cpu / 1000:g}",
        )
    if cap.largest_memory and spec.memory_mib > cap.largest_memory:
        raise SpecError(
            "memory", f"asks {spec.memory_mib} MiB per node, the largest node{where} has {cap.largest_memory} MiB"
        )


def check_share(factory: FloorState, spec: JobSpec) -> None:
    """A job larger than its project's hard limit, or a non-preemptible one larger than the quota, never runs."""
    project = factory.projects[spec.project]
    need = factory.demand_of(spec)
    if project.limit is not None and need > project.limit:
        raise SpecError("gpus", f"asks {need:g} GPUs, project {project.name} is limited to {project.limit:g}")
    dept = factory.department_of(spec.project)
    if dept is not None and dept.limit is not None and need > dept.limit:
        raise SpecError("gpus", f"asks {need:g} GPUs, department {dept.name} is limited to {dept.limit:g}")
    if spec.priority_class not in PREEMPTIBLE and getattr(factory.policy, "uses_quota", False):
        quota = project.quota_by_model.get(spec.gpu_model, project.quota) if spec.gpu_model else project.quota
        if need > quota:
            raise SpecError(
                "priority_class",
                f"{spec.priority_class} jobs run only within quota; asks {need:g} GPUs, "
                f"project {project.name} has a quota of {quota:g} (use priority_class train to borrow)",
            )
