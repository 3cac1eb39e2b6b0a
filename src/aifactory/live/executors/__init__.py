"""Executors run the jobs the core launches; one module each, found by name in a registry.

An executor is built with the logs directory and a callback; it reports every end
of a job (normal exit, kill, launch failure, process lost) as a core `Finished`
event through that callback, on the event loop's thread, and never raises out of
`launch`, `kill` or `attach` for a job's own failure.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol

from aifactory.core.errors import UnknownName
from aifactory.core.events import Finished
from aifactory.core.job import JobSpec, Placement

OnFinished = Callable[[Finished], None]


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    """Where a launched job runs: enough to find it again after a server restart."""

    pid: int
    pgid: int
    log_path: Path


class Executor(Protocol):
    name: ClassVar[str]

    def launch(self, job_id: int, spec: JobSpec, placement: Placement) -> Awaitable[ProcessInfo | None]:
        """Start the job; await the result for its process (None: it could not start, and
        a Finished is on its way). The launch is under way from the call on: a kill that
        comes before the process exists is carried out as soon as it does.
        """
        ...

    def kill(self, job_id: int, grace_s: float) -> None:
        """Ask the job to stop (SIGTERM), force it after `grace_s` seconds (SIGKILL)."""
        ...

    def attach(self, job_id: int, pid: int | None, pgid: int | None, log_path: str | Path | None) -> None:
        """Watch a job started by an earlier server; report Finished if it is gone already."""
        ...

    def log_path(self, job_id: int) -> Path: ...

    async def close(self) -> None:
        """Stop watching; running jobs keep running (a later server re-attaches them)."""
        ...


ExecutorFactory = Callable[[Path, OnFinished], Executor]

# name -> "module:attribute", imported on first use so unused executors cost nothing.
EXECUTORS: dict[str, str | ExecutorFactory] = {"local": "aifactory.live.executors.local:LocalExecutor"}


def register_executor(name: str, factory: str | ExecutorFactory) -> None:
    EXECUTORS[name] = factory


def get_executor(name: str, logs_dir: Path, on_finished: OnFinished) -> Executor:
    try:
        factory = EXECUTORS[name]
    except KeyError:
        raise UnknownName("executor", name, EXECUTORS) from None
    if isinstance(factory, str):
        module, attr = factory.split(":")
        factory = getattr(importlib.import_module(module), attr)
    return factory(logs_dir, on_finished)


__all__ = ["EXECUTORS", "Executor", "OnFinished", "ProcessInfo", "get_executor", "register_executor"]
