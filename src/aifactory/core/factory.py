"""The Factory: the job state machine and the scheduler, as one pure object.

`handle(event, now)` applies an event, runs a scheduling pass and returns the
actions the shell must carry out. It never performs I/O or reads the clock, so
the live shell (wall clock, real processes) and the twin (virtual clock,
simulated executor) drive the very same decisions.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable
from dataclasses import replace

from aifactory.core.accounting import accounts
from aifactory.core.actions import Action, Kill, Launch, Noted, Preempt, StateChanged
from aifactory.core.admission import check_fits, check_host, check_share
from aifactory.core.cluster import Cluster
from aifactory.core.errors import InvalidTransition, NotFound, SpecError, UnknownName
from aifactory.core.events import (
    Cancel,
    Checkpoint,
    Drain,
    Event,
    Finished,
    GpuIdle,
    Hold,
    NodeJoined,
    NodeState,
    Requeue,
    Submit,
    Tick,
    Update,
)
from aifactory.core.explain import fit_reason, pending_reason
from aifactory.core.history import UsageHistory
from aifactory.core.job import AFTER_KINDS, MILLI, Job, JobSpec, Placement, dependency_met, model_allows
from aifactory.core.placement import PlacementPolicy, get_placement
from aifactory.core.policies import Policy, SchedulerView, get_policy
from aifactory.core.project import (
    IDLE_STOPPABLE,
    PRIORITY_CLASSES,
    Account,
    Department,
    Project,
    check_department,
    check_project,
)
from aifactory.core.queues import PendingIndex
from aifactory.core.reservation import reserve
from aifactory.core.settings import Capacity, FactorySettings
from aifactory.core.states import TERMINAL, TRANSITIONS, JobState, check_transition

TIME_LIMIT = "time limit"

__all__ = ["TIME_LIMIT", "Capacity", "Factory", "FactorySettings"]


class Factory:
    def __init__(
        self,
        cluster: Cluster,
        projects: Iterable[Project],
        settings: FactorySettings | None = None,
        policy: Policy | None = None,
        placement: PlacementPolicy | None = None,
        departments: Iterable[Department] = (),
    ) -> None:
        self.settings = settings or FactorySettings()
        self.cluster = cluster
        self.projects: dict[str, Project] = {p.name: p for p in projects}
        self.departments: dict[str, Department] = {d.name: d for d in departments}
        for project in self.projects.values():
            check_project(project)
        for department in self.departments.values():
            check_department(department)
        self.policy: Policy = policy or get_policy(self.settings.policy)
        self.placement: PlacementPolicy = placement or get_placement(self.settings.placement)
        self.jobs: dict[int, Job] = {}
        # Pending jobs per pool key, each in queue (submission) order.
        self.queues: dict[str | None, dict[int, Job]] = {}
        self.pending = PendingIndex()  # the same jobs by pool, project and shape
        self.running: dict[int, Job] = {}  # running or preempted: holding GPUs
        self.running_by_project: dict[str, dict[int, Job]] = {}
        self.usage: dict[str, float] = {name: 0.0 for name in self.projects}  # GPUs held now
        self.model_usage: dict[tuple[str, str], float] = {}  # (project, GPU model) -> GPUs held
        self.dept_usage: dict[str, float] = {}  # department -> GPUs its projects hold
        # project -> (milli-CPU, memory MiB) held, summed over nodes; only projects whose jobs asked (DRF).
        self.host_usage: dict[str, tuple[int, int]] = {}
        self.history = UsageHistory(self.settings.half_life_s)
        self._deadlines: list[tuple[float, int, int]] = []  # (deadline, job id, attempt)
        self._idle: list[tuple[float, int, float]] = []  # (idle timeout runs out, job id, idle since)
        self._dependents: dict[int, set[int]] = {}  # job id -> queued jobs waiting for it to end
        # Job arrays with a cap: elements counted against it (queued to start, running, preempted),
        # how many per array, and the elements waiting their turn (index, job id).
        self._counted: set[int] = set()
        self._array_active: dict[int, int] = {}
        self._array_parked: dict[int, list[tuple[int, int]]] = {}
        self._parked: set[int] = set()
        self._capacity: dict[tuple[str | None, str | None, bool], Capacity] = {}
        self._wakeups: dict[str | None, float] = {}  # pool key -> time its policy wants a look
        self._dirty: set[str | None] | None = None  # None: every queue needs a look

    # -- configuration -------------------------------------------------------------------

    def pool_of(self, project: str) -> str | None:
        if not self.settings.use_pools:
            return None
        proj = self.projects.get(project)
        return proj.pool if proj is not None else None

    def set_project(self, project: Project) -> None:
        """Add or change a project; every queue is looked at again on the next pass.

        A project's pool cannot change while it has pending or running jobs (they are
        queued under the old pool).
        """
        old = self.projects.get(project.name)
        if (
            old is not None
            and old.pool != project.pool
            and (self.running_by_project.get(project.name) or self.pending.totals(project.name)[0])
        ):
            raise SpecError("pool", f"project {project.name} has jobs; cannot move it to pool {project.pool!r}")
        check_project(project)
        self.projects[project.name] = project
        self.usage.setdefault(project.name, 0.0)
        self.dept_usage = {}
        for name, used in self.usage.items():
            dept = self.projects[name].department
            if dept is not None:
                self.dept_usage[dept] = self.dept_usage.get(dept, 0.0) + used
        self._dirty = None

    def active_jobs(self, projects: Iterable[str]) -> list[int]:
        """Ids of the jobs of these projects that are queued, running or preempted."""
        names = set(projects)
        return sorted(j.id for j in self.jobs.values() if not j.state.terminal and j.spec.project in names)

    def remove_project(self, name: str) -> None:
        """Forget a project that has no active job (SpecError naming it otherwise)."""
        if name not in self.projects:
            raise UnknownName("project", name, self.projects)
        if self.active_jobs([name]):
            raise SpecError("project", f"project {name} has queued or running jobs")
        del self.projects[name]
        self.usage.pop(name, None)
        self._dirty = None

    def remove_department(self, name: str) -> None:
        """Forget a department; its projects stand alone from now on (they must have no active job)."""
        if name not in self.departments:
            raise UnknownName("department", name, self.departments)
        members = [p.name for p in self.projects.values() if p.department == name]
        if self.active_jobs(members):
            raise SpecError("department", f"department {name}'s projects have queued or running jobs")
        for member in members:
            self.projects[member].department = None
        del self.departments[name]
        self.dept_usage.pop(name, None)
        self._dirty = None

    def set_department(self, department: Department) -> None:
        check_department(department)
        self.departments[department.name] = department
        self._dirty = None

    def department_of(self, project: str) -> Department | None:
        proj = self.projects.get(project)
        if proj is None or proj.department is None:
            return None
        return self.departments.get(proj.department)

    def accounts(self, now: float) -> list[Account]:
        """Per project: quota, in use, borrowed, lent, pending (what `aifactory projects` shows)."""
        return accounts(self, now)

    # -- validation ----------------------------------------------------------------------

    def check(self, spec: JobSpec) -> None:
        """Raise SpecError naming the field if `spec` could never run here."""
        if spec.project not in self.projects:
            raise SpecError("project", str(UnknownName("project", spec.project, self.projects)))
        if not spec.gpus >= 0:
            raise SpecError("gpus", f"must be positive, or 0 for a job with no GPU; got {spec.gpus}")
        if spec.cpu_only:
            if not spec.host:
                raise SpecError("gpus", "a job with no GPU must ask for cpus or memory")
            if spec.gpu_model is not None or spec.multi_node:
                field = "gpu_model" if spec.gpu_model is not None else "multi_node"
                raise SpecError(field, "a job with no GPU takes no GPU model and runs on one node")
        if spec.gpus > 1 and spec.gpus != int(spec.gpus):
            raise SpecError("gpus", f"more than one GPU must be a whole number, got {spec.gpus}")
        if spec.time_limit_s is not None and not spec.time_limit_s > 0:
            raise SpecError("time_limit", f"must be positive, got {spec.time_limit_s}")
        if spec.array_id is not None:
            if spec.array_id < 0 or spec.array_index is None or spec.array_index < 0:
                raise SpecError("array", "an array element needs an array id and an index, both >= 0")
            if spec.array_cap is not None and spec.array_cap < 1:
                raise SpecError("array", f"the cap must be at least 1, got {spec.array_cap}")
        elif spec.array_index is not None or spec.array_cap is not None:
            raise SpecError("array", "an index or a cap without an array id")
        for i, (dep, kind) in enumerate(spec.after):
            if kind not in AFTER_KINDS:
                raise SpecError("after", f"[{i}]: {kind!r} is not one of {', '.join(AFTER_KINDS)}")
            if not (isinstance(dep, int) and dep >= 0):
                raise SpecError("after", f"[{i}]: not a job id: {dep!r}")
        if spec.priority_class not in PRIORITY_CLASSES:
            raise SpecError("priority_class", str(UnknownName("priority class", spec.priority_class, PRIORITY_CLASSES)))
        check_fits(self, spec)
        check_host(self, spec)
        check_share(self, spec)

    def demand_of(self, spec: JobSpec) -> float:
        """GPUs the job counts against quotas: whole GPUs, or its fraction on the largest eligible GPU."""
        if not spec.fractional:
            return float(spec.whole_gpus)
        if spec.gpu_memory_mib is None:
            return max(1, round(spec.gpus * MILLI)) / MILLI
        return spec.milli_on(self.capacity(self.pool_of(spec.project), spec.gpu_model).biggest_mib) / MILLI

    def capacity(self, pool: str | None, model: str | None, cpu_only: bool = False) -> Capacity:
        """What the nodes a job may use could ever hold (down nodes count: they come back): nodes with
        GPUs (of `model`), or every node for a CPU-only job. Cached (`check` runs on every submit)
        until a node joins."""
        key = (pool, model, cpu_only)
        cap = self._capacity.get(key)
        if cap is None:
            nodes = [
                n
                for n in self.cluster.pool_nodes(pool)
                if cpu_only or (n.gpu_count and model_allows(model, n.gpu_model))
            ]
            cap = Capacity(
                nodes=len(nodes),
                largest=max((n.gpu_count for n in nodes), default=0),
                total=sum(n.gpu_count for n in nodes),
                biggest_mib=max((n.gpu_memory_mib for n in nodes), default=0),
                cpu_milli=sum(n.cpu_milli for n in nodes),
                memory_mib=sum(n.memory_mib for n in nodes),
                largest_cpu=max((n.cpu_milli for n in nodes), default=0),
                largest_memory=max((n.memory_mib for n in nodes), default=0),
            )
            self._capacity[key] = cap
        return cap

    # -- the state machine ---------------------------------------------------------------

    def handle(self, event: Event, now: float) -> list[Action]:
        out: list[Action] = []
        if isinstance(event, Submit):
            self._submit(event, now, out)
        elif isinstance(event, Finished):
            self._finished(event, now, out)
        elif isinstance(event, Cancel):
            self._cancel(event, now, out)
        elif isinstance(event, Checkpoint):
            self.job(event.job_id).checkpoint_at = now
            return out
        elif isinstance(event, GpuIdle):
            self._gpu_idle(event)
        elif isinstance(event, Hold):
            self._hold_job(event, now, out)
        elif isinstance(event, Update):
            self._update(event, now, out)
        elif isinstance(event, Requeue):
            job = self.job(event.job_id)
            if job.state is not JobState.RUNNING:
                raise InvalidTransition(f"job {job.id} is {job.state.value}: only a running job can be requeued")
            self._preempt(job, f"requeued by {event.by or 'an operator'}", now, out)
        elif isinstance(event, Drain | NodeState):
            node = self.cluster.nodes.get(event.node)
            if node is None:
                raise UnknownName("node", event.node, self.cluster.nodes)
            if isinstance(event, NodeState):
                node.set_state(alive=event.up)
            else:
                node.set_state(drained=event.drained)
            self._dirty = None  # freed or taken capacity: every queue needs a look
        elif isinstance(event, NodeJoined):
            self.cluster.add(event.spec)
            self._capacity.clear()  # what jobs could ever have grew
            self._dirty = None
        elif not isinstance(event, Tick):
            raise TypeError(f"not an event: {event!r}")
        if self._deadlines:
            self._enforce_time_limits(now, out)
        if self._idle:
            self._enforce_idle(now, out)
        if self._wakeups:
            self._wake(now)
        self._schedule(now, out)
        return out

    def job(self, job_id: int) -> Job:
        try:
            return self.jobs[job_id]
        except KeyError:
            raise NotFound(f"no job {job_id}") from None

    def _move(self, job: Job, new: JobState, now: float, reason: str, out: list[Action]) -> None:
        if new not in TRANSITIONS[job.state]:  # checked inline: this runs on every transition
            check_transition(job.id, job.state, new)
        out.append(StateChanged(job.id, job.state, new, now, reason))
        job.state = new
        job.reason = reason
        if new in TERMINAL:
            job.finished_at = now
            if self._counted:
                self._array_slot_freed(job)
            if self._dependents:
                self._dependency_ended(job, now, out)

    def _enqueue(self, job: Job) -> None:
        key = self.pool_of(job.spec.project)
        queue = self.queues.setdefault(key, {})
        last = next(reversed(queue), None)
        queue[job.id] = job
        if last is not None and job.id < last:
            # A requeued job keeps its place by submission order.
            self.queues[key] = dict(sorted(queue.items()))
        self.pending.add(key, job)
        self._mark_dirty(key)

    def _dequeue(self, job: Job) -> None:
        key = self.pool_of(job.spec.project)
        self.queues.get(key, {}).pop(job.id, None)
        self.pending.remove(key, job)
        self._mark_dirty(key)

    def _mark_dirty(self, key: str | None) -> None:
        if self._dirty is not None:
            self._dirty.add(key)

    def _submit(self, event: Submit, now: float, out: list[Action]) -> None:
        if event.job_id in self.jobs:
            raise SpecError("id", f"job {event.job_id} exists already")
        self.check(event.spec)
        after = event.spec.after
        ended = dict(event.settled) if after else {}
        for dep, _ in after:
            if dep not in self.jobs and dep not in ended:
                raise SpecError("after", f"no job {dep}")
            if dep == event.job_id:
                raise SpecError("after", "a job cannot wait for itself")
        job = Job(id=event.job_id, spec=event.spec, submitted_at=now, queued_at=now)
        job.demand = self.demand_of(event.spec)
        self.jobs[job.id] = job
        out.append(StateChanged(job.id, None, JobState.QUEUED, now, "submitted"))
        if after:
            self._wait_for(job, ended, now, out)
        elif event.spec.array_cap is not None:
            self._admit(job)
        else:  # the usual job (a trace's every one): straight into its queue
            self._enqueue(job)

    def _wait_for(self, job: Job, ended: dict[int, JobState], now: float, out: list[Action]) -> None:
        """Queue a new (or restored) job, or make it wait for its dependencies; cancel it if one
        ended in a way that can never let it start."""
        waiting = set()
        for dep, kind in job.spec.after:
            other = self.jobs.get(dep)
            state = other.state if other is not None else ended[dep]
            met = dependency_met(kind, state)
            if met is False:
                self._move(
                    job,
                    JobState.CANCELLED,
                    now,
                    f"dependency {dep} ended {state.value}: after{kind} can never be met",
                    out,
                )
                return
            if met is None:
                waiting.add(dep)
                self._dependents.setdefault(dep, set()).add(job.id)
        job.waiting_on = frozenset(waiting)
        if job.held:
            return  # says "held by ..." until released
        if waiting:
            job.pending_reason = self._waits_for(job)
        else:
            self._admit(job)

    def _admit(self, job: Job) -> None:
        """A queued job that may start now joins its queue, unless its array has as many elements
        running or queued as its cap: then it waits its turn (lowest index first)."""
        arr, cap = job.spec.array_id, job.spec.array_cap
        if arr is not None and cap is not None:
            if self._array_active.get(arr, 0) >= cap:
                heapq.heappush(self._array_parked.setdefault(arr, []), (job.spec.array_index or 0, job.id))
                self._parked.add(job.id)
                job.pending_reason = f"array {arr}: {cap} of its elements at once (%{cap})"
                return
            self._array_active[arr] = self._array_active.get(arr, 0) + 1
            self._counted.add(job.id)
        job.pending_reason = ""
        self._enqueue(job)

    def _array_slot_freed(self, job: Job) -> None:
        """An element stopped counting against its array's cap: the next one waiting gets its turn."""
        if job.id not in self._counted:
            return
        self._counted.discard(job.id)
        arr = job.spec.array_id
        assert arr is not None
        self._array_active[arr] -= 1
        parked = self._array_parked.get(arr, [])
        while parked:
            _, nxt = heapq.heappop(parked)
            self._parked.discard(nxt)
            other = self.jobs.get(nxt)
            if other is not None and other.state is JobState.QUEUED and not other.held and not other.waiting_on:
                self._admit(other)
                break

    def _waits_for(self, job: Job) -> str:
        kinds = dict(job.spec.after)
        return "waits for " + ", ".join(f"job {d} (after{kinds[d]})" for d in sorted(job.waiting_on))

    def _dependency_ended(self, done: Job, now: float, out: list[Action]) -> None:
        """`done` reached its end: its dependents start waiting for it no more, or are cancelled."""
        for dep_id in sorted(self._dependents.pop(done.id, ())):
            job = self.jobs.get(dep_id)
            if job is None or job.state is not JobState.QUEUED or done.id not in job.waiting_on:
                continue
            kind = dict(job.spec.after)[done.id]
            if not dependency_met(kind, done.state):
                why = f"dependency {done.id} ended {done.state.value}: after{kind} can never be met"
                job.waiting_on = frozenset()
                self._move(job, JobState.CANCELLED, now, why, out)  # its own dependents follow
                continue
            job.waiting_on = job.waiting_on - {done.id}
            if job.held:
                continue  # says "held by ..." until released
            if job.waiting_on:
                job.pending_reason = self._waits_for(job)
            else:
                self._admit(job)

    def _hold(self, job: Job, placement: Placement, now: float, sign: float) -> None:
        """Count `placement` for (sign 1) or against (sign -1) the job's project, history first."""
        project = job.spec.project
        used = self.usage.get(project, 0.0)
        self.history.advance(project, used, now)
        delta = sign * placement.gpus
        self.usage[project] = max(0.0, used + delta)
        dept = self.projects[project].department
        if dept is not None:
            self.dept_usage[dept] = max(0.0, self.dept_usage.get(dept, 0.0) + delta)
        model = (project, self.cluster.nodes[placement.parts[0][0]].gpu_model)
        self.model_usage[model] = max(0.0, self.model_usage.get(model, 0.0) + delta)
        if placement.cpu_milli or placement.memory_mib:
            cpu, mem = self.host_usage.get(project, (0, 0))
            n = int(sign) * len(placement.parts)  # the request holds on every node of the placement
            self.host_usage[project] = (cpu + n * placement.cpu_milli, mem + n * placement.memory_mib)
        held = self.running_by_project.get(project)
        if held is None:
            held = self.running_by_project[project] = {}
        if sign > 0:
            held[job.id] = job
        else:
            held.pop(job.id, None)

    def _release(self, job: Job, now: float) -> None:
        placement = self.cluster.release(job.id)
        self.running.pop(job.id, None)
        if placement is not None:
            self._hold(job, placement, now, -1.0)
            dirty = self._dirty
            if dirty is not None:  # the pools of the freed nodes, and the pool of all nodes
                nodes = self.cluster.nodes
                for name, _ in placement.parts:
                    dirty.add(nodes[name].pool)
                dirty.add(None)
        if job.started_at is not None:
            job.done_s += now - job.started_at

    def _finished(self, event: Finished, now: float, out: list[Action]) -> None:
        job = self.job(event.job_id)
        if job.state not in (JobState.RUNNING, JobState.PREEMPTED):
            return  # a late or repeated report about a job already settled: nothing to do
        self._release(job, now)
        job.exit_code = event.exit_code
        stop = job.stop_reason
        job.stop_reason = None
        if not event.started and (stop is None or stop.startswith("preempted") or stop == TIME_LIMIT):
            job.queued_at = now
            job.attempts -= 1  # the attempt never happened
            self._move(job, JobState.QUEUED, now, event.reason or "requeued: its process never started", out)
            self._enqueue(job)
        elif event.node_lost and stop is None and job.attempts < self.settings.max_attempts:
            # Its node died: requeued with its attempt counted; it resumes from its checkpoint, if any.
            job.queued_at = now
            job.checkpoint_at = None
            self._move(job, JobState.QUEUED, now, f"requeued: {event.reason or 'its node was lost'}", out)
            self._enqueue(job)
        elif job.state is JobState.PREEMPTED:
            if stop is not None and not stop.startswith("preempted"):
                self._move(job, JobState.CANCELLED, now, stop, out)
            else:
                job.queued_at = now
                job.checkpoint_at = None
                self._move(job, JobState.QUEUED, now, stop or "preempted", out)
                self._enqueue(job)
        elif stop == TIME_LIMIT:
            self._move(job, JobState.FAILED, now, TIME_LIMIT, out)
        elif stop is not None:
            self._move(job, JobState.CANCELLED, now, stop, out)
        elif event.exit_code == 0:
            self._move(job, JobState.SUCCEEDED, now, "exit code 0", out)
        elif event.exit_code is None:
            self._move(job, JobState.FAILED, now, event.reason or "process lost", out)
        else:
            self._move(job, JobState.FAILED, now, event.reason or f"exit code {event.exit_code}", out)

    def _cancel(self, event: Cancel, now: float, out: list[Action]) -> None:
        job = self.job(event.job_id)
        if job.state is JobState.QUEUED:
            self._dequeue(job)
            self._move(job, JobState.CANCELLED, now, event.reason, out)
        elif job.state is JobState.RUNNING:
            if job.stop_reason is None:
                job.stop_reason = event.reason
                out.append(Kill(job.id, event.reason, self.settings.kill_grace_s))
        elif job.state is JobState.PREEMPTED:
            job.stop_reason = event.reason  # already stopping; it ends cancelled, not requeued
        else:
            raise InvalidTransition(f"job {job.id} is already {job.state.value}")

    def _enforce_time_limits(self, now: float, out: list[Action]) -> None:
        heap = self._deadlines
        while heap and heap[0][0] <= now:
            _, job_id, attempt = heapq.heappop(heap)
            job = self.jobs.get(job_id)
            if job is None or job.state is not JobState.RUNNING or job.attempts != attempt:
                continue
            limit = job.spec.time_limit_s  # the one in force (an update may have moved it)
            if limit is None or job.started_at is None or job.started_at + limit > now:
                continue
            if job.stop_reason is None:
                job.stop_reason = TIME_LIMIT
                out.append(Kill(job.id, TIME_LIMIT, self.settings.kill_grace_s))

    def _hold_job(self, event: Hold, now: float, out: list[Action]) -> None:
        job = self.job(event.job_id)
        who = event.by or "an operator"
        if job.state is not JobState.QUEUED:
            raise InvalidTransition(f"job {job.id} is {job.state.value}: only a queued job can be held or released")
        if job.held == event.held:
            return
        job.held = event.held
        if event.held:
            self._dequeue(job)
            self._array_slot_freed(job)  # a held element leaves its array's running set
            job.pending_reason = f"held by {who}"
        elif job.waiting_on:
            job.pending_reason = self._waits_for(job)
        else:
            self._admit(job)  # back in its place by submission order
        out.append(Noted(job.id, job.state, now, f"{'held' if event.held else 'released'} by {who}"))

    def _update(self, event: Update, now: float, out: list[Action]) -> None:
        job = self.job(event.job_id)
        changes: dict[str, float | int] = {}
        if event.priority is not None:
            changes["priority"] = event.priority
        if event.time_limit_s is not None:
            changes["time_limit_s"] = event.time_limit_s
        if event.gpus is not None:
            changes["gpus"] = event.gpus
        if not changes:
            return
        if job.state is JobState.RUNNING and set(changes) - {"time_limit_s"}:
            raise SpecError(
                "gpus" if "gpus" in changes else "priority",
                "a running job may change only its time limit (requeue it first)",
            )
        if job.state not in (JobState.QUEUED, JobState.RUNNING):
            raise InvalidTransition(f"job {job.id} is {job.state.value}: only a queued or running job can be updated")
        spec = replace(job.spec, **changes)  # type: ignore[arg-type]
        self.check(spec)  # SpecError names the field; nothing changed
        queued = job.state is JobState.QUEUED and not job.held and not job.waiting_on and job.id not in self._parked
        if queued:
            self._dequeue(job)
        job.spec = spec
        job.demand = self.demand_of(spec)
        if queued:
            self._enqueue(job)
        if job.state is JobState.RUNNING and job.started_at is not None and spec.time_limit_s is not None:
            heapq.heappush(self._deadlines, (job.started_at + spec.time_limit_s, job.id, job.attempts))
        what = ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in changes.items())
        out.append(Noted(job.id, job.state, now, f"updated by {event.by or 'an operator'}: {what}"))

    def _gpu_idle(self, event: GpuIdle) -> None:
        job = self.jobs.get(event.job_id)
        if job is None or job.state is not JobState.RUNNING:
            return  # a late report
        job.idle_since = event.since
        project = self.projects.get(job.spec.project)
        timeout = project.idle_timeout_s if project is not None else None
        if event.since is not None and timeout is not None and job.spec.priority_class in IDLE_STOPPABLE:
            heapq.heappush(self._idle, (event.since + timeout, job.id, event.since))

    def _enforce_idle(self, now: float, out: list[Action]) -> None:
        """Stop the interactive jobs whose GPUs stayed idle for their project's idle timeout."""
        heap = self._idle
        while heap and heap[0][0] <= now:
            _, job_id, since = heapq.heappop(heap)
            job = self.jobs.get(job_id)
            if job is None or job.state is not JobState.RUNNING or job.idle_since != since or job.stop_reason:
                continue  # ended, or busy again since
            minutes = (now - since) / 60
            job.stop_reason = f"idle GPUs for {minutes:.0f} min (project {job.spec.project}'s idle timeout)"
            out.append(Kill(job.id, job.stop_reason, self.settings.kill_grace_s))

    def next_wakeup(self) -> float | None:
        """The earliest time the core needs a Tick: a time limit runs out, or the policy has a timer
        (a LAS demotion, a victim's minimum runtime ending)."""
        heap = self._deadlines
        limit: float | None = None
        while heap:
            deadline, job_id, attempt = heap[0]
            job = self.jobs.get(job_id)
            if job is not None and job.state is JobState.RUNNING and job.attempts == attempt:
                limit = deadline
                break
            heapq.heappop(heap)
        policy = min(self._wakeups.values()) if self._wakeups else None
        # Plain comparisons: this runs after every event the twin replays.
        soonest = limit
        if policy is not None and (soonest is None or policy < soonest):
            soonest = policy
        if self._idle:
            idle = self._idle[0][0]
            if soonest is None or idle < soonest:
                soonest = idle
        return soonest

    def _wake(self, now: float) -> None:
        """Pools whose policy timer has run out need a look this pass."""
        for key, at in list(self._wakeups.items()):
            if at <= now:
                del self._wakeups[key]
                self._mark_dirty(key)

    # -- scheduling ----------------------------------------------------------------------

    def _schedule(self, now: float, out: list[Action]) -> None:
        dirty = self._dirty
        if not self._needs_pass(dirty):
            self._dirty = set()
            return
        view = SchedulerView(self, now, dirty)
        try:
            plan = self.policy.schedule(view)
        except Exception:
            for job_id in view.reserved:
                self.cluster.release(job_id)
            raise
        reserved = view.reserved
        if reserved:
            started = {s.job_id for s in plan.starts}
            for job_id in reserved:
                if job_id not in started:
                    self.cluster.release(job_id)
        for job_id, reason in plan.preempt:
            self._preempt(self.job(job_id), reason, now, out)
        for start in plan.starts:
            self._start(self.job(start.job_id), start.placement, now, out, reserved=start.job_id in reserved)
        for job_id, reason in plan.reasons.items():
            job = self.jobs.get(job_id)
            if job is not None and job.state is JobState.QUEUED:
                job.pending_reason = reason
        for job_id, at in plan.estimates.items():
            job = self.jobs.get(job_id)
            if job is not None and job.state is JobState.QUEUED:
                job.estimated_start = at
        if plan.wakeups:
            self._wakeups.update(plan.wakeups)
        self._dirty = set()

    def _needs_pass(self, dirty: set[str | None] | None) -> bool:
        """Does any queue the policy will look at hold a job? A policy looks only at the queues
        whose situation changed (`SchedulerView.queue_keys`), so with none of them pending
        the pass could decide nothing: it is skipped (most events of a replay end here)."""
        queues = self.queues
        if dirty is None:
            return any(queues.values())
        return any(map(queues.get, dirty))

    def _start(self, job: Job, placement: Placement, now: float, out: list[Action], reserved: bool) -> None:
        if not reserved:
            self.cluster.allocate(job.id, placement)
        self._dequeue(job)
        job.placement = placement
        job.started_at = now
        job.attempts += 1
        job.pending_reason = ""
        job.estimated_start = None
        self.running[job.id] = job
        self._hold(job, placement, now, 1.0)
        self._move(job, JobState.RUNNING, now, f"on {placement.describe()}", out)
        out.append(Launch(job.id, job.spec, placement))
        if job.spec.time_limit_s is not None:
            heapq.heappush(self._deadlines, (now + job.spec.time_limit_s, job.id, job.attempts))

    def _preempt(self, job: Job, reason: str, now: float, out: list[Action]) -> None:
        if job.state is not JobState.RUNNING or job.stop_reason is not None:
            return
        job.stop_reason = f"preempted: {reason}"
        self._move(job, JobState.PREEMPTED, now, job.stop_reason, out)
        out.append(Preempt(job.id, reason, self.settings.preempt_grace_s))

    # -- explanations --------------------------------------------------------------------

    def fit_reason(self, job: Job) -> str:
        """Why `job` does not fit on the free GPUs right now, in one line."""
        return fit_reason(self, job)

    def estimate_start(self, job_id: int, now: float) -> float | None:
        """When a queued job could start if running jobs end at their time limits (None: unknown).

        Ignores the jobs ahead of it, so it is a lower bound; stored in `Job.estimated_start`.
        """
        job = self.job(job_id)
        if job.state is not JobState.QUEUED:
            return None
        key = self.pool_of(job.spec.project)
        running = [j for j in self.running.values() if self.pool_of(j.spec.project) == key]
        grace = max(self.settings.kill_grace_s, self.settings.preempt_grace_s)
        found = reserve(job, self.cluster.pool_nodes(key), running, now, grace)
        job.estimated_start = found.start if found.start < math.inf else None
        return job.estimated_start

    def pending_reason(self, job_id: int) -> str:
        """Why a queued job waits: the policy's reason, or the jobs ahead of it."""
        return pending_reason(self, self.job(job_id))

    # -- restart -------------------------------------------------------------------------

    def restore(self, job: Job, ended: dict[int, JobState] | None = None, now: float = 0.0) -> list[Action]:
        """Put back a job record loaded from the store (the live shell's restart).

        Queued jobs rejoin their queue (or wait again for their dependencies: `ended` gives how
        those no longer in memory ended; one that can never be met cancels the job, the returned
        actions say so); running and preempted jobs take back the GPUs they hold; terminal jobs
        are only remembered.
        """
        out: list[Action] = []
        if job.id in self.jobs:
            raise SpecError("id", f"job {job.id} exists already")
        if not job.state.terminal and job.spec.project not in self.projects:
            raise SpecError("project", str(UnknownName("project", job.spec.project, self.projects)))
        if job.state in (JobState.RUNNING, JobState.PREEMPTED) and job.placement is None:
            raise SpecError("placement", f"job {job.id} is {job.state.value} but holds no GPUs")
        self.jobs[job.id] = job
        job.demand = self.demand_of(job.spec)
        if job.state is JobState.QUEUED and job.spec.after:
            self._wait_for(job, ended or {}, now, out)
        elif job.state is JobState.QUEUED and not job.held:
            self._admit(job)
        elif job.placement is not None and job.state in (JobState.RUNNING, JobState.PREEMPTED):
            self.cluster.allocate(job.id, job.placement)
            self.running[job.id] = job
            self._hold(job, job.placement, job.started_at or 0.0, 1.0)
            if job.spec.array_id is not None and job.spec.array_cap is not None:  # it counts against its cap
                self._counted.add(job.id)
                self._array_active[job.spec.array_id] = self._array_active.get(job.spec.array_id, 0) + 1
            if job.spec.time_limit_s is not None and job.started_at is not None:
                heapq.heappush(self._deadlines, (job.started_at + job.spec.time_limit_s, job.id, job.attempts))
        self._dirty = None
        return out

    def forget(self, job_id: int) -> None:
        """Drop a terminal job from memory (the store keeps it)."""
        job = self.jobs.get(job_id)
        if job is not None and job.state.terminal:
            del self.jobs[job_id]
