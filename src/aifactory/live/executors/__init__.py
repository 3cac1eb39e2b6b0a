"""Executors run the jobs the core launches; one module each, found by name in a registry.

An executor carries out the core's actions (`aifactory.core.driver.Executor`: launch, kill,
preempt) and, for the live shell, finds jobs again after a restart (`attach`). It is built with
the logs directory and two callbacks: `on_finished` gets every end of a job (normal exit, kill,
launch failure, process lost) as a core `Finished` event, on the event loop's thread; `on_started`
gets where a launched job's process runs, so that a later server can re-attach it. It never
raises out of its methods for a job's own failure.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Protocol

from aifactory.core import driver
from aifactory.core.events import Finished
from aifactory.plugins import lookup

if TYPE_CHECKING:
    from aifactory.live.isolation import Isolation

OnFinished = Callable[[Finished], None]


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    """Where a launched job runs: enough to find it again after a server restart."""

    pid: int
    pgid: int
    log_path: Path


OnStarted = Callable[[int, ProcessInfo], None]


def rank_log_path(log_path: Path, rank: int) -> Path:
    """Rank 0 writes the job's log; rank k of a multi-node gang `job-<id>.r<k>.log` beside it."""
    return log_path if rank == 0 else log_path.with_name(f"{log_path.stem}.r{rank}{log_path.suffix}")


def no_record(job_id: int, info: ProcessInfo) -> None:
    """`on_started` for a caller that keeps no record of processes."""


class Executor(driver.Executor, Protocol):
    name: ClassVar[str]

    def stop(self, job_id: int, grace_s: float) -> None:
        """SIGTERM the job, SIGKILL after `grace_s` seconds (also for a job found by `attach`)."""
        ...

    def attach(self, job_id: int, pid: int | None, pgid: int | None, log_path: str | Path | None) -> None:
        """Watch a job started by an earlier server; report Finished if it is gone already."""
        ...

    def log_path(self, job_id: int) -> Path: ...

    async def close(self) -> None:
        """Stop watching; running jobs keep running (a later server re-attaches them)."""
        ...


ExecutorFactory = Callable[[Path, OnFinished, OnStarted, "Isolation | None"], Executor]

# name -> "module:attribute", imported on first use so unused executors cost nothing.
EXECUTORS: dict[str, str | ExecutorFactory] = {
    "local": "aifactory.live.executors.local:LocalExecutor",
    "ray": "aifactory.live.executors.ray:RayExecutor",
}


def register_executor(name: str, factory: str | ExecutorFactory) -> None:
    EXECUTORS[name] = factory


def get_executor(
    name: str,
    logs_dir: Path,
    on_finished: OnFinished,
    on_started: OnStarted = no_record,
    isolation: Isolation | None = None,
) -> Executor:
    """The executor `name`; `isolation` is how it keeps jobs apart on its nodes (None: not at all)."""
    return lookup("executor", EXECUTORS, name)(logs_dir, on_finished, on_started, isolation)


__all__ = [
    "EXECUTORS",
    "Executor",
    "OnFinished",
    "OnStarted",
    "ProcessInfo",
    "get_executor",
    "no_record",
    "rank_log_path",
    "register_executor",
]
