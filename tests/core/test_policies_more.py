"""las, srtf, backfill, topology placement, estimated start, and the policy timer (next_wakeup)."""

from __future__ import annotations

import pytest

from aifactory.core import Cluster, Factory, Finished, JobState, Node, Project, Submit, Tick, UnknownName
from aifactory.core.factory import FactorySettings
from aifactory.core.placement import get_placement
from aifactory.core.policies import get_policy

from .helpers import factory, launched, preempted, spec


@pytest.mark.parametrize("name", ["fairshare", "fifo", "priority", "las", "srtf", "backfill"])
def test_every_policy_is_registered_by_name(name: str) -> None:
    assert get_policy(name).name == name


def test_unknown_policy_names_the_known_ones() -> None:
    with pytest.raises(UnknownName, match="did you mean 'las'"):
        get_policy("lass")
    assert get_placement("topology").name == "topology"


def test_backfill_short_job_runs_before_the_reservation_long_one_waits() -> None:
    f = factory([Project("a")], gpus=4, policy="backfill")
    f.handle(Submit(1, spec(3, time_limit_s=100)), 0)
    f.handle(Submit(2, spec(4)), 1)  # blocked head: reserved for t=100 when job 1 must end
    assert f.job(2).estimated_start == 100
    assert launched(f.handle(Submit(3, spec(1, time_limit_s=50)), 2)) == [3]  # ends at 52 < 100
    f.handle(Submit(4, spec(1, time_limit_s=500)), 60)
    f.handle(Finished(3, 0), 60)  # one GPU free, but job 4 would run past the reservation
    assert f.job(4).state is JobState.QUEUED and "delay the reservation of job 2" in f.pending_reason(4)
    f.handle(Submit(5, spec(1)), 61)
    assert "no time limit" in f.pending_reason(5)
    assert launched(f.handle(Finished(1, 0), 90)) == [2]


def test_backfill_may_use_gpus_the_reservation_does_not_need() -> None:
    f = factory([Project("a")], gpus=4, nodes=2, policy="backfill")
    f.handle(Submit(1, spec(4, time_limit_s=100)), 0)
    f.handle(Submit(2, spec(3, time_limit_s=100)), 0)  # node1: 1 free
    f.handle(Submit(3, spec(4)), 1)  # head: waits for node0 at t=100
    assert f.job(3).estimated_start == 100
    acts = f.handle(Submit(4, spec(1, time_limit_s=1000)), 2)  # long, but on node1: not the reserved node
    assert launched(acts) == [4] and f.job(4).placement.nodes == ("node1",)


def test_srtf_preempts_the_longest_remaining_for_a_shorter_job() -> None:
    f = factory([Project("a")], gpus=2, policy="srtf")
    f.handle(Submit(1, spec(1, duration_s=1000)), 0)
    f.handle(Submit(2, spec(1, duration_s=100)), 0)
    acts = f.handle(Submit(3, spec(1, duration_s=10)), 5)
    assert preempted(acts) == [1]
    assert launched(f.handle(Finished(1, -15), 6)) == [3]
    assert f.job(1).done_s == 6 and f.job(1).state is JobState.QUEUED
    assert preempted(f.handle(Finished(3, 0), 16)) == []  # job 1 (994 s left) never preempts job 2
    assert f.job(1).state is JobState.RUNNING


def test_las_demotes_on_a_timer_and_preempts_the_most_served() -> None:
    f = factory([Project("a")], gpus=2, policy="las", las_thresholds_gpu_s=(100.0,))
    f.handle(Submit(1, spec(2)), 0)
    f.handle(Submit(2, spec(2)), 10)  # same queue as job 1 for now: waits
    assert f.job(2).state is JobState.QUEUED
    assert f.next_wakeup() == 50.0  # job 1 reaches 100 GPU-seconds at t=50
    assert preempted(f.handle(Tick(), 49.0)) == []
    assert preempted(f.handle(Tick(), 50.0)) == [1]
    assert launched(f.handle(Finished(1, -15), 51)) == [2]


def test_las_never_ping_pongs_within_a_queue() -> None:
    f = factory([Project("a")], gpus=1, policy="las", las_thresholds_gpu_s=(100.0,))
    f.handle(Submit(1, spec(1)), 0)
    f.handle(Submit(2, spec(1)), 0)
    stops = 0
    now = 0.0
    for _ in range(50):
        nxt = f.next_wakeup()
        now = nxt if nxt is not None else now + 100
        acts = f.handle(Tick(), now)
        for victim in preempted(acts):
            stops += 1
            f.handle(Finished(victim, -15), now)
    assert stops <= 2  # job 1 demoted once, then job 2 runs to the same queue and stays


def test_topology_prefers_one_node_then_fewest_nodes_of_one_rack() -> None:
    nodes = [Node(f"n{i}", 4, rack="r0" if i < 2 else "r1") for i in range(4)]
    f = Factory(Cluster(nodes), [Project("a")], FactorySettings(placement="topology"))
    f.handle(Submit(1, spec(3)), 0)  # n0
    f.handle(Submit(2, spec(1)), 0)  # pack: n0 again (fullest that fits)
    assert f.job(2).placement.nodes == ("n0",)
    f.handle(Submit(3, spec(2)), 0)  # n1 has 4 free, rack r0
    f.handle(Submit(4, spec(6, multi_node=True)), 0)  # r0 has 2 free (n1), r1 has 8: both nodes of r1
    assert sorted(f.job(4).placement.nodes) == ["n2", "n3"]
    f.handle(Submit(5, spec(2, multi_node=True)), 0)  # one node fits (n1 or n3): never split
    assert len(f.job(5).placement.nodes) == 1


def test_fairshare_estimated_start_on_demand_from_time_limits() -> None:
    f = factory([Project("a")], gpus=2)
    f.handle(Submit(1, spec(2, time_limit_s=600)), 0)
    f.handle(Submit(2, spec(2)), 0)
    assert f.estimate_start(2, now=10) == 600 and f.job(2).estimated_start == 600
    assert f.estimate_start(1, now=10) is None  # running, not waiting
    g = factory([Project("a")], gpus=2)
    g.handle(Submit(1, spec(2)), 0)  # no time limit: nobody can tell when it ends
    g.handle(Submit(2, spec(1)), 0)
    assert g.estimate_start(2, now=10) is None
