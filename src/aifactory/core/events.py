"""Events: what happened. The shells feed them to Factory.handle with the time."""

from __future__ import annotations

from dataclasses import dataclass

from aifactory.core.cluster import NodeSpec
from aifactory.core.job import JobSpec
from aifactory.core.states import JobState


@dataclass(frozen=True, slots=True)
class Submit:
    """A new job. `settled`: how dependencies the core no longer holds in memory ended (the live
    shell forgets finished jobs; it reads their outcome from its store)."""

    job_id: int
    spec: JobSpec
    settled: tuple[tuple[int, JobState], ...] = ()


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
class GpuIdle:
    """A running job's GPUs went below the idle threshold at `since` (None: busy again), as the
    shell's telemetry measured: a project's idle timeout counts from `since`."""

    job_id: int
    since: float | None


@dataclass(frozen=True, slots=True)
class Hold:
    """Hold a queued job (`held` False: release it): a held job is not started; it keeps its place
    in submission order."""

    job_id: int
    held: bool = True
    by: str = ""


@dataclass(frozen=True, slots=True)
class Update:
    """Change a job's priority, time limit or GPUs (None: unchanged). A queued job may change
    all three and is looked at again; a running one only its time limit."""

    job_id: int
    priority: int | None = None
    time_limit_s: float | None = None
    gpus: float | None = None
    by: str = ""


@dataclass(frozen=True, slots=True)
class Requeue:
    """Send a running job back to the queue (stopped with the preemption grace), as an operator asks."""

    job_id: int
    by: str = ""


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
    """A node died (`up` False: nothing is placed there until it comes back) or came back. Apart
    from a drain: a drained node that dies and comes back is still drained."""

    node: str
    up: bool


@dataclass(frozen=True, slots=True)
class NodeJoined:
    """A machine joined the floor (a new node of the cluster), or one known came back: it is alive
    and takes work (unless drained). A known node's capacity may change only while it holds nothing."""

    spec: NodeSpec


NodeEvent = Drain | NodeState | NodeJoined  # what happens to nodes: the event log keeps them for the twin
Event = (
    Submit | Finished | Cancel | Checkpoint | GpuIdle | Hold | Update | Requeue | Tick | Drain | NodeState | NodeJoined
)


NODE_EVENT_KINDS = ("drain", "resume", "down", "up", "join")


def node_event_kind(event: NodeEvent) -> str:
    """The word the event log and the floor file keep for a node event."""
    if isinstance(event, Drain):
        return "drain" if event.drained else "resume"
    if isinstance(event, NodeState):
        return "up" if event.up else "down"
    return "join"


def node_event_name(event: NodeEvent) -> str:
    return event.spec.name if isinstance(event, NodeJoined) else event.node


def node_event(kind: str, node: str, spec: NodeSpec | None = None) -> NodeEvent:
    """The event a `node_event_kind` word stands for (`spec`: a join's capacity)."""
    if kind in ("drain", "resume"):
        return Drain(node, kind == "drain")
    if kind in ("down", "up"):
        return NodeState(node, kind == "up")
    if kind == "join" and spec is not None and spec.name == node:
        return NodeJoined(spec)
    raise ValueError(f"not a node event: {kind!r} for {node!r}")


JobEvent = Hold | Update | Requeue | GpuIdle  # what else the core schedules by: the log keeps them for the twin
JOB_EVENT_KINDS: dict[str, type[JobEvent]] = {"hold": Hold, "update": Update, "requeue": Requeue, "idle": GpuIdle}


def job_event_record(event: JobEvent) -> tuple[str, dict[str, object]]:
    """The word and the fields (less the job id) the event log and the floor file keep for a job event."""
    kind = next(k for k, cls in JOB_EVENT_KINDS.items() if isinstance(event, cls))
    return kind, {f: getattr(event, f) for f in event.__dataclass_fields__ if f != "job_id"}


def job_event(kind: str, job_id: int, data: dict[str, object]) -> JobEvent:
    """The event a `job_event_record` stands for; ValueError naming what is wrong."""
    cls = JOB_EVENT_KINDS.get(kind)
    if cls is None:
        raise ValueError(f"not a job event: {kind!r} (one of {', '.join(JOB_EVENT_KINDS)})")
    try:
        return cls(job_id, **data)  # type: ignore[arg-type]
    except TypeError as exc:
        raise ValueError(f"{kind}: {exc}") from None
