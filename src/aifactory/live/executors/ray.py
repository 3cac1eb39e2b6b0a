"""The Ray executor: the floor across machines, on an existing Ray cluster (`up --executor ray`).

Our scheduler stays the authority on placement (../shared/notes/ray_executor.md): each part of a
job (one per node of its placement, rank = position) is a detached, named Ray actor
(`aifactory/job-<id>-r<rank>`) pinned to its node (node affinity, `soft=False`) that asks Ray for
no CPU and no GPU. On its node the actor starts the job's wrapper (wrap.py, as the local executor
does) with that node's `CUDA_VISIBLE_DEVICES` and the gang's rendezvous variables, and the
wrapper watches the actor's process: if the node's Ray processes die, the job's process group
dies with them (no orphan keeps a GPU). A kill with grace runs on the node (its SIGKILL timer
completes even if the server dies meanwhile). The server mirrors each rank's log into its own
logs directory, so `logs -f` follows a job on any machine. After a server restart the actors are
found again by name.

Nodes are discovered from the cluster (`discover_nodes`) and watched: a node that joins later is
probed and joins the floor (`NodeJoined`), one that dies is a `NodeState` event. A node's GPUs are
probed on the node through NVML (count, model, memory); where NVML sees none, Ray's `GPU` resource
counts (a node started with `--num-gpus N` declares N virtual GPUs, for tests), with the model and
memory from the labels `aifactory/gpu-model` and `aifactory/gpu-memory-mib`. Its name is the label
`aifactory/node` (else the start of its Ray node id), its pool and rack `aifactory/pool` and
`aifactory/rack`.

Each node isolates the jobs it runs as the server's `--isolation` asks (`Isolation.on_node`: auto
is full where the node's Ray runs as root). A job's checkpoint reports are read on its node and
reach the core as `Checkpoint` events.

`import ray` happens here only, on first use: the CLI starts as fast as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import signal
import socket
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import EllipsisType
from typing import Any, ClassVar

from aifactory.core.actions import Kill, Launch, Preempt
from aifactory.core.cluster import NodeSpec
from aifactory.core.errors import AifactoryError
from aifactory.core.events import Checkpoint, Finished, NodeJoined, NodeState
from aifactory.core.job import JobSpec, Placement
from aifactory.live.checkpoints import checkpoint_path
from aifactory.live.executors import OnFinished, OnStarted, ProcessInfo, no_record, rank_log_path, wrap
from aifactory.live.executors.node import (
    LOST,
    free_port,
    is_wrapper_alive,
    prepare_rank,
    read_status,
    spawn_wrapper,
    status_path,
)
from aifactory.live.gpus import GpuInfo, discover
from aifactory.live.isolation import Isolation
from aifactory.live.telemetry import GpuReading, NvmlReader

log = logging.getLogger(__name__)

NAMESPACE = "aifactory"
ADDRESS_ENV = "AIFACTORY_RAY_ADDRESS"
NODE_LABEL = "aifactory/node"
LABELS = "aifactory/"  # node, pool, rack, gpu-model, gpu-memory-mib
PROBE_TIMEOUT_S = 60.0  # a node's GPU probe (a task on the node); past it, Ray's resources count
MIRROR_S = 0.5  # how often each rank's log is copied from its node
GANG_GRACE_S = 10.0
NODE_POLL_S = 1.0  # how often the cluster's nodes are listed


def connect(address: str | None = None) -> Any:
    """The `ray` module, connected to the cluster at `address` (else $AIFACTORY_RAY_ADDRESS, else
    "auto"); AifactoryError naming `ray_address` if Ray is missing or no cluster answers."""
    try:
        import ray
    except ImportError:
        raise AifactoryError("executor: ray is not installed (pip install 'aifactory[ray]')") from None
    if not ray.is_initialized():
        target = address or os.environ.get(ADDRESS_ENV) or "auto"
        host, _, port = target.rpartition(":")
        if host and port.isdigit():  # Ray itself retries for minutes: say at once that nothing answers
            try:
                socket.create_connection((host, int(port)), timeout=3).close()
            except OSError as exc:
                raise AifactoryError(f"ray_address: no Ray cluster answers at {target}: {exc}") from None
        try:
            ray.init(address=target, namespace=NAMESPACE, log_to_driver=False, logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise AifactoryError(f"ray_address: no Ray cluster at {target!r}: {exc}") from None
    return ray


def node_name(info: dict[str, Any]) -> str:
    return str((info.get("Labels") or {}).get(NODE_LABEL) or info["NodeID"][:8])


def probe() -> list[GpuInfo]:
    """The GPUs NVML sees on the node this runs on (the body of a Ray task; [] without NVML)."""
    return discover()


def node_spec(info: dict[str, Any], gpus: list[GpuInfo]) -> NodeSpec:
    """A Ray node as a floor node: its GPUs as NVML saw them there (`gpus`; at most as many as Ray
    was told it has), else as Ray and the node's labels declare them."""
    res = info.get("Resources") or {}
    labels = info.get("Labels") or {}
    declared = int(res.get("GPU", 0))
    if gpus:
        if len({g.model for g in gpus}) > 1:
            log.warning("node %s mixes GPU models %s: all are taken as %s", node_name(info), gpus, gpus[0].model)
        count, model, memory = min(declared, len(gpus)), gpus[0].model, min(g.memory_mib for g in gpus)
    else:
        model = labels.get(LABELS + "gpu-model") or next(
            (k.removeprefix("accelerator_type:") for k in res if k.startswith("accelerator_type:")), "virtual"
        )
        memory_label = str(labels.get(LABELS + "gpu-memory-mib", "0"))
        count, memory = declared, int(memory_label) if memory_label.isdigit() else 0
    return NodeSpec(
        name=node_name(info),
        gpu_count=count,
        gpu_model=str(model),
        gpu_memory_mib=memory,
        pool=str(labels.get(LABELS + "pool") or "default"),
        cpu_milli=int(res.get("CPU", 0) * 1000),
        memory_mib=int(res.get("memory", 0)) >> 20,
        rack=labels.get(LABELS + "rack"),
    )


