"""What policies, admission, explanations and accounting may read of the factory: `FloorState`.

They depend on this small read-only protocol, not on `Factory` (which imports them all): the
state the scheduler keeps, and the few questions it answers. Nothing here changes anything;
`Factory` alone applies events and plans.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from aifactory.core.cluster import Cluster
from aifactory.core.history import UsageHistory
from aifactory.core.job import Job, JobSpec
from aifactory.core.placement import PlacementPolicy
from aifactory.core.project import Department, Project
from aifactory.core.queues import PendingIndex
from aifactory.core.settings import Capacity, FactorySettings


class FloorState(Protocol):
    @property
    def settings(self) -> FactorySettings: ...

    @property
    def cluster(self) -> Cluster: ...

    @property
    def placement(self) -> PlacementPolicy: ...

    @property
    def policy(self) -> object:
        """The policy deciding (some say they use quotas: `uses_quota`)."""
        ...

    @property
    def projects(self) -> Mapping[str, Project]: ...

    @property
    def departments(self) -> Mapping[str, Department]: ...

    @property
    def jobs(self) -> Mapping[int, Job]: ...

    @property
    def queues(self) -> Mapping[str | None, Mapping[int, Job]]:
        """Pending jobs per pool key, each in queue (submission) order."""
        ...

    @property
    def pending(self) -> PendingIndex: ...

    @property
    def running(self) -> Mapping[int, Job]:
        """Running or preempted jobs: those holding GPUs."""
        ...

    @property
    def running_by_project(self) -> Mapping[str, Mapping[int, Job]]: ...

    @property
    def usage(self) -> Mapping[str, float]:
        """GPUs each project holds now."""
        ...

    @property
    def dept_usage(self) -> Mapping[str, float]: ...

    @property
    def model_usage(self) -> Mapping[tuple[str, str], float]: ...

    @property
    def host_usage(self) -> Mapping[str, tuple[int, int]]:
        """(milli-CPU, memory MiB) each project holds, summed over nodes."""
        ...

    @property
    def history(self) -> UsageHistory: ...

    def pool_of(self, project: str) -> str | None: ...

    def capacity(self, pool: str | None, model: str | None, cpu_only: bool = False) -> Capacity: ...

    def demand_of(self, spec: JobSpec) -> float: ...

    def department_of(self, project: str) -> Department | None: ...

    def fit_reason(self, job: Job) -> str: ...
