"""The local executor: every job a real subprocess, in its own process group, on this machine.

Each job runs under `wrap.py`, spawned with posix_spawn; the wrapper makes itself the
leader of a new session, so wrapper and job share a process group whose id is the
wrapper's pid. The wrapper records the job's exit status in `<log>.exit`, so a server restarted
after a crash can learn how a re-attached job ended although it is not its parent. Exits are seen
through a pidfd on the event loop (a poll where pidfds are missing); our own
children are always reaped, so no zombies are left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from aifactory.core.actions import Kill, Launch, Preempt
from aifactory.core.events import Finished
from aifactory.core.job import JobSpec, Placement
from aifactory.live.executors import OnFinished, OnStarted, ProcessInfo, no_record, rank_log_path, wrap
from aifactory.live.executors.node import (
    LOST,
    free_port,
    is_wrapper_alive,
    prepare_rank,
    read_started,
    read_status,
    spawn_wrapper,
    status_path,
)
from aifactory.live.isolation import Isolation, IsolationError

log = logging.getLogger(__name__)

POLL_S = 0.05  # exit polling period where pidfds are unavailable


@dataclass(slots=True)
class _Rank:
    """One process of a job: the only one, or one node's part of a multi-node gang."""

    rank: int
    pid: int
    pgid: int
    log_path: Path
    fd: int | None = None  # pidfd, readable once the wrapper has exited
    done: tuple[int | None, str] | None = None  # (exit code, reason) once it has ended


@dataclass(slots=True)
class _Proc:
    job_id: int
    ranks: list[_Rank]
    command: tuple[str, ...] = ()  # for the reason of a launch failure (unknown after a restart)
    force: asyncio.TimerHandle | None = None  # the pending SIGKILL
    killed: bool = False  # SIGKILL sent
    failure: tuple[int | None, str] | None = None  # a gang's first rank to fail: how the job ends

    @property
    def log_path(self) -> Path:
        return self.ranks[0].log_path