def probe_nodes(ray: Any, infos: list[dict[str, Any]]) -> list[NodeSpec]:
    """Probe each node's GPUs on the node itself (in parallel), then describe it."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    task = ray.remote(num_cpus=0, num_gpus=0, max_retries=0)(probe)
    refs = [
        task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=i["NodeID"], soft=False)).remote()
        for i in infos
    ]
    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=PROBE_TIMEOUT_S)
    specs = []
    for info, ref in zip(infos, refs, strict=True):
        gpus: list[GpuInfo] = []
        try:
            if ref in ready:
                gpus = ray.get(ref)
            else:
                log.warning(
                    "node %s: no GPU probe within %.0f s: Ray's resources count", node_name(info), PROBE_TIMEOUT_S
                )
        except Exception as exc:
            log.warning("node %s: GPU probe failed (%s): Ray's resources count", node_name(info), exc)
        specs.append(node_spec(info, gpus))
    return specs


def gpu_nodes(ray: Any) -> list[dict[str, Any]]:
    """The cluster's live nodes that have GPUs (Ray's `GPU` resource)."""
    return [i for i in ray.nodes() if i.get("Alive") and (i.get("Resources") or {}).get("GPU", 0) > 0]


def discover_nodes(address: str | None = None) -> list[NodeSpec]:
    """The cluster's live nodes that have GPUs, as the floor's nodes (sorted by name)."""
    ray = connect(address)
    specs = probe_nodes(ray, gpu_nodes(ray))
    if not specs:
        raise AifactoryError("executor: the Ray cluster has no live node with GPUs (start nodes with --num-gpus)")
    return sorted(specs, key=lambda s: s.name)


@dataclass(frozen=True, slots=True)
class RankOrder:
    """What a node needs to start one rank of a job (sent to its actor)."""

    job_id: int
    spec: JobSpec
    placement: Placement
    rank: int
    addresses: list[str]  # each rank's node address (rank 0's is MASTER_ADDR)
    port: int
    isolation: tuple[str, str, dict[str, str]]  # level, jobs directory name, users -> accounts
    log_path: str  # on the node
    cwd: str  # where a job with no workdir runs (the server's)


class JobPart:
    """One rank of a job, on its node (the body of a Ray actor; see `_actor_class`). It never
    raises from its constructor: a job that cannot start there is an `error`, not a dead actor
    (which would read as the node's death)."""

    def __init__(self, order: RankOrder) -> None:
        self.job_id, self.rank = order.job_id, order.rank
        self.log_path = Path(order.log_path)
        self.status = status_path(self.log_path)
        self.pid: int | None = None
        self.error = ""
        self._kill: asyncio.TimerHandle | None = None
        try:
            self.log_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.isolation = Isolation.on_node(*order.isolation)
            argv, env = prepare_rank(
                self.isolation,
                order.job_id,
                order.spec,
                order.placement,
                order.rank,
                order.addresses,
                order.port,
                self.status,
                order.cwd,
                watch=os.getpid(),  # the job dies with this actor (node loss, ray stop)
            )
            self.pid = spawn_wrapper(argv, env, self.log_path)
        except Exception as exc:
            self.error = str(exc) or type(exc).__name__

    def info(self) -> tuple[int | None, str]:
        """(the wrapper's pid, "") once started; (None, why) if the job could not start here."""
        return self.pid, self.error

    async def wait(self) -> tuple[int | None, str]:
        """(exit code, reason) once the job's wrapper has ended; its cgroup and scratch then go."""
        if self.pid is None:
            return wrap.CANNOT_RUN, self.error
        while is_wrapper_alive(self.pid, self.status):
            await asyncio.sleep(0.05)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, os.WNOHANG)
        done = read_status(self.status)
        self.isolation.finished(self.job_id, self.rank)
        self.isolation.remove_scratch(self.job_id, self.rank)
        return done if done is not None else (None, LOST)

    def kill(self, grace_s: float) -> None:
        """SIGTERM the job's process group, SIGKILL after `grace_s` (the timer runs here, on the node)."""
        if self.pid is None:
            return
        sig = signal.SIGKILL if grace_s <= 0 else signal.SIGTERM
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)
        if sig is signal.SIGKILL:  # what left the process group is still in the job's cgroup
            self.isolation.kill_all(self.job_id, self.rank)
        elif self._kill is None:
            self._kill = asyncio.get_running_loop().call_later(grace_s, self.kill, 0.0)

    def checkpointed(self) -> int | None:
        """The mtime (ns) of the job's checkpoint file on this node (None: none yet)."""
        if self.pid is None:
            return None
        try:
            return os.stat(checkpoint_path(self.isolation.jobs_dir, self.job_id)).st_mtime_ns
        except OSError:
            return None

    def read(self, offset: int, size: int) -> bytes:
        try:
            with self.log_path.open("rb") as f:
                f.seek(offset)
                return f.read(size)
        except OSError:
            return b""


