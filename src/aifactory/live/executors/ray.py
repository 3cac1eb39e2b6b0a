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
found again by name. Nodes are discovered from the cluster (`discover_nodes`): a node's GPUs are
Ray's `GPU` resource (a node started with `--num-gpus N` declares N, for tests), its name the
`aifactory/node` label where given.

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
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from aifactory.core.actions import Kill, Launch, Preempt
from aifactory.core.cluster import NodeSpec
from aifactory.core.errors import AifactoryError
from aifactory.core.events import Finished, NodeState
from aifactory.core.job import JobSpec, Placement
from aifactory.live.checkpoints import checkpoint_path
from aifactory.live.executors import OnFinished, OnStarted, ProcessInfo, no_record, rank_log_path, wrap
from aifactory.live.executors.local import (
    LOST,
    WRAP,
    factory_env,
    free_port,
    is_wrapper_alive,
    rank_env,
    read_status,
    spawn_wrapper,
    status_path,
)
from aifactory.live.isolation import Isolation

log = logging.getLogger(__name__)

NAMESPACE = "aifactory"
ADDRESS_ENV = "AIFACTORY_RAY_ADDRESS"
NODE_LABEL = "aifactory/node"
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


def discover_nodes(address: str | None = None) -> list[NodeSpec]:
    """The cluster's live nodes that have GPUs, as the floor's nodes (sorted by name)."""
    ray = connect(address)
    specs = []
    for info in ray.nodes():
        res = info.get("Resources") or {}
        gpus = int(res.get("GPU", 0))
        if not info.get("Alive") or gpus <= 0:
            continue
        labels = info.get("Labels") or {}
        model = labels.get("ray.io/accelerator-type") or next(
            (k.removeprefix("accelerator_type:") for k in res if k.startswith("accelerator_type:")), "virtual"
        )
        specs.append(
            NodeSpec(
                name=node_name(info),
                gpu_count=gpus,
                gpu_model=str(model),
                cpu_milli=int(res.get("CPU", 0) * 1000),
                memory_mib=int(res.get("memory", 0)) >> 20,
            )
        )
    if not specs:
        raise AifactoryError("executor: the Ray cluster has no live node with GPUs (start nodes with --num-gpus)")
    return sorted(specs, key=lambda s: s.name)


class JobPart:
    """One rank of a job, on its node (the body of a Ray actor; see `_actor_class`)."""

    def __init__(self, argv: list[str], env: dict[str, str], log_path: str) -> None:
        self.log_path = Path(log_path)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        for key in ("HOME", "TMPDIR"):  # the job's scratch directory, on this node
            if key in env:
                os.makedirs(env[key], mode=0o700, exist_ok=True)
        self.status = status_path(self.log_path)
        # The wrapper watches this actor's process: the job dies with it (node loss, ray stop).
        argv = [argv[0], *argv[1:4], "--watch", str(os.getpid()), *argv[4:]]
        self.pid = spawn_wrapper(argv, env, self.log_path)
        self._kill: asyncio.TimerHandle | None = None

    def info(self) -> tuple[int, str]:
        return self.pid, str(self.log_path)

    async def wait(self) -> tuple[int | None, str]:
        """(exit code, reason) once the job's wrapper has ended."""
        while is_wrapper_alive(self.pid, self.status):
            await asyncio.sleep(0.05)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, os.WNOHANG)
        done = read_status(self.status)
        return done if done is not None else (None, LOST)

    def kill(self, grace_s: float) -> None:
        """SIGTERM the job's process group, SIGKILL after `grace_s` (the timer runs here, on the node)."""
        sig = signal.SIGKILL if grace_s <= 0 else signal.SIGTERM
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)
        if grace_s > 0 and self._kill is None:
            self._kill = asyncio.get_running_loop().call_later(grace_s, self.kill, 0.0)

    def read(self, offset: int, size: int) -> bytes:
        try:
            with self.log_path.open("rb") as f:
                f.seek(offset)
                return f.read(size)
        except OSError:
            return b""


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


class RayExecutor:
    name: ClassVar[str] = "ray"

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
        # On Ray nodes a job gets the built environment but runs as the account Ray runs as there:
        # accounts and cgroups are made only for jobs this host starts (docs/cluster.md).
        jobs_dir = isolation.jobs_dir if isolation is not None else self.logs_dir / "jobs"
        self.isolation = Isolation("none", jobs_dir)
        self.isolation.jobs_dir.mkdir(parents=True, exist_ok=True)
        tag = hashlib.sha256(str(self.logs_dir.resolve()).encode()).hexdigest()[:10]
        self.remote_dir = Path(tempfile.gettempdir()) / f"aifactory-ray-{tag}"  # on each node
        self._on_finished, self._on_started = on_finished, on_started
        self._jobs: dict[int, _RayJob] = {}
        self._launching: dict[int, float | None] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        # The floor's nodes (found at start); one that joins later is not the floor's yet.
        self._floor = {spec.name for spec in discover_nodes()}
        self._alive = set(self._node_ids()) & self._floor
        self._spawn(self._watch_nodes())

    def log_path(self, job_id: int) -> Path:
        return self.logs_dir / f"job-{job_id}.log"

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
                actors.append(self._start_rank(job_id, spec, placement, rank, nodes[node][0], addresses, port))
            infos = await asyncio.gather(*(a.info.remote() for a in actors))
        except Exception as exc:  # a launch that fails ends the job, holding nothing
            from ray.exceptions import RayError

            self._launching.pop(job_id, None)
            for actor in actors:
                with contextlib.suppress(Exception):
                    actor.kill.remote(0.0)
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

    def _start_rank(
        self,
        job_id: int,
        spec: JobSpec,
        placement: Placement,
        rank: int,
        node_id: str,
        addresses: list[str],
        port: int,
    ) -> Any:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        node, gpus = placement.parts[rank]
        own = Placement(((node, gpus),), placement.milli, placement.cpu_milli, placement.memory_mib)
        env = factory_env(job_id, own, checkpoint_path(self.isolation.jobs_dir, job_id))
        env["AIFACTORY_PLACEMENT"] = placement.describe()
        if len(placement.parts) > 1:
            env |= rank_env(placement, rank, addresses, port)
        launch = self.isolation.prepare(job_id, spec, own, env, part=rank)
        remote_log = rank_log_path(self.remote_dir / f"job-{job_id}.log", rank)
        argv = [sys.executable, "-I", "-S", WRAP, str(status_path(remote_log)), spec.workdir or os.getcwd()]
        argv += list(spec.command)
        return (
            _actor_class()
            .options(
                name=f"job-{job_id}-r{rank}",
                namespace=NAMESPACE,
                lifetime="detached",
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node_id, soft=False),
            )
            .remote(argv, launch.env, str(remote_log))
        )

    # -- watching ----------------------------------------------------------------------------

    async def _watch_nodes(self) -> None:
        """Every NODE_POLL_S, a NodeState event for each node that died or came back: the core then
        places nothing on a dead node (its jobs come back as Finished(node_lost=True))."""
        while True:
            await asyncio.sleep(NODE_POLL_S)
            try:
                alive = set(await asyncio.to_thread(self._node_ids)) & self._floor
            except Exception:
                log.exception("listing the Ray cluster's nodes failed")
                continue
            for name in sorted(self._alive - alive):
                log.warning("node %s is gone from the Ray cluster", name)
                self._event(NodeState(name, up=False))
            for name in sorted(alive - self._alive):
                self._event(NodeState(name, up=True))
            self._alive = alive

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
