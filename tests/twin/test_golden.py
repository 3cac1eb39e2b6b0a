"""Golden replays: small traces whose every figure was worked out by hand."""

from __future__ import annotations

import math

import pytest

from aifactory.core.cluster import NodeSpec
from aifactory.core.errors import SpecError
from aifactory.core.project import Project
from aifactory.core.states import JobState
from aifactory.twin.replay import replay
from aifactory.twin.traces.format import Scenario

from .helpers import job, one_node, settings


def test_fifo_on_one_node_waits_jcts_and_makespan() -> None:
    # 4 GPUs. j0 2x10 s at 0 runs 0-10; j1 needs all 4: 10-15; j2 (1 GPU) is behind j1
    # (FIFO blocks at the head) so 15-18; j3 (2 GPUs) fits beside j2: 15-19.
    trace = [job(0, 2, 10), job(1, 4, 5), job(2, 1, 3), job(3, 2, 4)]
    r = replay(one_node(trace), settings("fifo"))
    assert r.recorder.started == [0, 10, 15, 15]
    assert r.recorder.ended == [10, 15, 18, 19]
    assert r.recorder.start_order == [0, 1, 2, 3]
    s = r.summary
    assert s["first_wait_s_mean"] == pytest.approx((0 + 9 + 13 + 12) / 4)
    assert s["first_wait_s_median"] == pytest.approx(10.5)
    assert s["jct_s_mean"] == pytest.approx((10 + 14 + 16 + 16) / 4)
    assert s["makespan_s"] == 19
    assert s["utilisation"] == pytest.approx((2 * 10 + 4 * 5 + 1 * 3 + 2 * 4) / (4 * 19))
    assert s["slowdown_mean"] == pytest.approx((1 + 14 / 5 + 16 / 3 + 16 / 4) / 4)
    assert s["gpu_hours"] == pytest.approx(51 / 3600)
    assert (s["finished"], s["succeeded"], s["rejected"], s["preemptions"]) == (4, 4, 0, 0)
    assert s["projects"]["a"]["mean_gpus"] == pytest.approx(51 / 19)
    assert s["projects"]["a"]["share_of_quota"] == pytest.approx(51 / 19 / 4)


def test_priority_lets_the_urgent_job_past_the_queue() -> None:
    # Same trace, j2 urgent: at 2 it goes ahead of the waiting j1 and fits beside j0 (2-5);
    # j1 still starts at 10 and j3, behind it, at 15.
    trace = [job(0, 2, 10), job(1, 4, 5), job(2, 1, 3, priority=5), job(3, 2, 4)]
    r = replay(one_node(trace), settings("priority"))
    assert r.recorder.started == [0, 10, 2, 15]
    assert r.recorder.start_order == [0, 2, 1, 3]
    assert r.summary["first_wait_s_mean"] == pytest.approx((0 + 9 + 0 + 12) / 4)
    assert r.summary["makespan_s"] == 19


def two_pools(jobs: list) -> Scenario:  # type: ignore[type-arg]
    nodes = [NodeSpec("p0", 2, pool="p"), NodeSpec("q0", 2, pool="q")]
    projects = [Project("A", quota=2, pool="p"), Project("B", quota=2, pool="q")]
    return Scenario("pools", jobs, nodes, projects)


def test_strict_pools_against_one_shared_pool() -> None:
    trace = [job(0, 2, 5, "A"), job(0, 2, 5, "A"), job(1, 1, 1, "B")]
    pools = replay(two_pools(trace), settings("fifo"))
    # A's second job waits for A's own node; B's runs on its idle one at once.
    assert pools.recorder.started == [0, 5, 1]
    shared = replay(two_pools(trace), settings("fifo", use_pools=False))
    # Without pools A's second job takes B's node; B waits until 5.
    assert shared.recorder.started == [0, 0, 5]
    assert pools.summary["first_wait_s_mean"] == pytest.approx(5 / 3)
    assert shared.summary["first_wait_s_mean"] == pytest.approx(4 / 3)
    assert pools.summary["projects"]["B"]["mean_gpus"] == pytest.approx(1 / 10)


def test_time_limit_kills_at_the_deadline_or_after_the_grace() -> None:
    trace = [job(0, 1, 10, time_limit_s=4), job(0, 1, 3, time_limit_s=4)]
    at_once = replay(one_node(trace), settings("fifo"))
    assert at_once.recorder.ended == [4, 3]
    assert at_once.recorder.final == [JobState.FAILED, JobState.SUCCEEDED]
    graceful = replay(one_node(trace), settings("fifo", kill_delay_s=None, kill_grace_s=2))
    assert graceful.recorder.ended == [6, 3]
    assert graceful.recorder.final[0] is JobState.FAILED
    # The job's own end comes before the grace runs out: it ends then, still failed.
    late = replay(one_node(trace), settings("fifo", kill_delay_s=None, kill_grace_s=20))
    assert late.recorder.ended[0] == 10 and late.recorder.final[0] is JobState.FAILED


