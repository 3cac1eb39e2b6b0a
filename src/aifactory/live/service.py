"""FactoryService: the live shell that drives the pure core with the wall clock.

Everything that changes the factory goes through one asyncio lock and one path, the core's
`Driver` (the twin runs the same one on its virtual clock): `Factory.handle(event, clock())`
returns actions; the StateChanged ones (and the jobs they touch) are saved by `store.apply` in
ONE transaction FIRST, and only then are Launch, Kill and Preempt carried out by the executor
(which reports where a launched process runs: `store.set_process`). A crash between the two steps loses
no job: the store already holds what the core decided, and the next open()
re-attaches what still runs and fails what does not.
Events come from four places: the API (submit, cancel), the executor (Finished,
queued by its callback), the clock (a Tick at factory.next_wakeup(), the next
time limit) and the jobs' checkpoint files (a Checkpoint for each new mtime, see
aifactory.live.checkpoints). A background task takes every Finished that is waiting as one batch,
so a burst of completions costs one transaction, not one each.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from aifactory.core.actions import Action, Launch, Noted, StateChanged
from aifactory.core.cluster import Cluster, NodeSpec
from aifactory.core.driver import Clock, Driver
from aifactory.core.errors import AifactoryError, InvalidTransition, NotFound, SpecError, UnknownName
from aifactory.core.events import (
    Cancel,
    Checkpoint,
    Drain,
    Event,
    GpuIdle,
    Hold,
    NodeEvent,
    NodeJoined,
    NodeState,
    Requeue,
    Submit,
    Tick,
    Update,
    node_event_kind,
    node_event_name,
)
from aifactory.core.factory import Factory
from aifactory.core.job import JobSpec
from aifactory.core.power_budget import check_pools
from aifactory.core.project import Account, Department, Project
from aifactory.core.states import JobState
from aifactory.live import gpus
from aifactory.live.checkpoints import CheckpointWatch
from aifactory.live.counters import FloorCounters
from aifactory.live.executors import Executor, ProcessInfo, get_executor, rank_log_path
from aifactory.live.history import save_settings
from aifactory.live.isolation import Isolation
from aifactory.live.settings import LiveSettings
from aifactory.live.store import EventRow, JobRow, NodeEventRow, Store
from aifactory.live.telemetry import BUCKET_S, GpuReader, JobUsage, NvmlReader, Telemetry, holders_of
from aifactory.projects_file import load_projects

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class NodeView:
    """A node's capacity and what of it is held now."""

    spec: NodeSpec
    up: bool
    state: str  # Node.state: up, drained, down, "down, drained"
    holders: tuple[dict[int, int], ...]  # per GPU: job id -> milli-GPU held
    cpu_free_milli: int = 0  # free host CPU and memory (0 where not tracked)
    memory_free_mib: int = 0


@dataclass(frozen=True, slots=True)
class DepartmentView:
    """A department's settings, its projects and the GPUs they hold."""

    settings: Department
    projects: tuple[str, ...]
    in_use: float  # GPUs its projects hold now
    borrowed: float  # held over its quota


def read_projects_file(path: Path, cluster: Cluster) -> tuple[list[Project], list[Department]]:
    """A projects file, validated whole (SpecError names the field); pools must exist on `cluster`."""
    projects, departments = load_projects(path)
    pools = sorted({n.pool for n in cluster})
    for i, project in enumerate(projects):
        if project.pool is not None and project.pool not in pools:
            raise SpecError(f"projects[{i}].pool", f"no node pool {project.pool!r} (have: {', '.join(pools)})")
    return projects, departments


