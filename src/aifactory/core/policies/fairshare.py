"""Fair share with guarantees, weighted lending, usage history and reclaim (the default policy).

Per pool, projects take turns in rank order, one start at a time (weighted max-min):

1. projects under their guaranteed quota first, least of their guarantee used first;
2. then idle GPUs are lent over quota: department first, then project, each by
   (GPUs over quota + history_weight * recent average over quota) / weight, so a
   project that borrowed much lately waits behind one that borrowed little. Where the
   pool's nodes track CPU or memory this is weighted DRF: a project's GPUs held are
   replaced by its dominant holding (GPUs, or CPU or memory as the same share of the
   pool's GPUs, whichever is largest).

Within a project, higher `priority` first, then submission order; a job that does
not fit lets the project's next job of another shape try (no head-of-line blocking
across shapes; EASY reservations are the `backfill` policy's job). A job within its
project's guarantee that does not fit reclaims borrowed GPUs: see `reclaim.py`.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterator
from typing import ClassVar

from aifactory.core.job import Job
from aifactory.core.policies.base import Plan, SchedulerView, Start
from aifactory.core.project import PREEMPTIBLE
from aifactory.core.queues import FitKey, ProjectQueue, Shape, cpu_only, fit_key
from aifactory.core.reclaim import claim_stopping, find_victims
from aifactory.core.states import JobState

Rank = tuple[int, int, float, float, str]


class FairShare:
    name: ClassVar[str] = "fairshare"
    options: ClassVar[tuple[str, ...]] = (
        "half_life_s",
        "history_weight",
        "reclaim_retry_s",
        "min_runtime_s",
        "preempt_grace_s",
    )
    uses_quota: ClassVar[bool] = True

    def __init__(self) -> None:
        # Jobs preempted to give GPUs back, per pool, until their process exits. While any
        # is stopping nobody borrows in that pool, so the freed GPUs go to their owner.
        self._stopping: dict[str | None, dict[int, Job]] | None = None
        # (pool, shape) -> time before which a reclaim that found no victims is not searched again.
        self.futile: dict[tuple[str | None, FitKey], float] = {}

    def schedule(self, view: SchedulerView) -> Plan:
        plan = Plan()
        stopping = self._stopping_now(view)
        for key in view.queue_keys():
            PoolPass(view, key, plan, stopping.setdefault(key, {}), self.futile).run()
        return plan

    def _stopping_now(self, view: SchedulerView) -> dict[str | None, dict[int, Job]]:
        if self._stopping is None:  # first pass (or after a restart): who is already stopping
            self._stopping = {}
            for job in view.running.values():
                if job.state is JobState.PREEMPTED:
                    self._stopping.setdefault(view.pool_of(job), {})[job.id] = job
        for jobs in self._stopping.values():
            for job_id in [i for i, j in jobs.items() if j.state is not JobState.PREEMPTED]:
                del jobs[job_id]
        return self._stopping


class PoolPass:
    """One pass over one pool's queue."""

    def __init__(
        self,
        view: SchedulerView,
        key: str | None,
        plan: Plan,
        stopping: dict[int, Job],
        futile: dict[tuple[str | None, FitKey], float],
    ) -> None:
        self.view = view
        self.futile = futile
        self.f = view.factory
        self.key = key
        self.plan = plan
        self.stopping = stopping
        self.queues = self.f.pending.projects(key)
        self.failed: dict[FitKey, str] = {}  # shapes that do not fit this pass -> why
        self.no_room_for: dict[tuple[str | None, bool], int] = {}  # (model, multi-node) -> smallest failing count
        self.heads: dict[tuple[str, Shape], Job | None] = {}  # per bucket: next job not yet started
        self.cursors: dict[tuple[str, Shape], Iterator[Job]] = {}
        self.history_weight = view.settings.history_weight
        self.fits_at_start: dict[FitKey, bool] = {}
        self.reclaimed: set[int] = set()  # jobs a reclaim was tried for in this pass
        self.promised: dict[str, float] = {}  # project -> GPUs coming to it from reclaims of this pass
        self.claimed: set[int] = set()  # stopping jobs whose GPUs a waiting job of this pass counts on
        self.reclaim_failed: set[FitKey] = set()  # shapes no reclaim can make room for in this pass
        self.recents: dict[str, float] = {}  # project -> recent average GPUs (history is fixed within a pass)
        self.victims: list[Job] | None = None  # reclaim candidates, found on the first reclaim of the pass
        self.protected_until: float | None = None  # when the first protected candidate may be preempted
        self.dept_held = dict(self.f.dept_usage)
        # DRF where the pool's nodes track CPU or memory: (GPUs, milli-CPU, memory MiB) of the pool.
        cap = self.f.capacity(key, None)
        self.drf = (cap.total, cap.cpu_milli, cap.memory_mib) if cap.cpu_milli or cap.memory_mib else None

    def run(self) -> None:
        # Only projects that may start something (a shape that fits the free GPUs at the start of
        # the pass) or that are under their guarantee (they may reclaim) take part; the others
        # keep the reason they were given when last looked at.
        full = self.exhausted()
        shapes = self.f.pending.fits.get(self.key, {})
        # With no GPU free only jobs that need none (CPU-only shapes) may still start.
        cpu_jobs = bool(self.f.pending.cpu_only.get(self.key))
        if full:
            fits = {fk for fk in shapes if cpu_only(fk)} if cpu_jobs else set()
        else:
            fits = {fk for fk in shapes if self.possible(fk)}
        projects = self.f.projects
        heap = [
            (self.rank(name), name)
            for name, pq in self.queues.items()
            if self.view.held(name) < projects[name].quota or not pq.fits.keys().isdisjoint(fits)
        ]
        heapq.heapify(heap)
        while heap:
            rank, name = heapq.heappop(heap)
            if rank[0] == 1 and full and not cpu_jobs:
                break  # everyone left is over quota and nothing is free: only owners could reclaim
            fresh = self.rank(name)
            if fresh != rank and heap and fresh > heap[0][0]:
                heapq.heappush(heap, (fresh, name))  # its rank went stale: a sibling took GPUs
                continue
            job = self.next_job(name, self.queues[name])
            if job is None:
                continue
            placement = self.view.try_place(job)
            if placement is not None:
                self.plan.starts.append(Start(job.id, placement))
                self.advance(job)
                full = self.exhausted()
                dept = self.f.projects[name].department
                if dept is not None:
                    self.dept_held[dept] = self.dept_held.get(dept, 0.0) + placement.gpus
            else:
                self.no_fit(job)
            heapq.heappush(heap, (self.rank(name), name))

    # -- order -----------------------------------------------------------------------------

    def exhausted(self) -> bool:
        cluster = self.view.cluster
        return cluster.whole_free(self.key) == 0 and not cluster.has_partial(self.key)

    def possible(self, fk: FitKey) -> bool:
        """Could a job of this shape fit the GPUs free at the start of the pass? (Memoised: free GPUs
        only shrink during a pass.)"""
        ok = self.fits_at_start.get(fk)
        if ok is None:
            whole, _frac, _mem, model, multi, _cpu, _host_mem = fk
            cluster = self.view.cluster
            if cpu_only(fk):
                ok = True  # no GPU to find: its CPU and memory are looked at when it is placed
            elif not whole:
                ok = bool(cluster.whole_free(self.key, model) or cluster.partial_nodes(self.key, model))
            elif multi:
                ok = cluster.whole_free(self.key, model) >= whole
            else:
                ok = cluster.max_block(self.key, model) >= whole
            self.fits_at_start[fk] = ok
        return ok

    def rank(self, name: str) -> Rank:
        """Lower goes first: (project over guarantee?, department over?, department share, project share).

        Inlined arithmetic: this runs for every project with work at every pass."""
        project = self.f.projects[name]
        held = self.f.usage.get(name, 0.0) + self.view.granted.get(name, 0.0)
        quota = project.quota
        if held < quota:
            tier, share = 0, held / quota
        else:
            recent = self.recents.get(name)
            if recent is None:
                recent = self.f.history.average_gpus(name, self.f.usage.get(name, 0.0), self.view.now)
                self.recents[name] = recent
            past = recent - quota if recent > quota else 0.0
            if self.drf is not None:
                held = self.dominant(name, held)
            tier, share = 1, (held - quota + self.history_weight * past) / project.weight
        dept = self.f.departments.get(project.department) if project.department is not None else None
        if dept is None:
            return (tier, tier, share, share, name)
        d_held = self.dept_held.get(dept.name, 0.0)
        if d_held < dept.quota:
            return (tier, 0, d_held / dept.quota, share, name)
        return (tier, 1, (d_held - dept.quota) / dept.weight, share, name)

    def dominant(self, name: str, held: float) -> float:
        """The project's dominant holding in GPU-equivalents: the largest of its GPUs and its CPU and
        memory scaled to the pool's GPUs (a quarter of the pool's CPU counts as a quarter of its GPUs).
        Exactly `held` when the project holds no CPU or memory, so GPU-only jobs decide as before."""
        cpu, mem = self.view.host_held(name)
        if not cpu and not mem:
            return held
        gpus, cpu_cap, mem_cap = self.drf or (0, 0, 0)
        cpu_eq = cpu * gpus / cpu_cap if cpu_cap else 0.0
        mem_eq = mem * gpus / mem_cap if mem_cap else 0.0
        return max(held, cpu_eq, mem_eq)

    # -- admission -------------------------------------------------------------------------

    def next_job(self, name: str, pq: ProjectQueue) -> Job | None:
        """The project's first job (priority, then submission) whose shape may still fit and that
        its limits and class allow; every head passed over gets its reason. A head within quota
        that has no room reclaims; once room is coming for it, the next job of its bucket is looked at."""
        while True:
            best: Job | None = None
            promised = False
            for shape, bucket in pq.buckets.items():
                head = self.head(name, shape, bucket)
                if head is None:
                    continue
                if best is not None and (-head.spec.priority, head.id) >= (-best.spec.priority, best.id):
                    continue
                reason, no_room = self.blocked(head, shape[1])
                if reason is None:
                    best = head
                    continue
                self.plan.reasons.setdefault(head.id, reason)
                if no_room and self.may_reclaim(head, shape[1]) and self.within_quota(head) and self.reclaim(head):
                    promised = True
            if not promised:
                return best

    def head(self, name: str, shape: Shape, bucket: dict[int, Job]) -> Job | None:
        """The first job of a bucket not yet started in this pass (the bucket itself changes after the pass)."""
        slot = (name, shape)
        if slot not in self.heads:
            cursor = iter(bucket.values())
            self.cursors[slot] = cursor
            self.heads[slot] = next(cursor, None)
        return self.heads[slot]

    def advance(self, job: Job) -> None:
        slot = (job.spec.project, (job.spec.priority, fit_key(job.spec)))
        self.heads[slot] = next(self.cursors[slot], None)

    def blocked(self, job: Job, fk: FitKey) -> tuple[str | None, bool]:
        """Why the job cannot start in this pass (None: it may try) and whether the reason is lack of room."""
        if fk in self.failed:
            return self.failed[fk], True
        whole, _frac, _mem, model, multi, _cpu, _host_mem = fk
        smallest = self.no_room_for.get((model, multi))
        if not self.possible(fk) or (whole and smallest is not None and whole >= smallest):
            self.failed[fk] = self.view.why_not(job)
            return self.failed[fk], True
        limit = self.view.limit_reason(job)
        if limit is not None:
            return limit, False
        if self.within_quota(job):
            return None, False
        name = job.spec.project
        if job.spec.priority_class not in PREEMPTIBLE:
            held = self.view.held(name)
            return f"{job.spec.priority_class} jobs run only within quota; project {name} holds {held:g}", False
        if self.stopping:
            return (
                f"GPUs are being reclaimed in this pool ({len(self.stopping)} stopping); no borrowing meanwhile",
                False,
            )
        return None, False

    def within_quota(self, job: Job) -> bool:
        if job.spec.cpu_only:
            return True  # GPU quotas count GPUs: a job with none never goes over one
        project = self.f.projects[job.spec.project]
        model = job.spec.gpu_model
        if model is not None and model in project.quota_by_model:
            held = self.f.model_usage.get((project.name, model), 0.0) + self.view.granted.get(project.name, 0.0)
            held += self.promised.get(project.name, 0.0)
            return held + job.demand <= project.quota_by_model[model] + 1e-9
        return self.view.held(project.name) + self.promised.get(project.name, 0.0) + job.demand <= project.quota + 1e-9

    # -- when it does not fit -------------------------------------------------------------

    def no_fit(self, job: Job) -> None:
        spec = job.spec
        fk = fit_key(spec)
        reason = self.view.why_not(job)
        self.failed[fk] = reason
        if spec.whole_gpus and not spec.host:  # a job short of CPU or memory says nothing of GPU room
            slot = (spec.gpu_model, spec.multi_node)
            self.no_room_for[slot] = min(self.no_room_for.get(slot, spec.whole_gpus), spec.whole_gpus)
        self.plan.reasons[job.id] = reason
        if job.id not in self.reclaimed and not spec.cpu_only and self.within_quota(job):
            self.reclaim(job)

    def may_reclaim(self, job: Job, fk: FitKey) -> bool:
        """Cheap checks first: not tried for this job in this pass, nor in vain for its shape lately.
        A job with no GPU never reclaims: freeing GPUs makes no room for CPU or memory."""
        if job.id in self.reclaimed or job.spec.cpu_only:
            return False
        return fk not in self.reclaim_failed and self.futile.get((self.key, fk), -math.inf) <= self.view.now

    def reclaim(self, job: Job) -> bool:
        """Preempt borrowed, preemptible jobs of projects over quota, just enough for `job`.

        True when room is coming for the job (victims chosen now or earlier): its GPUs are then
        promised to its project for the rest of the pass, and its bucket moves on to the next job.
        """
        self.reclaimed.add(job.id)
        coming = self._reclaim(job)
        if coming:
            self.promised[job.spec.project] = self.promised.get(job.spec.project, 0.0) + job.demand
            self.advance(job)
        return coming

    def _reclaim(self, job: Job) -> bool:
        now = self.view.now
        fk = fit_key(job.spec)
        if fk in self.reclaim_failed:
            return False  # reclaimers are all under quota, so none is a donor: the same candidates failed already
        if self.futile.get((self.key, fk), -math.inf) > now:
            return False  # searched in vain a moment ago (a large pool makes every search cost)
        cluster = self.view.cluster
        stopping = [j for j in self.stopping.values() if j.id not in self.claimed]
        needed = claim_stopping(job, cluster, self.key, stopping)
        if needed is not None:  # jobs already stopping will make room: wait for them, and keep them for this job
            self.claimed.update(j.id for j in needed)
            self.plan.reasons[job.id] = f"reclaim: waiting for {len(needed)} preempted job(s) to stop"
            return True
        free = cluster.whole_free(self.key, job.spec.gpu_model)
        if not job.spec.fractional and self.borrowed() + free < job.demand - 1e-9:
            self.reclaim_failed.add(fk)
            return False
        if self.victims is None:
            self.victims = self.borrowed_jobs()
        candidates = [v for v in self.victims if v.spec.project != job.spec.project]

        found = find_victims(job, cluster, self.key, candidates, stopping, now, self.can_take)
        if found is None:
            self.reclaim_failed.add(fk)
            self.futile[(self.key, fk)] = now + self.view.settings.reclaim_retry_s
            if self.protected_until is not None:
                self.wake_at(self.protected_until)
            return False
        for victim in found.jobs:
            self.plan.preempt.append((victim.id, f"reclaim for project {job.spec.project} (within its quota)"))
            self.stopping[victim.id] = victim
            self.claimed.add(victim.id)
        for other in stopping:  # the stopping jobs on the chosen node are part of the room
            if found.node is None or (other.placement is not None and found.node in other.placement.nodes):
                self.claimed.add(other.id)
        waiting = len(found.jobs) or len(self.stopping)
        plural = "s" if waiting != 1 else ""
        self.plan.reasons[job.id] = (
            f"reclaiming borrowed GPUs for project {job.spec.project}: waiting for {waiting} job{plural} to stop"
        )
        return True

    def can_take(self, victim: Job, taken: list[Job]) -> bool:
        """A project gives back only what it borrowed: it is over quota before losing `victim`."""
        name = victim.spec.project
        leaving = [*taken, *self.stopping.values()]
        lost = sum(v.placement.gpus for v in leaving if v.spec.project == name and v.placement is not None)
        return self.view.held(name) - lost > self.f.projects[name].quota + 1e-9

    def borrowed(self) -> float:
        """GPUs held over quota in this pool, less what is already stopping."""
        over = sum(
            max(0.0, self.view.held(name) - p.quota)
            for name, p in self.f.projects.items()
            if self.f.pool_of(name) == self.key
        )
        return over - sum(j.placement.gpus for j in self.stopping.values() if j.placement is not None)

    def borrowed_jobs(self) -> list[Job]:
        """Running preemptible jobs of projects over quota in this pool (once per pass); notes when the
        first of those too young to preempt comes of age."""
        now = self.view.now
        min_run = self.view.settings.min_runtime_s
        out: list[Job] = []
        first = math.inf  # earliest start among the protected: the first to come of age
        for name, project in self.f.projects.items():
            if self.f.pool_of(name) != self.key or self.view.held(name) <= project.quota:
                continue
            for victim in self.f.running_by_project.get(name, {}).values():
                if victim.state is not JobState.RUNNING or victim.stop_reason is not None:
                    continue
                if victim.spec.priority_class not in PREEMPTIBLE:
                    continue
                if victim.started_at is not None and now - victim.started_at < min_run:
                    first = min(first, victim.started_at)
                    continue
                out.append(victim)
        if first < math.inf:
            self.protected_until = first + min_run
        return out

    def wake_at(self, at: float) -> None:
        current = self.plan.wakeups.get(self.key)
        self.plan.wakeups[self.key] = at if current is None else min(current, at)