def test_a_job_no_node_can_hold_is_rejected_and_the_rest_run() -> None:
    r = replay(one_node([job(0, 8, 1), job(0, 1, 1)]), settings("fifo"))
    assert list(r.rejected) == [0] and "gpus" in r.rejected[0]
    assert r.summary["rejected"] == 1 and r.summary["finished"] == 1
    assert math.isnan(r.recorder.started[0])


def reclaim_scenario() -> Scenario:
    # A (quota 2) borrows B's idle 2 GPUs with 4 one-GPU jobs of 1000 s; at 100 s B asks for 2.
    jobs = [job(0, 1, 1000, "A") for _ in range(4)] + [job(100, 2, 50, "B")]
    projects = [Project("A", quota=2), Project("B", quota=2)]
    return Scenario("reclaim", jobs, [NodeSpec("n0", 4)], projects)


def test_fairshare_reclaim_saves_work_when_jobs_checkpoint_on_stop() -> None:
    r = replay(reclaim_scenario(), settings("fairshare", preempt_grace_s=30))
    rec = r.recorder
    # Two of A's jobs are told at 100 s, exit at 130; B runs 130-180; the victims resume at
    # 180 with 900 s of work left and end at 1080.
    assert rec.started[4] == 130 and rec.ended[4] == 180
    victims = [i for i in range(4) if rec.ended[i] == 1080]
    assert len(victims) == 2 and all(rec.ended[i] == 1000 for i in range(4) if i not in victims)
    assert r.summary["preemptions"] == 2
    assert r.summary["lost_gpu_hours"] == pytest.approx(2 * 30 / 3600)  # the stop delay only
    assert all(rec.final[i] is JobState.SUCCEEDED for i in range(5))
    # Two waits: to the first start (the victims: 0 s; B: 30 s), and all time queued (the victims
    # were queued again from their exit at 130 s to their restart at 180 s).
    assert [rec.queued[i] for i in victims] == [50, 50] and rec.queued[4] == 30
    assert r.summary["first_wait_s_mean"] == pytest.approx(30 / 5)
    assert r.summary["queued_s_mean"] == pytest.approx((50 + 50 + 30) / 5)


def test_fairshare_reclaim_loses_work_since_the_last_periodic_checkpoint() -> None:
    r = replay(reclaim_scenario(), settings("fairshare", preempt_grace_s=30, checkpoint_every_s=60))
    rec = r.recorder
    # Checkpoints at 60 s of run time: 40 s of each victim's work is lost, 940 s are left.
    victims = [i for i in range(4) if rec.ended[i] == 180 + 940]
    assert len(victims) == 2
    assert r.summary["lost_gpu_hours"] == pytest.approx(2 * (40 + 30) / 3600)


def test_replays_are_deterministic() -> None:
    trace = [job(i // 3, 1 + i % 3, 5 + (i * 7) % 11, "A" if i % 2 else "B") for i in range(60)]
    scenario = Scenario("det", trace, [NodeSpec("n0", 4), NodeSpec("n1", 4)], [Project("A", 4), Project("B", 4)])
    a = replay(scenario, settings("fairshare"))
    b = replay(scenario, settings("fairshare"))
    assert a.recorder.start_order == b.recorder.start_order
    assert a.recorder.started == b.recorder.started and a.summary == b.summary


def test_work_without_duration_goes_through_the_cost_model() -> None:
    # 2e15 FLOP at 1e14 FLOP/s = 20 s; the second job has a duration of its own.
    trace = [job(0, 1, None, work=2e15), job(0, 1, 5)]
    r = replay(one_node(trace), settings("fifo"), cost_model=lambda j: (j.work or 0) / 1e14)
    assert r.recorder.ended == [20, 5] and r.durations == [20, 5]
    with pytest.raises(SpecError) as err:
        replay(one_node(trace), settings("fifo"))
    assert err.value.field == "duration_s" and "cost model" in err.value.message


def test_rows_out_of_time_order_arrive_by_time_and_keep_their_ids() -> None:
    trace = [job(5, 4, 1), job(0, 4, 2), job(0, 4, 3)]
    r = replay(one_node(trace), settings("fifo"))
    # Row 1 and row 2 tie at 0 s and go in row order; row 0 arrives last.
    assert r.recorder.start_order == [1, 2, 0]
    assert r.recorder.started == [5, 0, 2]


def test_jobs_with_no_gpu_replay_on_cpu_while_the_gpus_are_busy() -> None:
    nodes = [NodeSpec("g0", 2, cpu_milli=4000), NodeSpec("c0", 0, cpu_milli=4000)]
    jobs = [job(0, 2, 100), job(1, 1, 10), job(2, 0, 30, cpu_milli=3000), job(3, 0, 30, cpu_milli=3000)]
    r = replay(Scenario("cpu", jobs, nodes, [Project("a", quota=2)]), settings("fairshare"))
    rec = r.recorder
    # Both CPU jobs start at once (one per node: 3 of 4 CPUs each) while the GPU job waits for a GPU.
    assert rec.started == [0, 100, 2, 3] and rec.final == [JobState.SUCCEEDED] * 4
