"""Small scenarios for the twin's tests."""

from __future__ import annotations

from aifactory.core.cluster import NodeSpec
from aifactory.core.factory import FactorySettings
from aifactory.core.project import Project
from aifactory.twin.executor import ExecutorSettings
from aifactory.twin.replay import TwinSettings
from aifactory.twin.traces.format import Scenario, TraceJob, trace_job


def one_node(jobs: list[TraceJob], gpus: int = 4, quota: float = 4.0) -> Scenario:
    """One node of `gpus` GPUs, one project `a` owning them."""
    return Scenario("test", jobs, [NodeSpec("n0", gpus)], [Project("a", quota=quota)])


def settings(policy: str = "fifo", **kw: object) -> TwinSettings:
    executor = {k: kw.pop(k) for k in ("kill_delay_s", "preempt_delay_s", "checkpoint_every_s") if k in kw}
    return TwinSettings(FactorySettings(policy=policy, **kw), ExecutorSettings(**executor))  # type: ignore[arg-type]


def job(at: float, gpus: float, duration: float, project: str = "a", **kw: object) -> TraceJob:
    return trace_job(at, project, gpus, duration, **kw)
