"""Events: what happened. The shells feed them to Factory.handle with the time."""

from __future__ import annotations

from dataclasses import dataclass

from aifactory.core.job import JobSpec


@dataclass(frozen=True, slots=True)
class Submit:
    job_id: int
    spec: JobSpec


@dataclass(frozen=True, slots=True)
class Finished:
    """A job's process exited (exit_code None: it was lost, e.g. its node died).

    `started` False: its process never existed (the server stopped between the launch decision
    and the spawn); the job did not run, so it goes back to its queue instead of failing."""

    job_id: int
    exit_code: int | None
    reason: str = ""
    started: bool = True
    node_lost: bool = False  # its node died under it: requeued (up to max_attempts), not its own failure


@dataclass(frozen=True, slots=True)
class Cancel:
    job_id: int
    reason: str = "cancelled by user"


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A running job reports it has saved its progress (cheaper to preempt)."""

    job_id: int


@dataclass(frozen=True, slots=True)
class Tick:
    """Time has passed: enforce time limits and reconsider the queue."""


@dataclass(frozen=True, slots=True)
class Drain:
    """An operator takes a node out of scheduling (`drained`) or gives it back: jobs running there
    run on; no new job is placed there while it is drained."""

    node: str
    drained: bool = True


@dataclass(frozen=True, slots=True)
class NodeState:
    """A node died (`up` False: nothing is placed there until it comes back) or came back."""

    node: str
    up: bool


Event = Submit | Finished | Cancel | Checkpoint | Tick | Drain | NodeState
