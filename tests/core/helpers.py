"""Small builders shared by the scheduling tests: a Factory, specs, and what the actions say."""

from __future__ import annotations

from collections.abc import Iterable

from aifactory.core import Cluster, Factory, JobSpec, Launch, Preempt, Project
from aifactory.core.actions import Action
from aifactory.core.factory import FactorySettings
from aifactory.core.project import Department


def factory(
    projects: Iterable[Project],
    gpus: int = 4,
    nodes: int = 1,
    departments: Iterable[Department] = (),
    **settings: object,
) -> Factory:
    opts: dict[str, object] = {"min_runtime_s": 0.0, **settings}
    return Factory(Cluster.virtual(gpus, nodes), projects, FactorySettings(**opts), departments=departments)  # type: ignore[arg-type]


def spec(gpus: float = 1, project: str = "a", **kw: object) -> JobSpec:
    return JobSpec(command=("true",), gpus=gpus, project=project, **kw)  # type: ignore[arg-type]


def launched(actions: list[Action]) -> list[int]:
    return [a.job_id for a in actions if isinstance(a, Launch)]


def preempted(actions: list[Action]) -> list[int]:
    return [a.job_id for a in actions if isinstance(a, Preempt)]