class LocalExecutor:
    name: ClassVar[str] = "local"
    gang_grace_s: ClassVar[float] = 10.0  # the other ranks' SIGTERM-to-SIGKILL once one rank has failed

    def __init__(
        self,
        logs_dir: Path,
        on_finished: OnFinished,
        on_started: OnStarted = no_record,
        isolation: Isolation | None = None,
    ) -> None:
        self.logs_dir = Path(logs_dir)
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        if isolation is None:  # no tenants to keep apart (tests, embedded factories)
            isolation = Isolation("none", self.logs_dir / "jobs")
            isolation.jobs_dir.mkdir(exist_ok=True)
        self.isolation = isolation
        self._on_finished = on_finished
        self._on_started = on_started
        self._starting: set[asyncio.Task[None]] = set()  # launches whose process is being spawned
        self._procs: dict[int, _Proc] = {}
        self._launching: dict[int, float | None] = {}  # job id -> grace of a kill asked meanwhile
        self._cwd = os.getcwd()  # where jobs without a workdir run: where the server was started

    def log_path(self, job_id: int) -> Path:
        return self.logs_dir / f"job-{job_id}.log"

    @property
    def watched(self) -> set[int]:
        """Ids of the jobs whose processes this executor watches now."""
        return set(self._procs)

    def process_groups(self) -> dict[int, int]:
        """Process group id -> job id of every rank watched (to tell whose a GPU process is)."""
        return {r.pgid: job_id for job_id, proc in self._procs.items() for r in proc.ranks}

    # -- the core's actions ----------------------------------------------------------------

    def launch(self, action: Launch) -> None:
        """Start the job; once its process exists, `on_started` records where it runs."""
        task = asyncio.ensure_future(
            self._record(action.job_id, self.start(action.job_id, action.spec, action.placement))
        )
        self._starting.add(task)
        task.add_done_callback(self._starting.discard)

    def kill(self, action: Kill) -> None:
        self.stop(action.job_id, action.grace_s)

    def preempt(self, action: Preempt) -> None:
        self.stop(action.job_id, action.grace_s)

    async def _record(self, job_id: int, started: Awaitable[ProcessInfo | None]) -> None:
        try:
            info = await started
            if info is not None:
                self._on_started(job_id, info)
        except Exception:  # a task nobody awaits: say what went wrong
            log.exception("launching job %d failed", job_id)

    # -- start, attach, stop ----------------------------------------------------------------

    def start(self, job_id: int, spec: JobSpec, placement: Placement) -> asyncio.Future[ProcessInfo | None]:
        """Spawn the job's process (one per node of a multi-node gang); the future gives where rank 0
        runs (None: it could not start, and a Finished is on its way). A stop asked before the
        processes exist is carried out once they do."""
        # Under way from this call on: a kill from now until the spawn is done is kept for it.
        self._launching[job_id] = None
        return asyncio.ensure_future(self._launch(job_id, spec, placement))

    async def _launch(self, job_id: int, spec: JobSpec, placement: Placement) -> ProcessInfo | None:
        if not spec.command:
            self._launching.pop(job_id, None)
            self._report(job_id, wrap.NOT_FOUND, "empty command")
            return None
        ranks: list[_Rank] = []
        port = free_port() if len(placement.parts) > 1 else 0  # the gang's rendezvous, on rank 0's node
        try:
            for rank in range(len(placement.parts)):
                ranks.append(await self._spawn_rank(job_id, spec, placement, rank, port))
        except Exception as exc:  # any failure to start ends the job: none stays `running` without a process
            self._launching.pop(job_id, None)
            for started in ranks:  # a gang starts whole or not at all
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(started.pgid, signal.SIGKILL)
            if not isinstance(exc, OSError | IsolationError):
                log.exception("job %d: launch failed", job_id)
            if ranks:
                self._watch(_Proc(job_id, ranks, spec.command, failure=(wrap.CANNOT_RUN, f"cannot start job: {exc}")))
            else:
                self._report(job_id, wrap.CANNOT_RUN, f"cannot start job: {exc}")
            return None
        kill_grace = self._launching.pop(job_id, None)
        self._watch(_Proc(job_id, ranks, spec.command))
        if kill_grace is not None:  # a kill came while it was starting
            self.stop(job_id, kill_grace)
        first = ranks[0]
        return ProcessInfo(first.pid, first.pgid, first.log_path)

    async def _spawn_rank(self, job_id: int, spec: JobSpec, placement: Placement, rank: int, port: int) -> _Rank:
        log_path = rank_log_path(self.log_path(job_id), rank)
        status = status_path(log_path)
        # Virtual nodes share this host: every rank's node is reached at the loopback address.
        loopback = ["127.0.0.1"] * len(placement.parts)
        argv, env = prepare_rank(self.isolation, job_id, spec, placement, rank, loopback, port, status, self._cwd)
        # In a thread: the spawn returns only once the child has exec'd, which on a
        # busy machine takes milliseconds the event loop should spend on requests.
        pid = await asyncio.to_thread(spawn_wrapper, argv, env, log_path)
        return _Rank(rank, pid, pid, log_path)

    def attach(self, job_id: int, pid: int | None, pgid: int | None, log_path: str | Path | None) -> None:
        path = Path(log_path) if log_path else self.log_path(job_id)
        ranks: list[_Rank] = []
        rank = 0
        while True:  # rank 0 from the store; a gang's other ranks from their wrappers' pid files
            rank_path = rank_log_path(path, rank)
            status = status_path(rank_path)
            found = (pid, pgid) if rank == 0 and pid is not None else (read_started(status),) * 2
            if found[0] is None:
                if rank == 0 and not status.exists():
                    # The server stopped before it recorded the spawn and the wrapper never wrote
                    # its pid: it never started. Any gang rank that did is stopped first.
                    for other_rank in range(1, 64):
                        other = read_started(status_path(rank_log_path(path, other_rank)))
                        if other is None:
                            break
                        with contextlib.suppress(ProcessLookupError, PermissionError):
                            os.killpg(other, signal.SIGKILL)
                    reason = "requeued: the server stopped before the job's process started"
                    asyncio.get_running_loop().call_soon(
                        self._on_finished, Finished(job_id, None, reason, started=False)
                    )
                    return
                break
            ranks.append(_Rank(rank, found[0], found[1] or found[0], rank_path))
            rank += 1
        if not ranks:  # a status but no pid: it ran and ended
            ranks.append(_Rank(0, -1, -1, path))
        proc = _Proc(job_id, ranks)
        for r in ranks:
            if r.pid > 0 and is_wrapper_alive(r.pid, status_path(r.log_path)):
                continue
            if r.pid > 0:
                self._reap(r.pid)  # our own child from before a close() in this process
            done = read_status(status_path(r.log_path))
            # It ended while no server watched: its status file says how; without one it was killed.
            r.done = done if done is not None else (None, LOST)
        self._watch(proc)

    def stop(self, job_id: int, grace_s: float) -> None:
        """SIGTERM the job's process groups, SIGKILL after `grace_s` seconds."""
        if job_id in self._launching:
            self._launching[job_id] = grace_s
            return
        proc = self._procs.get(job_id)
        if proc is None:
            return  # already ended: its Finished is on its way
        self._stop(proc, grace_s)

    def _stop(self, proc: _Proc, grace_s: float) -> None:
        if grace_s <= 0:
            self._force(proc.job_id)
            return
        self._signal(proc, signal.SIGTERM)
        if proc.force is None:
            proc.force = asyncio.get_running_loop().call_later(grace_s, self._force, proc.job_id)

    def _force(self, job_id: int) -> None:
        proc = self._procs.get(job_id)
        if proc is not None:
            proc.killed = True
            self._signal(proc, signal.SIGKILL)
            for r in proc.ranks:  # what left the process group is still in the job's cgroup
                self.isolation.kill_all(job_id, part=r.rank)

    def _signal(self, proc: _Proc, sig: signal.Signals) -> None:
        for r in proc.ranks:
            if r.done is not None:
                continue
            try:
                os.killpg(r.pgid, sig)
            except ProcessLookupError:
                # No such group yet: the wrapper has not reached its setsid(); it is alone, signal it.
                with contextlib.suppress(ProcessLookupError):
                    os.kill(r.pid, sig)
            except PermissionError as exc:
                log.warning("job %d: cannot signal process group %d: %s", proc.job_id, r.pgid, exc)

    async def close(self) -> None:
        await asyncio.gather(*self._starting, return_exceptions=True)
        loop = asyncio.get_running_loop()
        for proc in self._procs.values():
            self._unwatch(loop, proc)
        self._procs.clear()

    # -- watching ------------------------------------------------------------------------------

    def _watch(self, proc: _Proc) -> None:
        loop = asyncio.get_running_loop()
        self._procs[proc.job_id] = proc
        for r in proc.ranks:
            if r.done is not None:
                continue
            try:
                r.fd = os.pidfd_open(r.pid)
            except (AttributeError, OSError):
                loop.call_later(POLL_S, self._poll, proc.job_id, r.rank)
                continue
            loop.add_reader(r.fd, self._exited, proc.job_id, r.rank)
        self._settle(proc)  # ranks already over (found so by attach)

    def _unwatch(self, loop: asyncio.AbstractEventLoop, proc: _Proc) -> None:
        for r in proc.ranks:
            self._unwatch_rank(loop, r)
        if proc.force is not None:
            proc.force.cancel()
            proc.force = None

    @staticmethod
    def _unwatch_rank(loop: asyncio.AbstractEventLoop, r: _Rank) -> None:
        if r.fd is not None:
            loop.remove_reader(r.fd)
            os.close(r.fd)
            r.fd = None

    def _poll(self, job_id: int, rank: int) -> None:
        proc = self._procs.get(job_id)
        if proc is None or proc.ranks[rank].done is not None:
            return
        r = proc.ranks[rank]
        if is_wrapper_alive(r.pid, status_path(r.log_path)):  # an exited child is a zombie: not alive
            asyncio.get_running_loop().call_later(POLL_S, self._poll, job_id, rank)
        else:
            self._exited(job_id, rank)

    def _reap(self, pid: int) -> int | None:
        """Reap `pid` if it is our exited child: its exit code; None if running or not ours."""
        try:
            got, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return None
        return os.waitstatus_to_exitcode(status) if got == pid else None

    def _exited(self, job_id: int, rank: int) -> None:
        proc = self._procs.get(job_id)
        if proc is None or proc.ranks[rank].done is not None:
            return
        r = proc.ranks[rank]
        self._unwatch_rank(asyncio.get_running_loop(), r)
        wrapper_code = self._reap(r.pid)
        done: tuple[int | None, str] | None = read_status(status_path(r.log_path), proc.command)
        if done is None:
            if proc.killed:
                done = (-signal.SIGKILL, "killed (SIGKILL) after the grace period")
            elif wrapper_code is not None:
                done = (wrapper_code, f"job wrapper ended with {wrapper_code} without a status")
            else:
                done = (None, "process lost: ended without an exit status")
        r.done = done
        self.isolation.finished(job_id, part=rank)
        self._settle(proc)

    def _settle(self, proc: _Proc) -> None:
        """A gang's first failing rank stops the others; once every rank is over, one Finished."""
        ranks = proc.ranks
        if len(ranks) > 1 and proc.failure is None:
            failed = next((r for r in ranks if r.done is not None and r.done[0] != 0), None)
            if failed is not None and failed.done is not None:
                code, why = failed.done
                proc.failure = (code, f"rank {failed.rank}: {why or f'exit code {code}'}")
                if any(r.done is None for r in ranks):
                    self._stop(proc, self.gang_grace_s)
        if any(r.done is None for r in ranks):
            return
        self._unwatch(asyncio.get_running_loop(), proc)
        self._procs.pop(proc.job_id, None)
        code, why = proc.failure or ranks[0].done or (None, LOST)
        self._report(proc.job_id, code, why)

    def _report(self, job_id: int, exit_code: int | None, reason: str) -> None:
        # Always later, never inside the caller: the service persists what it did first.
        asyncio.get_running_loop().call_soon(self._on_finished, Finished(job_id, exit_code, reason))
