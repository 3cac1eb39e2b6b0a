"""Projects and departments: who may use GPUs, how many are guaranteed, where.

Two levels: a department groups projects and has its own guarantee, weight and
hard limit. A project with no department (or one not configured) stands alone.
Quotas count GPUs, a fraction counting as its fraction.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aifactory.core.errors import SpecError

# Priority classes: `train` may borrow idle GPUs over quota and may be preempted to
# give them back; `interactive` and `inference` run only within quota and are never preempted.
PRIORITY_CLASSES: tuple[str, ...] = ("train", "interactive", "inference")
PREEMPTIBLE: frozenset[str] = frozenset({"train"})
IDLE_STOPPABLE: frozenset[str] = frozenset({"interactive"})  # what a project's idle timeout stops


@dataclass(slots=True)
class Project:
    name: str
    quota: float = 0.0  # guaranteed GPUs
    weight: float = 1.0  # share of idle GPUs lent over quota
    limit: float | None = None  # hard cap on GPUs held at once
    pool: str | None = None  # node pool the project's jobs are bound to (None: any node)
    department: str | None = None
    # Guaranteed GPUs of one model (jobs that ask for that model count against it).
    quota_by_model: dict[str, float] = field(default_factory=dict)
    # An interactive job whose GPUs stay idle this long is stopped (Run:ai's idle GPU timeout):
    # a notebook left open does not keep its GPUs from others. None: never.
    idle_timeout_s: float | None = None


@dataclass(slots=True)
class Department:
    name: str
    quota: float = 0.0  # guaranteed GPUs for all its projects together
    weight: float = 1.0  # share of idle GPUs lent to the department over its quota
    limit: float | None = None  # hard cap on GPUs its projects hold at once


@dataclass(frozen=True, slots=True)
class Account:
    """A project's settings and what it holds and owes right now (the API's and CLI's `projects`
    view). GPUs."""

    settings: Project
    running: int  # jobs running or stopping (holding GPUs)
    in_use: float
    borrowed: float  # held over quota
    lent: float  # idle guarantee that other projects are using
    pending_jobs: int
    pending_gpus: float
    history_gpu_s: float  # decayed GPU-seconds (fair-share usage history)

    @property
    def project(self) -> str:
        return self.settings.name


def check_project(project: Project) -> None:
    """Raise SpecError naming the field if the project's numbers make no sense."""
    if not project.name:
        raise SpecError("name", "a project needs a name")
    _check_share(project.name, project.quota, project.weight, project.limit)
    if project.idle_timeout_s is not None and not project.idle_timeout_s > 0:
        raise SpecError("idle_timeout", f"project {project.name}: must be positive, got {project.idle_timeout_s}")
    for model, quota in project.quota_by_model.items():
        if not quota >= 0:
            raise SpecError("quota_by_model", f"project {project.name}: {model} quota must be >= 0, got {quota}")


def check_department(department: Department) -> None:
    if not department.name:
        raise SpecError("name", "a department needs a name")
    _check_share(department.name, department.quota, department.weight, department.limit)


def _check_share(name: str, quota: float, weight: float, limit: float | None) -> None:
    if not quota >= 0:
        raise SpecError("quota", f"{name}: must be >= 0, got {quota}")
    if not weight > 0:
        raise SpecError("weight", f"{name}: must be > 0, got {weight}")
    if limit is not None and not limit >= 0:
        raise SpecError("limit", f"{name}: must be >= 0, got {limit}")
    if limit is not None and limit < quota:
        raise SpecError("limit", f"{name}: limit {limit} is below quota {quota}")
