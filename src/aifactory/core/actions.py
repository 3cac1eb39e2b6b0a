"""Actions: what the shell must do. Returned by Factory.handle, never performed by it."""

from __future__ import annotations

from dataclasses import dataclass

from aifactory.core.job import JobSpec, Placement
from aifactory.core.states import JobState


@dataclass(frozen=True, slots=True)
class Launch:
    job_id: int
    spec: JobSpec
    placement: Placement


@dataclass(frozen=True, slots=True)
class Kill:
    """Stop the job: SIGTERM, then SIGKILL after `grace_s`."""

    job_id: int
    reason: str
    grace_s: float


@dataclass(frozen=True, slots=True)
class Preempt:
    """Stop the job so its GPUs can go elsewhere; it will be queued again."""

    job_id: int
    reason: str
    grace_s: float


@dataclass(frozen=True, slots=True)
class StateChanged:
    """A transition to record in the event log (the twin's trace of the floor)."""

    job_id: int
    old: JobState | None
    new: JobState
    at: float
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Noted:
    """A change to a job that is not a transition (held, released, updated), for the event log
    with who made it: its state stays `state`."""

    job_id: int
    state: JobState
    at: float
    reason: str


Action = Launch | Kill | Preempt | StateChanged | Noted
