"""A facility power budget as a core rule: a job whose start would pass the estimated draw waits, and says why."""

from __future__ import annotations

import pytest

from aifactory.core import Cluster, Factory, Finished, JobSpec, JobState, Launch, Project, Submit
from aifactory.core.explain import pending_kind
from aifactory.core.factory import FactorySettings


def spec(gpus: float) -> JobSpec:
    return JobSpec(command=("true",), gpus=gpus)


@pytest.mark.parametrize("policy", ["fifo", "fairshare", "backfill", "priority"])
def test_jobs_wait_for_power_not_gpus(policy: str) -> None:
    # 8 GPUs; 1 kW of base and 250 W per GPU held: a 2.6 kW budget allows 6 GPUs held (2.5 kW).
    settings = FactorySettings(policy=policy, power_budget_w=2600, power_base_w=1000, power_per_gpu_w=250)
    f = Factory(Cluster.virtual(4, 2), [Project("default", quota=8)], settings)
    started = []
    for job_id, gpus in ((1, 4), (2, 2), (3, 2)):
        started += [a.job_id for a in f.handle(Submit(job_id, spec(gpus)), 0.0) if isinstance(a, Launch)]
    assert started == [1, 2]  # 2 GPUs are free, but a third job would draw 3.0 kW
    waiting = f.job(3)
    assert waiting.state is JobState.QUEUED and waiting.pending_reason.startswith("power budget:")
    assert "3.0 kW of 2.6 kW" in waiting.pending_reason and pending_kind(f, waiting) == "power_budget"
    later = f.handle(Finished(2, 0), 10.0)
    assert [a.job_id for a in later if isinstance(a, Launch)] == [3]  # power freed, it starts


def test_without_a_budget_nothing_changes() -> None:
    f = Factory(Cluster.virtual(4, 2), [Project("default", quota=8)], FactorySettings(policy="fifo"))
    started = [
        a.job_id for j in (1, 2, 3) for a in f.handle(Submit(j, spec(2 + (j == 1) * 2)), 0.0) if isinstance(a, Launch)
    ]
    assert started == [1, 2, 3]