class NodeSampler:
    """The GPU telemetry of one node, read on the node (the body of a Ray actor, one per node,
    owned by the server: it goes when the server does)."""

    def __init__(self, node: str) -> None:
        self.reader = NvmlReader(node)
        self.has_gpus = self.reader.open()

    def ready(self) -> bool:
        return self.has_gpus

    def read(self) -> list[GpuReading]:
        return self.reader.read() if self.has_gpus else []

    def job_memory(self) -> dict[int, int]:
        # No process groups are known here: a process's job is its cgroup's or its environment's.
        return self.reader.job_memory({}) if self.has_gpus else {}


class RayGpuReader:
    """Every node's GPUs, through a NodeSampler on each (`GpuReader` for the service)."""

    TIMEOUT_S = 10.0

    def __init__(self, executor: RayExecutor) -> None:
        self.executor = executor
        self._samplers: dict[str, Any] = {}  # node -> its sampler (only nodes whose NVML answered)
        self._tried: set[str] = set()

    def open(self) -> bool:
        self._refresh()
        return True  # nodes may join later with GPUs: keep looking

    def _refresh(self) -> None:
        """A sampler on each floor node not tried yet (a node that joined, or came back)."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        ray = self.executor.ray
        nodes = self.executor._node_ids()
        fresh = {}
        for name in sorted(set(nodes) & self.executor._floor - self._tried):
            strategy = NodeAffinitySchedulingStrategy(node_id=nodes[name][0], soft=False)
            cls = ray.remote(num_cpus=0, num_gpus=0, max_restarts=0)(NodeSampler)
            fresh[name] = cls.options(scheduling_strategy=strategy).remote(name)
            self._tried.add(name)
        for name, actor in fresh.items():
            try:
                if ray.get(actor.ready.remote(), timeout=self.TIMEOUT_S):
                    self._samplers[name] = actor
                else:
                    ray.kill(actor)
            except Exception as exc:
                log.warning("node %s: no GPU telemetry (%s)", name, exc)
        for name in set(self._tried) - set(nodes):  # gone: tried again when it comes back
            self._tried.discard(name)
            self._samplers.pop(name, None)

    def _gather(self, method: str) -> list[Any]:
        ray = self.executor.ray
        refs = {name: getattr(a, method).remote() for name, a in self._samplers.items()}
        out = []
        for name, ref in refs.items():
            try:
                out.append(ray.get(ref, timeout=self.TIMEOUT_S))
            except Exception as exc:
                log.warning("node %s: GPU telemetry failed: %s", name, exc)
                self._samplers.pop(name, None)
                self._tried.discard(name)
        return out

    def read(self) -> list[GpuReading]:
        self._refresh()
        return [r for part in self._gather("read") for r in part]

    def job_memory(self, jobs_by_pgid: Mapping[int, int]) -> dict[int, int]:
        memory: dict[int, int] = {}
        for part in self._gather("job_memory"):
            for job_id, mib in part.items():
                memory[job_id] = memory.get(job_id, 0) + mib
        return memory

    def close(self) -> None:
        for actor in self._samplers.values():
            with contextlib.suppress(Exception):
                self.executor.ray.kill(actor)
        self._samplers.clear()


_ACTOR: Any = None


def _actor_class() -> Any:
    global _ACTOR
    if _ACTOR is None:
        import ray

        _ACTOR = ray.remote(num_cpus=0, num_gpus=0, max_restarts=0)(JobPart)
    return _ACTOR


@dataclass
class _RayJob:
    job_id: int
    actors: list[Any]
    logs: list[Path]  # the server's mirror of each rank's log
    offsets: list[int] = field(default_factory=list)
    watcher: asyncio.Task[None] | None = None
    # The checkpoint file's mtime last seen on rank 0's node; `...` not read yet (a re-attached job:
    # what is there is old news).
    checkpoint: int | EllipsisType | None = None


class RayExecutor:
    name: ClassVar[str] = "ray"
    reports_checkpoints: ClassVar[bool] = True  # read on each job's node, not from the server's disk

    def __init__(
        self,
        logs_dir: Path,
        on_finished: OnFinished,
        on_started: OnStarted = no_record,
        isolation: Isolation | None = None,
    ) -> None:
        self.logs_dir = Path(logs_dir)
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self.ray = connect()
        tag = hashlib.sha256(str(self.logs_dir.resolve()).encode()).hexdigest()[:10]
        # Each node resolves the level for the jobs it runs (Isolation.on_node); none where unasked.
        self.isolation = isolation or Isolation("none", Path(tempfile.gettempdir()) / f"aifactory-{tag}")
        self._isolation = (self.isolation.level, self.isolation.jobs_dir.name, dict(self.isolation.users))
        self.remote_dir = Path(tempfile.gettempdir()) / f"aifactory-ray-{tag}"  # on each node
        self._on_finished, self._on_started = on_finished, on_started
        self._jobs: dict[int, _RayJob] = {}
        self._launching: dict[int, float | None] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        # The floor's nodes: those found at start (the service built the core's cluster from the
        # same discovery), then each that joins.
        self._floor = {spec.name for spec in discover_nodes()}
        self._alive = set(self._node_ids()) & self._floor
        self._spawn(self._watch_nodes())

    def log_path(self, job_id: int) -> Path:
        return self.logs_dir / f"job-{job_id}.log"

    def gpu_reader(self) -> RayGpuReader:
        """GPU telemetry read on each node (a sampler actor per node)."""
        return RayGpuReader(self)

    @property
    def watched(self) -> set[int]:
        return set(self._jobs)

    def _node_ids(self) -> dict[str, tuple[str, str]]:
        """Node name -> (Ray node id, its address), alive nodes only."""
        return {node_name(n): (n["NodeID"], n["NodeManagerAddress"]) for n in self.ray.nodes() if n.get("Alive")}

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- the core's actions ------------------------------------------------------------------

    def launch(self, action: Launch) -> None:
        self._launching[action.job_id] = None
        self._spawn(self._launch(action.job_id, action.spec, action.placement))

    def kill(self, action: Kill) -> None:
        self.stop(action.job_id, action.grace_s)

    def preempt(self, action: Preempt) -> None:
        self.stop(action.job_id, action.grace_s)

    async def _launch(self, job_id: int, spec: JobSpec, placement: Placement) -> None:
        actors: list[Any] = []
        try:
            nodes = await asyncio.to_thread(self._node_ids)
            missing = [node for node, _ in placement.parts if node not in nodes]
            if missing:
                raise AifactoryError(f"node {missing[0]} is not in the Ray cluster")
            addresses = [nodes[node][1] for node, _ in placement.parts]
            port = free_port() if len(placement.parts) > 1 else 0
            for rank, (node, _) in enumerate(placement.parts):
                order = RankOrder(
                    job_id,
                    spec,
                    placement,
                    rank,
                    addresses,
                    port,
                    self._isolation,
                    str(rank_log_path(self.remote_dir / f"job-{job_id}.log", rank)),
                    os.getcwd(),
                )
                actors.append(self._start_rank(order, nodes[node][0]))
            infos = await asyncio.gather(*(a.info.remote() for a in actors))
            refused = next(
                (f"rank {k}: {why}" if k else why for k, (pid, why) in enumerate(infos) if pid is None), None
            )
            if refused is not None:
                raise AifactoryError(refused)
        except Exception as exc:  # a launch that fails ends the job, holding nothing
            from ray.exceptions import RayError

            self._launching.pop(job_id, None)
            for actor in actors:
                with contextlib.suppress(Exception):
                    actor.kill.remote(0.0)
                    self.ray.kill(actor)
            # A node that died while the job was being placed there is the node's failure, not the job's.
            lost = isinstance(exc, RayError)
            self._report(job_id, None if lost else wrap.CANNOT_RUN, f"cannot start job: {exc}", node_lost=lost)
            return
        job = _RayJob(job_id, actors, [rank_log_path(self.log_path(job_id), k) for k in range(len(actors))])
        job.offsets = [0] * len(actors)
        self._jobs[job_id] = job
        self._on_started(job_id, ProcessInfo(int(infos[0][0]), int(infos[0][0]), job.logs[0]))
        kill_grace = self._launching.pop(job_id, None)
        job.watcher = asyncio.ensure_future(self._watch(job))
        if kill_grace is not None:
            self.stop(job_id, kill_grace)

    def _start_rank(self, order: RankOrder, node_id: str) -> Any:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        return (
            _actor_class()
            .options(
                name=f"job-{order.job_id}-r{order.rank}",
                namespace=NAMESPACE,
                lifetime="detached",
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node_id, soft=False),
            )
            .remote(order)
        )

    # -- watching ----------------------------------------------------------------------------

    async def _watch_nodes(self) -> None:
        """Every NODE_POLL_S, the cluster's GPU nodes: a node that died is a NodeState event (the
        core places nothing there; its jobs come back as Finished(node_lost=True)); one that
        joined, or came back, is probed on the node and joins the floor (NodeJoined)."""
        while True:
            await asyncio.sleep(NODE_POLL_S)
            try:
                infos = {node_name(i): i for i in await asyncio.to_thread(gpu_nodes, self.ray)}
            except Exception:
                log.exception("listing the Ray cluster's nodes failed")
                continue
            for name in sorted(self._alive - set(infos)):
                log.warning("node %s is gone from the Ray cluster", name)
                self._event(NodeState(name, up=False))
            for name in sorted(set(infos) - self._alive):
                self._spawn(self._join(infos[name]))
            self._alive = set(infos)

    async def _join(self, info: dict[str, Any]) -> None:
        [spec] = await asyncio.to_thread(probe_nodes, self.ray, [info])
        if spec.name not in self._alive:
            return  # gone again while it was probed
        log.info("node %s joins the floor: %d x %s", spec.name, spec.gpu_count, spec.gpu_model)
        self._floor.add(spec.name)
        self._event(NodeJoined(spec))

    def _event(self, event: Any) -> None:
        self._on_finished(event)  # the service's inbox takes any core event

    async def _watch(self, job: _RayJob) -> None:
        """Wait for every rank; the first to fail stops the others; mirror logs meanwhile; one Finished."""
        from ray.exceptions import RayError

        waits = {asyncio.ensure_future(self._await(a.wait.remote())): k for k, a in enumerate(job.actors)}
        results: dict[int, tuple[int | None, str]] = {}
        failure: tuple[int | None, str] | None = None
        lost = False  # the first failure was a node's death, not the job's
        pending = set(waits)
        while pending:
            done, pending = await asyncio.wait(pending, timeout=MIRROR_S, return_when=asyncio.FIRST_COMPLETED)
            await self._mirror(job)
            await self._checkpointed(job)
            for fut in done:
                rank = waits[fut]
                try:
                    results[rank] = fut.result()
                except RayError as exc:
                    results[rank] = (None, f"node of rank {rank} lost ({type(exc).__name__})")
                    lost = lost or failure is None
                code, why = results[rank]
                if code != 0 and failure is None:
                    failure = (
                        (code, f"rank {rank}: {why or f'exit code {code}'}") if len(job.actors) > 1 else (code, why)
                    )
                    for actor in job.actors:
                        with contextlib.suppress(Exception):
                            actor.kill.remote(GANG_GRACE_S)
        await self._mirror(job)
        for actor in job.actors:
            with contextlib.suppress(Exception):
                self.ray.kill(actor)
        self._jobs.pop(job.job_id, None)
        code, why = failure or results.get(0, (None, LOST))
        self._report(job.job_id, code, why, node_lost=lost)

    @staticmethod
    async def _await(ref: Any) -> Any:
        return await ref

    async def _checkpointed(self, job: _RayJob) -> None:
        """A Checkpoint event when the job touched its checkpoint file on rank 0's node."""
        try:
            mtime = await self._await(job.actors[0].checkpointed.remote())
        except Exception:
            return  # its node is gone: the wait says so
        if job.checkpoint is ...:
            job.checkpoint = mtime
        elif mtime is not None and mtime != job.checkpoint:
            job.checkpoint = mtime
            self._event(Checkpoint(job.job_id))

    async def _mirror(self, job: _RayJob) -> None:
        """Copy what each rank wrote since last time into the server's logs directory."""
        for k, actor in enumerate(job.actors):
            while True:
                try:
                    chunk = await self._await(actor.read.remote(job.offsets[k], 1 << 20))
                except Exception:
                    break  # the node is gone: what was copied stays
                if not chunk:
                    break
                with job.logs[k].open("ab") as f:
                    f.write(chunk)
                job.offsets[k] += len(chunk)

    # -- stop, attach, close -----------------------------------------------------------------

    def stop(self, job_id: int, grace_s: float) -> None:
        if job_id in self._launching:
            self._launching[job_id] = grace_s
            return
        job = self._jobs.get(job_id)
        if job is None:
            return
        for actor in job.actors:
            with contextlib.suppress(Exception):
                actor.kill.remote(grace_s)

    def attach(self, job_id: int, pid: int | None, pgid: int | None, log_path: str | Path | None) -> None:
        """Find the job's actors again by name (a server restart); gone: the job was lost."""
        actors = []
        for rank in range(4096):
            try:
                actors.append(self.ray.get_actor(f"job-{job_id}-r{rank}", namespace=NAMESPACE))
            except ValueError:
                break
        if not actors:
            self._report(job_id, None, LOST)
            return
        base = Path(log_path) if log_path else self.log_path(job_id)
        job = _RayJob(job_id, actors, [rank_log_path(base, k) for k in range(len(actors))])
        job.offsets = [p.stat().st_size if p.exists() else 0 for p in job.logs]  # the mirror goes on
        job.checkpoint = ...
        self._jobs[job_id] = job
        job.watcher = asyncio.ensure_future(self._watch(job))

    async def close(self) -> None:
        """Stop watching; the actors and their jobs run on (a later server re-attaches them)."""
        for job in self._jobs.values():
            if job.watcher is not None:
                job.watcher.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*(j.watcher for j in self._jobs.values() if j.watcher), return_exceptions=True)
        self._jobs.clear()
        with contextlib.suppress(Exception):
            self.ray.shutdown()

    def _report(self, job_id: int, exit_code: int | None, reason: str, node_lost: bool = False) -> None:
        finished = Finished(job_id, exit_code, reason, node_lost=node_lost)
        asyncio.get_running_loop().call_soon(self._on_finished, finished)
