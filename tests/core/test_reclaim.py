"""Reclaim: an owner under its guarantee takes back borrowed GPUs, losing the least work."""

from __future__ import annotations

import pytest

from aifactory.core import Department, Finished, JobState, Project, SpecError, Submit, Tick
from aifactory.core.events import Checkpoint

from .helpers import factory, launched, preempted, spec


def borrowed_floor(**settings: object):  # type: ignore[no-untyped-def]
    """b borrows all 4 GPUs of a 4-GPU node on which a is guaranteed 2."""
    f = factory([Project("a", quota=2), Project("b", quota=2)], gpus=4, **settings)
    for i in range(1, 5):
        f.handle(Submit(i, spec(1, "b")), float(i))  # job i started at t=i
    assert f.usage["b"] == 4
    return f


def test_reclaim_preempts_just_enough_and_requeues_the_victim_with_its_attempts() -> None:
    f = borrowed_floor()
    acts = f.handle(Submit(10, spec(1, "a")), 100)
    assert preempted(acts) == [4]  # the shortest running: least work lost, one GPU is enough
    assert f.job(4).state is JobState.PREEMPTED
    assert "reclaiming borrowed GPUs for project a" in f.pending_reason(10)
    acts = f.handle(Finished(4, -15), 101)  # the victim's process exits after SIGTERM
    assert launched(acts) == [10]
    victim = f.job(4)
    assert victim.state is JobState.QUEUED and victim.attempts == 1 and victim.done_s == 97


def test_victim_with_the_latest_checkpoint_loses_least_work() -> None:
    f = borrowed_floor()
    f.handle(Checkpoint(1), 99)  # job 1 saved its state a second ago: cheapest to stop
    assert preempted(f.handle(Submit(10, spec(1, "a")), 100)) == [1]


def test_just_started_jobs_are_protected_until_min_runtime_then_a_tick_reclaims() -> None:
    f = borrowed_floor(min_runtime_s=300.0)
    acts = f.handle(Submit(10, spec(1, "a")), 100)
    assert preempted(acts) == []
    assert f.next_wakeup() == 301.0  # job 1 (started at 1) comes of age first
    assert preempted(f.handle(Tick(), 301.0)) == [1]


def test_no_borrowing_while_gpus_are_being_reclaimed() -> None:
    f = borrowed_floor()
    f.handle(Submit(10, spec(2, "a")), 100)  # needs two victims
    assert sorted(preempted(f.handle(Tick(), 100))) == []  # already asked: no second round
    assert [f.job(i).state for i in (3, 4)] == [JobState.PREEMPTED, JobState.PREEMPTED]
    f.handle(Submit(11, spec(1, "b")), 101)
    f.handle(Finished(4, -15), 102)  # one GPU is free, but it is a's: b may not borrow it
    assert f.job(11).state is JobState.QUEUED and f.job(10).state is JobState.QUEUED
    # The victim (4) is back at the head of b's queue, ahead of 11: it is the one held back.
    assert f.job(4).state is JobState.QUEUED
    assert "no borrowing" in f.pending_reason(4)
    assert "1 job of project b ahead" in f.pending_reason(11)
    assert launched(f.handle(Finished(3, -15), 103)) == [10]


def test_over_quota_job_never_preempts_and_non_preemptible_is_never_a_victim() -> None:
    f = factory([Project("a", quota=2), Project("b", quota=2)], gpus=4)
    f.handle(Submit(1, spec(2, "b", priority_class="inference")), 0)
    f.handle(Submit(2, spec(2, "b")), 0)  # borrowed
    assert preempted(f.handle(Submit(3, spec(3, "a")), 100)) == []  # 3 > a's quota of 2: no reclaim
    acts = f.handle(Submit(4, spec(2, "a")), 101)
    assert preempted(acts) == [2]  # the borrowed train job, never the inference one


def test_a_project_gives_back_only_what_it_borrowed() -> None:
    f = factory([Project("a", quota=2), Project("b", quota=2)], gpus=4)
    for i in range(1, 4):
        f.handle(Submit(i, spec(1, "b")), float(i))  # b holds 3: one over quota
    f.handle(Submit(10, spec(2, "a")), 100)  # 1 GPU free + 1 borrowed = enough
    assert f.job(10).state is JobState.QUEUED
    assert [f.job(i).state for i in (1, 2, 3)].count(JobState.PREEMPTED) == 1
    f.handle(Submit(11, spec(1, "a")), 100)
    assert [f.job(i).state for i in (1, 2, 3)].count(JobState.PREEMPTED) == 1  # b is at quota now


def test_gang_reclaim_frees_one_node() -> None:
    f = factory([Project("a", quota=4), Project("b", quota=4)], gpus=4, nodes=2)
    for i in range(1, 9):
        f.handle(Submit(i, spec(1, "b")), float(i))
    acts = f.handle(Submit(10, spec(4, "a")), 100)
    victims = preempted(acts)
    assert len(victims) == 4
    assert len({f.job(v).placement.nodes for v in victims}) == 1  # all on one node
    for v in victims:
        acts = f.handle(Finished(v, -15), 101)
    assert launched(acts) == [10]


def test_a_restart_mid_reclaim_keeps_the_room_for_the_owner() -> None:
    f = borrowed_floor()
    f.handle(Submit(10, spec(1, "a")), 100)
    assert f.job(4).state is JobState.PREEMPTED
    g = factory([Project("a", quota=2), Project("b", quota=2)], gpus=4)
    for job in f.jobs.values():  # the live shell's restart: records from the store
        g.restore(job)
    g.handle(Submit(11, spec(1, "b")), 101)
    assert preempted(g.handle(Tick(), 101)) == []  # job 4 is already stopping: nothing more to take
    assert launched(g.handle(Finished(4, -15), 102)) == [10]  # the freed GPU goes to its owner
    assert g.job(11).state is JobState.QUEUED


def test_department_changes_at_run_time() -> None:
    f = factory([Project("a", department="d"), Project("b", department="d")], gpus=4)
    f.handle(Submit(1, spec(2, "a")), 0)
    f.set_department(Department("d", limit=3))
    f.handle(Submit(2, spec(2, "b")), 1)
    assert f.job(2).state is JobState.QUEUED and f.pending_reason(2) == "department d at its limit 2/3"
    with pytest.raises(SpecError) as err:
        f.set_department(Department("d", quota=4, limit=2))
    assert err.value.field == "limit"