def build_cluster(settings: LiveSettings) -> Cluster:
    """Virtual GPUs when `settings.gpus` is set (0 with CPUs or memory per node: CPU-only nodes),
    else one node with the GPUs NVML finds; none found and none declared is an error naming `gpus`.

    CPU and memory per node are the settings' where given; otherwise a real (NVML) node has this
    host's CPUs and RAM, and virtual nodes track none (they share one host, so each cannot claim it all).
    """
    if settings.nodes < 1:
        raise SpecError("nodes", f"must be at least 1, got {settings.nodes}")
    if settings.executor == "ray":  # the cluster's nodes, as Ray knows them
        from aifactory.live.executors.ray import discover_nodes

        return Cluster(discover_nodes(settings.ray_address))
    if settings.gpus is not None:
        if settings.gpus < 0:
            raise SpecError("gpus", f"must not be negative, got {settings.gpus}")
        cpu, mem = settings.cpu_milli_per_node or 0, settings.memory_mib_per_node or 0
        if settings.gpus == 0 and not (cpu or mem):
            raise SpecError("gpus", "nodes with no GPU need CPUs or memory per node for jobs to ask for")
        return Cluster.virtual(
            settings.gpus, settings.nodes, memory_mib=settings.gpu_memory_mib, cpu_milli=cpu, host_memory_mib=mem
        )
    found = gpus.discover()
    if not found:
        raise SpecError(
            "gpus",
            "no GPU found through NVML: declare virtual GPUs (--gpus N), or CPU-only nodes (--gpus 0 --cpus-per-node N)",
        )
    cpu = settings.cpu_milli_per_node if settings.cpu_milli_per_node is not None else (os.cpu_count() or 0) * 1000
    mem = settings.memory_mib_per_node if settings.memory_mib_per_node is not None else host_memory_mib()
    return Cluster.virtual(
        len(found),
        1,
        model=found[0].model,
        memory_mib=min(g.memory_mib for g in found),
        cpu_milli=cpu,
        host_memory_mib=mem,
    )


