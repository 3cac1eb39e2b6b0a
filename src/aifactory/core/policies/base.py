"""The one signature every scheduling policy has, and what it sees.

A pass reads like the papers' figure: admit -> order -> place -> execute. The
policy orders the queue and asks the view to place jobs; `view.try_place` finds
room with the configured placement policy and reserves it for this pass. The
plan it returns must list every reservation it made as a start (the Factory
releases any it forgot) and may name running jobs to preempt. A policy looks only
at the pools whose situation changed (`queue_keys`), so the Factory runs no pass at
all when none of those has a pending job; a policy timer goes through `Plan.wakeups`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import ClassVar, Protocol

from aifactory.core.cluster import Node
from aifactory.core.explain import limit_reason
from aifactory.core.job import MILLI, Job, Placement
from aifactory.core.placement import place_host_only
from aifactory.core.view import FloorState


@dataclass(frozen=True, slots=True)
class Start:
    job_id: int
    placement: Placement


@dataclass(frozen=True, slots=True)
class Plan:
    starts: list[Start] = field(default_factory=list)
    preempt: list[tuple[int, str]] = field(default_factory=list)  # (job id, reason)
    reasons: dict[int, str] = field(default_factory=dict)  # pending job id -> why it waits
    estimates: dict[int, float] = field(default_factory=dict)  # pending job id -> expected start time
    wakeups: dict[str | None, float] = field(default_factory=dict)  # pool key -> when to look again


class SchedulerView:
    """What a policy may look at during one pass, plus the one thing it may do: reserve."""

    # Slotted: a view is built on every pass (once per event that leaves a changed queue pending).
    __slots__ = (
        "_dirty",
        "_f",
        "cluster",
        "granted",
        "granted_host",
        "now",
        "over_budget",
        "projects",
        "reserved",
        "running",
        "settings",
        "usage",
    )

    def __init__(self, factory: FloorState, now: float, dirty: set[str | None] | None) -> None:
        self._f = factory
        self.now = now
        self.cluster = factory.cluster
        self.projects = factory.projects
        self.running = factory.running
        self.usage = factory.usage  # project -> GPUs held (fractions count as fractions)
        self.settings = factory.settings
        self.reserved: dict[int, Placement] = {}
        self.granted: dict[str, float] = {}  # project -> GPUs reserved for it in this pass
        # project -> (milli-CPU, memory MiB) reserved for it in this pass (only jobs that ask for them).
        self.granted_host: dict[str, tuple[int, int]] = {}
        self._dirty = dirty
        self.over_budget: dict[int, str] = {}  # job id -> why the power budget holds it (this pass)

    @property
    def factory(self) -> FloorState:
        """The whole state, read-only by contract (reclaim and backfill need running jobs and history)."""
        return self._f

    def held(self, project: str) -> float:
        """GPUs the project holds, counting what this pass has reserved for it."""
        return self.usage.get(project, 0.0) + self.granted.get(project, 0.0)

    def limit_reason(self, job: Job) -> str | None:
        """Why the job's project or department hard limit stops it now (None: it does not)."""
        return limit_reason(self._f, job, self.granted)

    def queue_keys(self, only_dirty: bool = True) -> list[str | None]:
        """Pool keys with pending jobs; by default only those whose situation changed."""
        queues = self._f.queues
        dirty = self._dirty if only_dirty else None
        if dirty is None:
            return [k for k, q in queues.items() if q]
        if len(dirty) == 1:  # the usual pass: one event changed one pool
            (key,) = dirty
            return [key] if queues.get(key) else []
        return [k for k, q in queues.items() if q and k in dirty]

    def queue(self, key: str | None) -> Iterator[Job]:
        """Pending jobs bound to pool `key`, in submission order. Not a copy: queues only change
        after the pass, when the Factory carries out the plan."""
        return iter(self._f.queues.get(key, {}).values())

    def pending(self) -> Iterable[Job]:
        for q in self._f.queues.values():
            yield from q.values()

    @property
    def pending_count(self) -> int:
        return sum(len(q) for q in self._f.queues.values())

    def pool_of(self, job: Job) -> str | None:
        return self._f.pool_of(job.spec.project)

    def try_place(self, job: Job) -> Placement | None:
        """Find room for `job` now and reserve it for this pass (None: no room, or over the power budget)."""
        if self.settings.power_budget_w is not None:
            reason = self._power_reason(job, self.settings.power_budget_w)
            if reason is not None:
                self.over_budget[job.id] = reason
                return None
        nodes = self.room(job)
        if not nodes:
            return None
        spec = job.spec
        placement = place_host_only(spec, nodes) if spec.cpu_only else self._f.placement.place(spec, nodes)
        if placement is not None and self.settings.pool_power_budgets_w:
            # Known only once placed: a job of a project bound to no pool may land on any pool's nodes.
            reason = self._pool_power_reason(placement)
            if reason is not None:
                self.over_budget[job.id] = reason
                return None
        if placement is not None:
            if spec.host:
                placement = replace(placement, cpu_milli=spec.cpu_milli, memory_mib=spec.memory_mib)
                self._grant_host(spec.project, placement, 1)
            self.cluster.allocate(job.id, placement)
            self.reserved[job.id] = placement
            self.granted[spec.project] = self.granted.get(spec.project, 0.0) + placement.gpus
        return placement

    def _grant_host(self, project: str, placement: Placement, sign: int) -> None:
        cpu, mem = self.granted_host.get(project, (0, 0))
        n = len(placement.parts) * sign  # the request holds on every node of the placement
        self.granted_host[project] = (cpu + n * placement.cpu_milli, mem + n * placement.memory_mib)

    def host_held(self, project: str) -> tuple[int, int]:
        """(milli-CPU, memory MiB) the project holds, counting what this pass has reserved for it."""
        cpu, mem = self._f.host_usage.get(project, (0, 0))
        gcpu, gmem = self.granted_host.get(project, (0, 0))
        return cpu + gcpu, mem + gmem

    def unreserve(self, job: Job) -> None:
        """Give back what `try_place` reserved for `job` in this pass (a policy changed its mind)."""
        placement = self.reserved.pop(job.id, None)
        if placement is not None:
            self.cluster.release(job.id)
            self.granted[job.spec.project] -= placement.gpus
            if placement.cpu_milli or placement.memory_mib:
                self._grant_host(job.spec.project, placement, -1)

    def running_in(self, key: str | None) -> list[Job]:
        """Jobs holding GPUs (running or stopping) whose project is bound to pool `key`."""
        return [j for j in self.running.values() if self.pool_of(j) == key]

    def room(self, job: Job) -> list[Node]:
        """The nodes where `job` could go now, from the cluster's free-block index (a full cluster
        answers in O(1), not O(nodes)). A placement policy with `scope` "fullest" (pack) or
        "emptiest" (spread) only ever picks the first node of the fewest / most free whole GPUs
        that fits, so it is handed just that node (plus partly used ones for a fraction)."""
        spec = job.spec
        pool = self._f.pool_of(spec.project)
        # The fullest (emptiest) node with room for the GPUs may lack the CPU or memory: then all are looked at.
        scope = "all" if spec.host else getattr(self._f.placement, "scope", "all")
        if spec.cpu_only:
            return self.cluster.pool_nodes(pool)
        if spec.fractional:
            if scope == "all":
                return self.cluster.pool_nodes(pool)
            nodes = self.cluster.partial_nodes(pool, spec.gpu_model)
            first = self.cluster.first_at(pool, spec.gpu_model, 1, fullest=scope == "fullest")
            return [*nodes, first] if first is not None else nodes
        need = spec.whole_gpus
        if scope != "all":
            # An up node with `need` free whole GPUs is the answer (and proves the largest block fits).
            first = self.cluster.first_at(pool, spec.gpu_model, need, fullest=scope == "fullest")
            if first is not None:
                return [first]
        top = self.cluster.max_block(pool, spec.gpu_model)
        if spec.multi_node:
            if self.cluster.whole_free(pool, spec.gpu_model) < need:
                return []
            return self.cluster.candidates(pool, spec.gpu_model, 1)
        if top < need:
            return []
        return self.cluster.candidates(pool, spec.gpu_model, need)

    def why_not(self, job: Job) -> str:
        """A one-line reason the job does not fit right now."""
        return self.over_budget.get(job.id) or self._f.fit_reason(job)

    def _power_reason(self, job: Job, budget: float) -> str | None:
        """Why starting `job` now would pass the factory's power budget (None: it would not)."""
        s = self.settings
        held = sum(self.usage.values()) + sum(self.granted.values())
        after = s.power_base_w + (held + job.spec.gpus) * s.power_per_gpu_w
        if after <= budget:
            return None
        return (
            f"power budget: starting it would draw an estimated {after / 1000:,.1f} kW "
            f"of {budget / 1000:,.1f} kW ({held:g} GPUs held)"
        )

    def _pool_power_reason(self, placement: Placement) -> str | None:
        """Why `placement` would pass the power budget of a pool it lands in (None: it would not).
        A pool draws its share of the base (by GPU slots) and the extra of every GPU held on its
        nodes, whichever project's job holds it (this pass's reservations included)."""
        s, cluster = self.settings, self.cluster
        adding: dict[str, int] = {}
        for name, idx in placement.parts:
            pool = cluster.nodes[name].pool
            adding[pool] = adding.get(pool, 0) + placement.milli * len(idx)
        total = sum(cluster.slots.values())
        for pool, budget in s.pool_power_budgets_w:
            if pool not in adding:
                continue
            held = cluster.held_milli.get(pool, 0) / MILLI
            base = s.power_base_w * cluster.slots.get(pool, 0) / total if total else 0.0  # CPU-only: no share
            after = base + (held + adding[pool] / MILLI) * s.power_per_gpu_w
            if after > budget:
                return (
                    f"power budget: starting it would draw an estimated {after / 1000:,.1f} kW "
                    f"of pool {pool}'s {budget / 1000:,.1f} kW ({held:g} GPUs held there)"
                )
        return None


class Policy(Protocol):
    name: ClassVar[str]
    options: ClassVar[tuple[str, ...]]  # the FactorySettings fields it reads, settable by name (options.py)

    def schedule(self, view: SchedulerView) -> Plan: ...
