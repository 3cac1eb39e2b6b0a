"""Job spec (what the user asked for) and job record (what became of it)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

from aifactory.core.states import JobState

MILLI = 1000  # one whole GPU in milli-GPU, the unit of the allocation map
MODEL_SEP = "|"  # a job's gpu_model "V100M16|V100M32": any of these models


def model_allows(wanted: str | None, model: str) -> bool:
    """Does a job asking for `wanted` (None: any; "A100"; or "V100M16|V100M32": one of them) run on `model`?"""
    return wanted is None or wanted == model or (MODEL_SEP in wanted and model in wanted.split(MODEL_SEP))


@dataclass(frozen=True, slots=True)
class JobSpec:
    """A request for GPUs and a command to run on them.

    `gpus` is a whole number of GPUs (>= 1), a fraction of one GPU (0 < gpus < 1), or 0 for a
    job that needs no GPU (data preparation, evaluation: it asks for CPU or memory instead);
    `gpu_memory_mib` asks for a fraction by memory instead, converted on the node it
    lands on. `gpu_model` names one GPU model, or several as `A|B` (any of them). A multi-GPU job stays on one node unless `multi_node` allows a gang
    across nodes. `cpu_milli` (1000 = one CPU core) and `memory_mib` are host resources
    asked for on every node the job runs on, as Slurm's `--mem` (0: not requested).
    """

    command: tuple[str, ...]
    project: str = "default"
    user: str = "anonymous"
    gpus: float = 1.0
    gpu_memory_mib: int | None = None
    gpu_model: str | None = None
    multi_node: bool = False
    priority: int = 0
    priority_class: str = "train"
    time_limit_s: float | None = None
    name: str | None = None
    workdir: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    # Known run time: the twin's simulated executor and oracle policies (srtf) use it.
    duration_s: float | None = None
    cpu_milli: int = 0
    memory_mib: int = 0
    # Jobs this one waits for, each with how it must end: "ok" (succeeded), "failed" (failed or
    # cancelled) or "any" (Slurm's afterok, afternotok, afterany).
    after: tuple[tuple[int, str], ...] = ()
    # An element of a job array: the array's id (its first element's job id), its index, and how
    # many of the array's elements may run at once (None: no cap).
    array_id: int | None = None
    array_index: int | None = None
    array_cap: int | None = None

    @property
    def whole_gpus(self) -> int:
        """GPUs held exclusively (0 for a fractional job)."""
        return int(self.gpus) if self.gpus >= 1 else 0

    @property
    def host(self) -> bool:
        """Does the job ask for CPU or memory (checked on each node it may go to)?"""
        return self.cpu_milli > 0 or self.memory_mib > 0

    @property
    def fractional(self) -> bool:
        return self.gpu_memory_mib is not None or 0 < self.gpus < 1

    @property
    def cpu_only(self) -> bool:
        """Does the job need no GPU at all (only CPU and memory)?"""
        return self.gpus == 0 and self.gpu_memory_mib is None

    def milli_on(self, gpu_memory_mib: int) -> int:
        """Milli-GPU this job takes on one GPU of the given memory size (fractional jobs)."""
        if self.gpu_memory_mib is not None:
            return min(MILLI, math.ceil(MILLI * self.gpu_memory_mib / max(gpu_memory_mib, 1)))
        if self.gpus < 1:
            return max(1, round(self.gpus * MILLI))
        return MILLI


AFTER_KINDS = ("ok", "any", "failed")


def dependency_met(kind: str, state: JobState) -> bool | None:
    """Does a dependency that ended in `state` let its dependent start (None: it has not ended)?"""
    if not state.terminal:
        return None
    if kind == "any":
        return True
    return (state is JobState.SUCCEEDED) == (kind == "ok")


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a job's GPUs are: per node, the GPU indices, each with `milli` of it."""

    parts: tuple[tuple[str, tuple[int, ...]], ...]
    milli: int = MILLI
    cpu_milli: int = 0  # CPU (milli-cores) held on each node of `parts`
    memory_mib: int = 0  # memory held on each node of `parts`
    # Computed once: quota accounting reads them on every start and release.
    gpu_count: int = field(init=False, repr=False, compare=False)
    gpus: float = field(init=False, repr=False, compare=False)  # a fraction counting as its fraction

    def __post_init__(self) -> None:
        parts = self.parts
        count = len(parts[0][1]) if len(parts) == 1 else sum(len(idx) for _, idx in parts)  # one node: the usual
        object.__setattr__(self, "gpu_count", count)
        object.__setattr__(self, "gpus", count * self.milli / MILLI)

    @property
    def nodes(self) -> tuple[str, ...]:
        return tuple(node for node, _ in self.parts)

    def describe(self) -> str:
        """`node0:0,1`, `node0:2@0.50` for a fraction, `node0:cpu` for a job with no GPU."""
        frac = "" if self.milli == MILLI else f"@{self.milli / MILLI:.2f}"
        if len(self.parts) == 1:  # one node: the usual case, described on every start
            name, idx = self.parts[0]
            return f"{name}:{_indices(idx) if idx else 'cpu'}{frac}"
        return " ".join(f"{n}:{_indices(idx)}{frac}" for n, idx in self.parts)


@lru_cache(maxsize=4096)
def _indices(idx: tuple[int, ...]) -> str:
    """`0,1,2`: GPU index lists repeat (a node has few distinct free blocks), so their text is cached."""
    return ",".join(map(str, idx))


@dataclass(slots=True)
class Job:
    """The core's record of one job. Mutated only by the Factory."""

    id: int
    spec: JobSpec
    submitted_at: float
    state: JobState = JobState.QUEUED
    started_at: float | None = None
    finished_at: float | None = None
    exit_code: int | None = None
    reason: str = ""
    placement: Placement | None = None
    attempts: int = 0  # times the job has been started
    # Set when the core has asked the executor to stop the job; decides its end state.
    stop_reason: str | None = None
    pending_reason: str = ""
    # Seconds of work done in earlier attempts (twin: work left after a preemption).
    done_s: float = 0.0
    # Time of the job's last checkpoint, where the job reports one (preemption cost).
    checkpoint_at: float | None = None
    idle_since: float | None = None  # its GPUs idle since (GpuIdle; None: busy or not measured)
    held: bool = False  # queued but not to be started until released
    waiting_on: frozenset[int] = frozenset()  # dependencies not met yet (queued, not started meanwhile)
    # Time the job was (last) queued: first submit or the end of its last preemption.
    queued_at: float = 0.0
    # GPUs the job counts against quotas (a fraction as its fraction); set by the Factory.
    demand: float = 0.0
    # When the job is expected to start, where running jobs' time limits tell (None: unknown).
    estimated_start: float | None = None
