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


def test_a_pools_budget_holds_its_jobs_only() -> None:
    from aifactory.core.cluster import NodeSpec

    nodes = [NodeSpec("a0", 4, pool="a"), NodeSpec("b0", 4, pool="b")]
    # Pool a may draw 1.0 kW: its half of the 400 W base (200 W) and 3 GPUs at 250 W would be 950 W.
    settings = FactorySettings(
        policy="fifo", power_base_w=400, power_per_gpu_w=250, pool_power_budgets_w=(("a", 1000.0),)
    )
    f = Factory(Cluster(nodes), [Project("ta", quota=4, pool="a"), Project("tb", quota=4, pool="b")], settings)
    started = []
    for job_id, project in ((1, "ta"), (2, "ta"), (3, "ta"), (4, "ta"), (5, "tb"), (6, "tb"), (7, "tb"), (8, "tb")):
        job = JobSpec(command=("true",), gpus=1, project=project)
        started += [a.job_id for a in f.handle(Submit(job_id, job), 0.0) if isinstance(a, Launch)]
    assert started == [1, 2, 3, 5, 6, 7, 8]  # pool b has no budget: all four run
    assert "pool a's 1.0 kW" in f.job(4).pending_reason


def test_a_pools_share_of_the_base_follows_its_nodes() -> None:
    from aifactory.core.cluster import NodeSpec

    cluster = Cluster([NodeSpec("a0", 4, pool="a"), NodeSpec("b0", 4, pool="b")])
    assert cluster.slots == {"a": 4, "b": 4}
    cluster.add(NodeSpec("a0", 8, pool="a"))  # an empty node's capacity changed
    cluster.add(NodeSpec("c0", 2, pool="c"))
    assert cluster.slots == {"a": 8, "b": 4, "c": 2}
    cluster.add(NodeSpec("c0", 2, pool="b"))  # it moved pool: c has no node left
    assert cluster.slots == {"a": 8, "b": 6}


def test_a_pools_budget_holds_jobs_of_projects_bound_to_no_pool() -> None:
    from aifactory.core.cluster import NodeSpec

    # The project may use any pool; its jobs land in pool a, whose 0.6 kW takes two GPUs at 250 W.
    settings = FactorySettings(policy="fifo", power_per_gpu_w=250, pool_power_budgets_w=(("a", 600.0),))
    f = Factory(Cluster([NodeSpec("a0", 4, pool="a")]), [Project("anywhere", quota=4)], settings)
    started = []
    for job_id in (1, 2, 3):
        job = JobSpec(command=("true",), gpus=1, project="anywhere")
        started += [a.job_id for a in f.handle(Submit(job_id, job), 0.0) if isinstance(a, Launch)]
    assert started == [1, 2]
    assert "0.8 kW of pool a's 0.6 kW (2 GPUs held there)" in f.job(3).pending_reason
    later = f.handle(Finished(1, 0), 5.0)
    assert [a.job_id for a in later if isinstance(a, Launch)] == [3]