def host_memory_mib() -> int:
    """This host's RAM in MiB (0 where the platform does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1 << 20)
    except (AttributeError, ValueError, OSError):
        return 0


DRAINED = "drained_nodes"  # meta key: the nodes an operator drained, as a JSON list


def changed_nodes(store: Store, cluster: Cluster, now: float) -> list[NodeEventRow]:
    """What changed in the floor's nodes since the store last saw them, as node events: a node
    new (or with a new capacity) joined, one that was down is up, a known one missing is down.
    None on a first start."""
    known = {spec.name: spec for spec in store.load_nodes()}
    if not known:
        return []
    last: dict[str, str] = {}
    for row in store.node_events():
        last[node_event_name(row.event)] = node_event_kind(row.event)
    out = [NodeEventRow(now, NodeJoined(n.spec)) for n in cluster if known.get(n.name) != n.spec]
    out += [
        NodeEventRow(now, NodeState(n.name, up=True))
        for n in cluster
        if last.get(n.name) == "down" and known.get(n.name) == n.spec
    ]
    out += [
        NodeEventRow(now, NodeState(name, up=False))
        for name in sorted(set(known) - set(cluster.nodes))
        if last.get(name) != "down"
    ]
    return out


class FactoryService:
    """The live factory: the API engineer's one entry point (see the module docstring)."""

    def __init__(self, settings: LiveSettings, store: Store, factory: Factory, clock: Clock) -> None:
        self.settings = settings
        self.store = store
        self.factory = factory
        self._clock = clock
        self._lock = asyncio.Lock()
        self._inbox: asyncio.Queue[Event | None] = asyncio.Queue()  # None: re-read next_wakeup
        self._waiters: dict[int, list[asyncio.Future[None]]] = {}
        self._task: asyncio.Task[None] | None = None
        # Resolved here: a server that cannot isolate as asked does not start.
        # (On Ray each node resolves it for the jobs it runs.)
        self.isolation = Isolation.configure(
            settings.isolation, settings.home, dict(settings.users), here=settings.executor != "ray"
        )
        self._checkpoints = CheckpointWatch(self.isolation.jobs_dir)
        self._watcher: asyncio.Task[None] | None = None
        self._sampler: asyncio.Task[None] | None = None
        self.telemetry = Telemetry(idle_threshold=settings.idle_threshold)
        self.counters = FloorCounters()
        self._idle_said: dict[int, float | None] = {}  # job id -> the idle-since last told to the core
        self.executor: Executor | None = None
        self.driver: Driver | None = None

    # -- open and close ----------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        settings: LiveSettings,
        executor: str | None = None,
        clock: Clock = time.time,
        lead: Callable[[Store], Awaitable[None]] | None = None,
    ) -> FactoryService:
        """Open the factory: validate, open the store, (`lead`: await the store's leadership before
        anything is written or launched), restore, start the loop."""
        settings.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(settings.home, 0o700)  # tokens, the database and every job's log: the server's alone
        cluster = build_cluster(settings)
        # Read whole before the store is touched: a bad file changes nothing.
        config = read_projects_file(settings.projects_file, cluster) if settings.projects_file else None
        check_pools(settings.pool_budgets_w(), {n.pool for n in cluster})
        settings.logs_dir.mkdir(mode=0o700, exist_ok=True)
        store = Store(settings.database_url).open()
        try:
            if lead is not None:
                await lead(store)
            store.add_node_events(changed_nodes(store, cluster, clock()))
            store.save_nodes(cluster)
            if config is not None:
                store.save_config(*config)
            projects = store.load_projects()
            if not projects:  # first start: one project owning every GPU
                projects = [Project("default", quota=float(cluster.total_gpus()))]
                store.save_projects(projects)
            factory = Factory(cluster, projects, settings.core(), departments=store.load_departments())
            save_settings(store, factory.settings)  # the floor's history replays under these
            service = cls(settings, store, factory, clock)
            await service._start(executor or settings.executor)
        except BaseException:
            store.close()
            raise
        return service

    async def _start(self, executor: str) -> None:
        self.executor = get_executor(
            executor, self.settings.logs_dir, self._inbox.put_nowait, self._started, self.isolation
        )
        self.isolation = getattr(self.executor, "isolation", self.isolation)  # what is in force on the nodes
        self.driver = Driver(
            self.factory,
            self._clock,
            self.executor,
            self._wake_loop,
            persist=self._persist,
            on_change=self._changed,
            on_note=self._noted,
        )
        self._restore()
        self._restore_drained()
        await self._handle([Tick()])  # a first pass: restored queued jobs may start now
        self._task = asyncio.get_running_loop().create_task(self._run(), name="aifactory-service")
        await self._start_telemetry()
        if not getattr(self.executor, "reports_checkpoints", False):  # the job's files are on this machine
            self._watcher = asyncio.get_running_loop().create_task(
                self._watch_checkpoints(), name="aifactory-checkpoints"
            )

    def _restore(self) -> None:
        """Give the core back its active jobs; re-attach the processes of running ones."""
        assert self.executor is not None and self.driver is not None
        for row in self.store.active_rows():
            job = row.to_job()
            try:
                if job.state is JobState.QUEUED:
                    self.factory.check(job.spec)
                ended = self._ended(d for d, _ in job.spec.after) if job.spec.after else None
                self.driver.commit(self.factory.restore(job, ended, self._clock()))
            except (AifactoryError, ValueError) as exc:
                self._fail_row(row, f"cannot restore after restart: {exc}")
                if row.pid is not None:
                    self.executor.attach(row.id, row.pid, row.pgid, row.log_path)
                    self.executor.stop(row.id, self.settings.kill_grace_s)
                continue
            if job.state is not JobState.QUEUED:
                self.executor.attach(row.id, row.pid, row.pgid, row.log_path)
                if job.stop_reason is not None:  # a cancel, time limit or preemption was under way
                    self.executor.stop(row.id, self.factory.settings.kill_grace_s)

    def _ended(self, job_ids: Iterable[int]) -> dict[int, JobState]:
        """How the jobs among these that the core no longer holds ended (from the store);
        SpecError naming `after` for one that does not exist."""
        out = {}
        for job_id in job_ids:
            if job_id in self.factory.jobs:
                continue
            try:
                out[job_id] = self.store.get_job(job_id).state
            except NotFound:
                raise SpecError("after", f"no job {job_id}") from None
        return out

    def _fail_row(self, row: JobRow, reason: str) -> None:
        job = row.to_job()
        now = self._clock()
        job.state, job.reason, job.finished_at = JobState.FAILED, reason, now
        self.store.apply([StateChanged(row.id, row.state, JobState.FAILED, now, reason)], {row.id: job})

    async def close(self) -> None:
        """Stop the loop and the store; running jobs keep running (re-attached on the next open)."""
        for task in (self._task, self._watcher, self._sampler):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self._task = self._watcher = self._sampler = None
        async with self._lock:
            if self.executor is not None:
                await self.executor.close()
            self._store_telemetry(flush=True)
            self.store.close()
        for futures in self._waiters.values():
            for fut in futures:
                fut.cancel()
        self._waiters.clear()

    async def __aenter__(self) -> FactoryService:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    # -- the loop ------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            first = await self._next_event()
            batch = [] if first is None else [first]
            while not self._inbox.empty():
                event = self._inbox.get_nowait()
                if event is not None:
                    batch.append(event)
            if batch:
                try:
                    await self._handle(batch)
                except Exception:  # the loop must outlive any one bad round
                    log.exception("the service loop failed to handle %r", batch)

    async def _next_event(self) -> Event | None:
        """The next Finished from the executor, or a Tick when the next time limit is due."""
        assert self.driver is not None
        wake = self.driver.armed = self.factory.next_wakeup()  # what the loop sleeps towards
        if wake is None:
            return await self._inbox.get()
        delay = wake - self._clock()
        if delay <= 0:
            return Tick()
        try:
            return await asyncio.wait_for(self._inbox.get(), delay)
        except TimeoutError:
            return Tick()

    async def _watch_checkpoints(self) -> None:
        """Every `checkpoint_poll_s`, a Checkpoint event for each running job that touched its file."""
        while True:
            await asyncio.sleep(self.settings.checkpoint_poll_s)
            running = [j.id for j in self.factory.running.values() if j.state is JobState.RUNNING]
            for job_id in self._checkpoints.poll(running):
                self._inbox.put_nowait(Checkpoint(job_id))

    # -- telemetry ------------------------------------------------------------------------

    async def _start_telemetry(self) -> None:
        """Read the GPUs through NVML: the executor's nodes' (Ray: a sampler on each node), or this
        machine's where the floor's one node is this machine's GPUs."""
        if self.settings.telemetry_s <= 0:
            return
        reader: GpuReader
        remote = getattr(self.executor, "gpu_reader", None)
        if remote is not None:
            reader = remote()
        else:
            cluster = self.factory.cluster
            if self.settings.gpus is not None or len(cluster.nodes) != 1:
                return  # virtual GPUs: NVML here says nothing about them
            reader = NvmlReader(next(iter(cluster.nodes)))
        if await asyncio.to_thread(reader.open):
            self._sampler = asyncio.get_running_loop().create_task(self._sample(reader), name="aifactory-telemetry")

    async def _sample(self, reader: GpuReader) -> None:
        """Every `telemetry_s`: read the GPUs, fold the readings into the jobs holding them; the
        processes on each GPU every third round; the history to the store every minute."""
        rounds = 0
        stored = pruned = self._clock()
        try:
            while True:
                readings = await asyncio.to_thread(reader.read)
                now = self._clock()
                self.telemetry.fold(readings, now, holders_of(self.factory.cluster), self._project_of)
                self._report_idle()
                if rounds % 3 == 0:
                    groups: dict[int, int] = getattr(self.executor, "process_groups", dict)()
                    self.telemetry.attribute_processes(await asyncio.to_thread(reader.job_memory, groups))
                rounds += 1
                if now - stored >= BUCKET_S:
                    stored = now
                    await asyncio.to_thread(self._store_telemetry)
                if now - pruned >= 3600:
                    pruned = now
                    await asyncio.to_thread(self.store.prune_gpu_samples, now - self.settings.history_days * 86400)
                await asyncio.sleep(self.settings.telemetry_s)
        finally:
            await asyncio.to_thread(reader.close)

    def _report_idle(self) -> None:
        """A GpuIdle event for each running job whose GPUs went idle or busy again (the core's idle rule)."""
        for job_id, usage in self.telemetry.jobs.items():
            if self._idle_said.get(job_id) != usage.idle_since:
                self._idle_said[job_id] = usage.idle_since
                self._inbox.put_nowait(GpuIdle(job_id, usage.idle_since))
        for job_id in [j for j in self._idle_said if j not in self.telemetry.jobs]:
            del self._idle_said[job_id]

    def _project_of(self, job_id: int) -> str | None:
        job = self.factory.jobs.get(job_id)
        return job.spec.project if job is not None else None

    def _store_telemetry(self, flush: bool = False) -> None:
        """The GPU history completed so far, and the running jobs' usage, into the store."""
        try:
            self.store.add_gpu_samples(self.telemetry.take_samples(flush))
            self.store.save_job_usage(list(self.telemetry.jobs.values()))
        except Exception:  # telemetry must never stop the floor
            log.exception("storing GPU telemetry failed")

    def usage_of(self, job_id: int) -> JobUsage | None:
        """A job's GPU usage: live while it runs, else as stored when it ended (None: never read)."""
        live = self.telemetry.jobs.get(job_id)
        return live if live is not None else self.store.job_usage([job_id]).get(job_id)

    async def _handle(self, events: Iterable[Event]) -> None:
        """Decide every event, then carry out the batch: one transaction for a burst of events."""
        async with self._lock:
            actions: list[Action] = []
            nodes: list[NodeEventRow] = []
            idle: list[tuple[float, GpuIdle]] = []
            for event in events:
                now = self._clock()
                try:
                    actions.extend(self.factory.handle(event, now))
                except AifactoryError as exc:  # e.g. a late report about a job restored as failed
                    log.warning("ignored %r: %s", event, exc)
                    continue
                if isinstance(event, NodeEvent):
                    nodes.append(NodeEventRow(now, event))
                elif isinstance(event, GpuIdle):
                    idle.append((now, event))
            self._commit(actions)
            self._nodes_changed(nodes)
            self.store.add_job_events(idle)  # the idle rule went by them: the twin replays them

    def _nodes_changed(self, rows: list[NodeEventRow]) -> None:
        """Into the event log (the twin replays it); a node that joined is saved with its capacity."""
        if rows:
            for r in rows:
                log.info(
                    "node node=%s event=%s by=%s",
                    json.dumps(node_event_name(r.event)),
                    node_event_kind(r.event),
                    json.dumps(r.by),
                )
            self.store.add_node_events(rows)
            self.store.save_nodes([r.event.spec for r in rows if isinstance(r.event, NodeJoined)])

    def _commit(self, actions: Sequence[Action]) -> None:
        """Persist the transitions, then carry out the rest (the driver). Call with the lock held."""
        assert self.driver is not None
        self.driver.commit(actions)

    # -- the driver's hooks --------------------------------------------------------------

    def _persist(self, actions: Sequence[Action]) -> None:
        """The round's transitions and the jobs they touch, in one transaction, before any action.
        A note (held, released, updated) goes into the event log as a change from a state to itself."""
        changes = [
            a if isinstance(a, StateChanged) else StateChanged(a.job_id, a.state, a.state, a.at, a.reason)
            for a in actions
            if isinstance(a, StateChanged | Noted)
        ]
        touched = {a.job_id for a in actions if not isinstance(a, Launch)}
        self.store.apply(changes, {i: self.factory.jobs[i] for i in sorted(touched) if i in self.factory.jobs})
        for a in actions:
            if isinstance(a, Noted) and a.reason.startswith("updated") and a.job_id in self.factory.jobs:
                self.store.set_spec(a.job_id, self.factory.jobs[a.job_id].spec)

    def _changed(self, change: StateChanged) -> None:
        job = self.factory.jobs.get(change.job_id)
        self.counters.record(change, job)
        if log.isEnabledFor(logging.INFO):  # one structured line per decision (logfmt)
            who = f" project={json.dumps(job.spec.project)} user={json.dumps(job.spec.user)}" if job else ""
            log.info(
                "decision job=%d%s from=%s to=%s reason=%s",
                change.job_id,
                who,
                change.old or "-",
                change.new,
                json.dumps(change.reason),
            )
        if change.new is JobState.RUNNING:  # a checkpoint counts from this start on
            self._checkpoints.baseline(change.job_id)
        elif change.new.terminal:
            self.factory.forget(change.job_id)
            usage = self.telemetry.forget(change.job_id)
            if usage is not None:
                self.store.save_job_usage([usage])
                self.store.add_gpu_samples(self.telemetry.take_samples())
            # Its HOME and TMPDIR go with it (in a thread: a job may have left gigabytes there).
            asyncio.get_running_loop().run_in_executor(None, self.isolation.remove_scratch, change.job_id)
            for fut in self._waiters.pop(change.job_id, []):
                if not fut.done():
                    fut.set_result(None)

    def _noted(self, note: Noted) -> None:
        log.info("note job=%d state=%s what=%s", note.job_id, note.state, json.dumps(note.reason))

    def _wake_loop(self, _at: float) -> None:
        self._inbox.put_nowait(None)  # the loop sleeps towards a later wake-up: it reads the new one

    def _started(self, job_id: int, info: ProcessInfo) -> None:
        """A launched job's process exists: record where it runs (for re-attach)."""
        self.store.set_process(job_id, info.pid, info.pgid, info.log_path)

    # -- commands ------------------------------------------------------------------------

    async def submit(self, spec: JobSpec) -> JobRow:
        """Queue a job (and start it if it fits). SpecError names the field; nothing is stored then."""
        async with self._lock:
            self.factory.check(spec)
            settled = self._ended([d for d, _ in spec.after])
            now = self._clock()
            job_id = self.store.create_job(spec, now)
            try:
                actions = self.factory.handle(Submit(job_id, spec, tuple(settled.items())), now)
            except AifactoryError as exc:
                self._fail_row(self.store.get_job(job_id), f"rejected: {exc}")
                raise
            # create_job already wrote the job's first event.
            first = [a for a in actions if isinstance(a, StateChanged) and a.job_id == job_id and a.old is None]
            for change in first:
                self._changed(change)  # counted and logged as the rest (stored already)
            self._commit([a for a in actions if not any(a is f for f in first)])
            # Just saved, its process (if it starts now) not spawned yet: no need to read it back.
            return JobRow.from_job(self.factory.jobs[job_id])

    async def submit_array(
        self, spec: JobSpec, indices: list[int], cap: int | None, params: list[dict[str, str]]
    ) -> list[JobRow]:
        """Queue a job array: one job per index (each with its own parameters in its environment),
        at most `cap` running at once. Its id is its first element's. SpecError: nothing stored."""
        async with self._lock:
            self.factory.check(spec)
            settled = tuple(self._ended(d for d, _ in spec.after).items())
            now = self._clock()
            specs = [
                replace(spec, array_index=i, array_cap=cap, env={**spec.env, **p})
                for i, p in zip(indices, params, strict=True)
            ]
            ids = self.store.create_jobs(specs, now, array=True)
            actions: list[Action] = []
            for job_id, element in zip(ids, specs, strict=True):
                actions += self.factory.handle(Submit(job_id, replace(element, array_id=ids[0]), settled), now)
            first = [a for a in actions if isinstance(a, StateChanged) and a.old is None]
            for change in first:
                self._changed(change)  # counted and logged as the rest (stored already)
            self._commit([a for a in actions if not any(a is f for f in first)])
            return [JobRow.from_job(self.factory.jobs[i]) for i in ids if i in self.factory.jobs]

    def array(self, array_id: int) -> list[JobRow]:
        """An array's elements, as stored at one moment ([]: no such array)."""
        return self.store.array_jobs(array_id)

    async def act(self, event: Hold | Update | Requeue) -> JobRow:
        """Hold or release, update or requeue a job (InvalidTransition / SpecError say why not;
        nothing changes then). The change goes into the event log with who made it."""
        async with self._lock:
            if event.job_id not in self.factory.jobs:  # ended (the core keeps active jobs only)
                row = self.store.get_job(event.job_id)
                raise InvalidTransition(f"job {row.id} is {row.state.value}: it has ended")
            now = self._clock()
            self._commit(self.factory.handle(event, now))
            self.store.add_job_events([(now, event)])  # the twin replays it
        return self.store.get_job(event.job_id)

    async def dry_run(self, spec: JobSpec) -> tuple[str | None, str, float | None]:
        """Where `spec` would run now (its placement), or why it would wait and its estimated
        start; decided by a copy of the core, so nothing is stored or changed."""
        async with self._lock:
            self.factory.check(spec)
            settled = tuple(self._ended(d for d, _ in spec.after).items())
            trial = copy.deepcopy(self.factory)
        now = self._clock()
        job_id = max(trial.jobs, default=0) + 1_000_000_000  # an id no real job has
        trial.handle(Submit(job_id, spec, settled), now)
        job = trial.jobs[job_id]
        if job.state is JobState.RUNNING and job.placement is not None:
            return job.placement.describe(), "", now
        return None, trial.pending_reason(job_id), trial.estimate_start(job_id, now)

    async def cancel(self, job_id: int, by: str = "") -> JobRow:
        """Cancel a queued job now, or stop a running one (it ends cancelled once its process exits);
        the reason names who (`by`)."""
        async with self._lock:
            if job_id not in self.factory.jobs:
                row = self.store.get_job(job_id)  # NotFound for an unknown id
                raise InvalidTransition(f"job {job_id} is already {row.state.value}")
            event = Cancel(job_id, f"cancelled by {by}") if by else Cancel(job_id)
            self._commit(self.factory.handle(event, self._clock()))
        return self.store.get_job(job_id)

    async def set_project(self, project: Project) -> Account:
        """Add or change a project (SpecError names a bad field; nothing is saved then)."""
        pools = sorted({n.pool for n in self.factory.cluster})
        if project.pool is not None and project.pool not in pools:
            raise SpecError("pool", f"no node pool {project.pool!r} (have: {', '.join(pools)})")
        if project.department is not None and project.department not in self.factory.departments:
            raise SpecError("department", str(UnknownName("department", project.department, self.factory.departments)))
        async with self._lock:
            self.factory.set_project(project)  # validates first, changes nothing on error
            self.store.save_projects([project])
            self._commit(self.factory.handle(Tick(), self._clock()))  # new quotas: look at the queue again
        return next(a for a in self.projects() if a.project == project.name)

    async def delete_project(self, name: str, force: bool = False) -> list[int]:
        """Remove a project: refused while it has queued or running jobs, unless `force` cancels
        them first (their ids are returned)."""
        return await self._delete([name], force, lambda: self._drop_project(name), f"project {name} deleted")

    async def delete_department(self, name: str, force: bool = False) -> list[int]:
        """Remove a department (its projects stand alone after): as `delete_project` for its projects' jobs."""
        if name not in self.factory.departments:
            raise UnknownName("department", name, self.factory.departments)
        members = [p.name for p in self.factory.projects.values() if p.department == name]
        return await self._delete(members, force, lambda: self._drop_department(name), f"department {name} deleted")

    async def _delete(self, projects: list[str], force: bool, drop: Callable[[], None], why: str) -> list[int]:
        async with self._lock:
            for name in projects:
                if name not in self.factory.projects:
                    raise UnknownName("project", name, self.factory.projects)
            active = self.factory.active_jobs(projects)
            if active and not force:
                raise SpecError("force", f"{len(active)} queued or running jobs (give --force to cancel them)")
            for job_id in active:
                self._commit(self.factory.handle(Cancel(job_id, f"cancelled: {why}"), self._clock()))
        # Running jobs end when their processes have; the project goes once none is active.
        for job_id in active:
            await self.wait(job_id, timeout=self.settings.kill_grace_s + 30)
        async with self._lock:
            drop()
        return active

    def _drop_project(self, name: str) -> None:
        self.factory.remove_project(name)
        self.store.delete_projects([name])

    def _drop_department(self, name: str) -> None:
        members = [p for p in self.factory.projects.values() if p.department == name]
        self.factory.remove_department(name)
        self.store.save_projects(members)  # now in no department
        self.store.delete_departments([name])

    def quota_sum(self) -> tuple[float, int]:
        """(GPUs the projects are guaranteed in all, GPUs the floor has): over-subscribed when the first is more."""
        return sum(p.quota for p in self.factory.projects.values()), self.factory.cluster.total_gpus()

    async def drain(self, node: str, drained: bool = True, by: str = "") -> NodeView:
        """Take `node` out of scheduling (its running jobs run on) or give it back; kept across
        restarts (the store's meta `drained_nodes`). UnknownName for a node the floor lacks."""
        async with self._lock:
            now = self._clock()
            event = Drain(node, drained)
            self._commit(self.factory.handle(event, now))
            self._save_drained()
            self._nodes_changed([NodeEventRow(now, event, by)])
        return next(v for v in self.nodes() if v.spec.name == node)

    def _save_drained(self) -> None:
        self.store.set_meta(DRAINED, json.dumps(sorted(n.name for n in self.factory.cluster if n.drained)))

    def _restore_drained(self) -> None:
        names = json.loads(self.store.get_meta(DRAINED, "[]") or "[]")
        for name in names:
            if name in self.factory.cluster.nodes:  # a node since removed from the floor: forgotten
                self.factory.handle(Drain(name), self._clock())

    async def set_department(self, department: Department) -> DepartmentView:
        """Add or change a department (its projects name it in `Project.department`)."""
        async with self._lock:
            self.factory.set_department(department)
            self.store.save_departments([department])
            self._commit(self.factory.handle(Tick(), self._clock()))
        return next(v for v in self.departments() if v.settings.name == department.name)

    async def wait(self, job_id: int, timeout: float | None = None) -> JobRow:
        """The job's row once it is in a terminal state (TimeoutError after `timeout` seconds)."""
        row = self.store.get_job(job_id)
        if row.state.terminal:
            return row
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(job_id, []).append(fut)
        try:
            await asyncio.wait_for(fut, timeout)
        finally:
            futures = self._waiters.get(job_id, [])
            if fut in futures:
                futures.remove(fut)
        return self.store.get_job(job_id)

    # -- queries -------------------------------------------------------------------------

    def job(self, job_id: int) -> JobRow:
        return self.store.get_job(job_id)

    def jobs(
        self,
        project: str | None = None,
        state: JobState | str | Collection[JobState | str] | None = None,
        user: str | None = None,
        limit: int | None = None,
        *,
        projects: Collection[str] | None = None,
        before: int | None = None,
    ) -> list[JobRow]:
        """Jobs newest first (Store.list_jobs); blocking: async callers run it in a thread."""
        return self.store.list_jobs(project, state, user, limit, projects=projects, before=before)

    def is_active(self, job_id: int) -> bool:
        """Queued, running or preempted: the core still holds it."""
        return job_id in self.factory.jobs

    def history(self, job_id: int) -> list[EventRow]:
        self.store.get_job(job_id)  # NotFound for an unknown id
        return self.store.events(job_id=job_id)

    def log_path(self, job_id: int) -> Path:
        return self.log_path_of(self.store.get_job(job_id))

    def log_paths(self, row: JobRow) -> list[Path]:
        """Every rank's log: one for most jobs, one per node of a multi-node gang."""
        ranks = len(row.placement.parts) if row.placement is not None else 1
        return [rank_log_path(self.log_path_of(row), k) for k in range(ranks)]

    def log_path_of(self, row: JobRow) -> Path:
        job_id = row.id
        if row.log_path:
            return Path(row.log_path)
        return self.settings.logs_dir / f"job-{job_id}.log"

    def pending_reason(self, job_id: int) -> str:
        """Why a queued job waits ("" for any other job)."""
        if job_id in self.factory.jobs:
            return self.factory.pending_reason(job_id)
        self.store.get_job(job_id)
        return ""

    def estimate_start(self, job_id: int) -> float | None:
        """When a queued job could start if running jobs end at their time limits (None: unknown)."""
        job = self.factory.jobs.get(job_id)
        if job is None or job.state is not JobState.QUEUED:
            return None
        return self.factory.estimate_start(job_id, self._clock())

    def nodes(self) -> list[NodeView]:
        return [
            NodeView(n.spec, n.up, n.state, tuple(dict(h) for h in n.holders), n.cpu_free, n.memory_free)
            for n in self.factory.cluster
        ]

    def projects(self) -> list[Account]:
        """Every project's settings and account (`Factory.accounts`), by name."""
        return self.factory.accounts(self._clock())

    def departments(self) -> list[DepartmentView]:
        """Every department with its projects and the GPUs they hold, by name."""
        members: dict[str, list[str]] = {}
        for p in self.factory.projects.values():
            if p.department is not None:
                members.setdefault(p.department, []).append(p.name)
        views = []
        for d in sorted(self.factory.departments.values(), key=lambda d: d.name):
            used = self.factory.dept_usage.get(d.name, 0.0)
            views.append(DepartmentView(d, tuple(sorted(members.get(d.name, []))), used, max(0.0, used - d.quota)))
        return views
