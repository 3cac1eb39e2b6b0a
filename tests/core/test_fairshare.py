"""Fair share through the core: guarantees, weighted lending, history, departments, limits, classes."""

from __future__ import annotations

import pytest

from aifactory.core import Finished, JobState, Project, SpecError, Submit
from aifactory.core.factory import FactorySettings
from aifactory.core.project import Department

from .helpers import factory, launched, spec


def test_fairshare_is_the_default_policy() -> None:
    assert FactorySettings().policy == "fairshare"


def test_guarantee_goes_first_then_idle_gpus_are_lent() -> None:
    f = factory([Project("a", quota=2), Project("b", quota=2)], gpus=4)
    for i in range(1, 5):
        f.handle(Submit(i, spec(1, "a")), 0)  # a borrows b's idle guarantee
    assert f.usage["a"] == 4
    acct = {a.project: a for a in f.accounts(0)}
    assert (acct["a"].borrowed, acct["b"].lent) == (2, 2)
    f.handle(Submit(10, spec(1, "a")), 1)
    f.handle(Submit(20, spec(1, "b")), 1)
    f.handle(Finished(1, 0), 2)  # one GPU frees: b is under its guarantee, a is over
    assert f.job(20).state is JobState.RUNNING and f.job(10).state is JobState.QUEUED


def test_idle_gpus_are_lent_in_proportion_to_weights() -> None:
    f = factory([Project("a", weight=3), Project("b", weight=1)], gpus=8, half_life_s=0.0)
    for i in range(30):
        f.handle(Submit(i, spec(1, "a")), 0)
        f.handle(Submit(100 + i, spec(1, "b")), 0)
    for i in range(2):  # finish everything running twice: weighted max-min decides who refills
        running = sorted(f.running)
        for job_id in running:
            f.handle(Finished(job_id, 0), 1 + i)
    assert f.usage == {"a": 6, "b": 2}


def test_recent_heavy_user_waits_behind_light_one() -> None:
    f = factory([Project("a"), Project("b")], gpus=2, half_life_s=3600.0)
    f.handle(Submit(1, spec(2, "a")), 0)
    f.handle(Finished(1, 0), 7200)  # a used 2 GPUs for two hours; b nothing
    f.handle(Submit(2, spec(1, "a")), 7200)
    assert f.job(2).state is JobState.RUNNING  # idle cluster: history never leaves GPUs idle
    f.handle(Submit(3, spec(1, "a")), 7201)
    f.handle(Submit(4, spec(1, "a")), 7202)
    f.handle(Submit(5, spec(1, "b")), 7203)
    f.handle(Finished(2, 0), 7300)
    assert f.job(5).state is JobState.RUNNING and f.job(4).state is JobState.QUEUED
    assert f.accounts(7300)[0].history_gpu_s > f.accounts(7300)[1].history_gpu_s


def test_without_history_the_tie_goes_by_name_not_by_past_use() -> None:
    f = factory([Project("a"), Project("b")], gpus=1, half_life_s=0.0)
    f.handle(Submit(1, spec(1, "a")), 0)
    f.handle(Finished(1, 0), 7200)
    f.handle(Submit(2, spec(1, "b")), 7200)
    f.handle(Submit(3, spec(1, "a")), 7200)
    f.handle(Submit(4, spec(1, "b")), 7200)
    f.handle(Finished(2, 0), 7201)
    assert f.job(3).state is JobState.RUNNING  # a holds 0, b holds 0 after 2 ends: a by name


def test_department_shares_come_before_project_shares() -> None:
    depts = [Department("big", weight=3), Department("small", weight=1)]
    projects = [Project("a", department="big"), Project("b", department="big"), Project("c", department="small")]
    f = factory(projects, gpus=8, departments=depts)
    for _ in range(20):
        for p in ("a", "b", "c"):
            f.handle(Submit(len(f.jobs) + 1, spec(1, p)), 0)
    for round_ in range(2):
        for job_id in sorted(f.running):
            f.handle(Finished(job_id, 0), 1 + round_)
    big = f.usage["a"] + f.usage["b"]
    assert (big, f.usage["c"]) == (6, 2)
    assert abs(f.usage["a"] - f.usage["b"]) <= 1


def test_project_and_department_hard_limits() -> None:
    depts = [Department("d", limit=3)]
    f = factory([Project("a", limit=2, department="d"), Project("b", department="d")], gpus=8, departments=depts)
    for i in range(1, 4):
        f.handle(Submit(i, spec(1, "a")), 0)
    assert f.usage["a"] == 2
    assert f.pending_reason(3) == "project a at its limit 2/2"
    f.handle(Submit(4, spec(1, "b")), 1)
    f.handle(Submit(5, spec(1, "b")), 1)
    assert f.usage["b"] == 1 and f.pending_reason(5) == "department d at its limit 3/3"
    with pytest.raises(SpecError) as err:
        f.handle(Submit(6, spec(3, "a")), 2)
    assert err.value.field == "gpus"


@pytest.mark.parametrize("policy", ["fairshare", "fifo", "priority", "backfill"])
def test_a_department_limit_holds_when_sibling_projects_start_in_one_pass(policy: str) -> None:
    """The jobs of two projects wait behind a gang; when it ends one pass starts them: what the pass
    gives one project counts against their department's limit for the other."""
    depts = [Department("ops", quota=8), Department("lab", limit=3)]
    projects = [
        Project("ops", quota=8, department="ops"),
        Project("a", department="lab"),
        Project("b", department="lab"),
    ]
    f = factory(projects, gpus=8, departments=depts, policy=policy)
    f.handle(Submit(1, spec(8, "ops")), 0)
    for i, project in enumerate("abab", start=2):
        f.handle(Submit(i, spec(1, project)), 0)
    assert f.usage["ops"] == 8
    f.handle(Finished(1, 0), 10)
    assert f.dept_usage["lab"] == 3 and f.usage["a"] + f.usage["b"] == 3
    assert f.pending_reason(5) == "department lab at its limit 3/3"


def test_priority_classes_are_validated_and_bounded_by_quota() -> None:
    f = factory([Project("a", quota=2)], gpus=4)
    with pytest.raises(SpecError) as err:
        f.check(spec(1, priority_class="batch"))
    assert err.value.field == "priority_class" and "train" in str(err.value)
    with pytest.raises(SpecError) as err:
        f.check(spec(3, priority_class="interactive"))
    assert err.value.field == "priority_class"
    f.handle(Submit(1, spec(2, priority_class="inference")), 0)
    f.handle(Submit(2, spec(1, priority_class="interactive")), 0)
    assert f.job(1).state is JobState.RUNNING
    assert f.job(2).state is JobState.QUEUED and "only within quota" in f.pending_reason(2)
    f.handle(Submit(3, spec(2)), 0)  # train may borrow the idle GPUs
    assert f.job(3).state is JobState.RUNNING


def test_fractions_count_as_fractions_against_quota_and_limits() -> None:
    f = factory([Project("a", quota=1, limit=1.5), Project("b", quota=1)], gpus=2)
    for i in range(1, 5):
        f.handle(Submit(i, spec(0.5, "a")), 0)
    assert f.usage["a"] == 1.5 and f.job(4).state is JobState.QUEUED
    assert f.accounts(0)[0].pending_gpus == 0.5
    node = f.cluster.nodes["node0"]
    assert sorted(node.free) == [0, 500]


def test_per_model_quota_bounds_interactive_jobs_of_that_model() -> None:
    from aifactory.core import Cluster, Factory, Node

    cluster = Cluster([Node("h", 4, gpu_model="H100"), Node("l", 4, gpu_model="L4")])
    f = Factory(cluster, [Project("a", quota=4, quota_by_model={"H100": 1})], FactorySettings(min_runtime_s=0))
    f.handle(Submit(1, spec(1, gpu_model="H100", priority_class="interactive")), 0)
    f.handle(Submit(2, spec(1, gpu_model="H100", priority_class="interactive")), 0)
    f.handle(Submit(3, spec(2, gpu_model="L4", priority_class="interactive")), 0)
    assert [f.job(i).state for i in (1, 2, 3)] == [JobState.RUNNING, JobState.QUEUED, JobState.RUNNING]


def test_set_project_at_run_time_changes_the_next_pass() -> None:
    f = factory([Project("a", limit=1)], gpus=4)
    f.handle(Submit(1, spec(1)), 0)
    f.handle(Submit(2, spec(1)), 0)
    assert f.job(2).state is JobState.QUEUED
    f.set_project(Project("a", limit=4))
    f.handle(Submit(3, spec(1)), 1)
    assert f.job(2).state is JobState.RUNNING and f.job(3).state is JobState.RUNNING
    with pytest.raises(SpecError) as err:
        f.set_project(Project("a", quota=-1))
    assert err.value.field == "quota"
    with pytest.raises(SpecError) as err:
        f.set_project(Project("a", pool="other"))
    assert err.value.field == "pool"


def test_small_jobs_of_a_project_start_past_its_blocked_big_one() -> None:
    f = factory([Project("a")], gpus=4)
    f.handle(Submit(1, spec(3)), 0)
    f.handle(Submit(2, spec(4)), 0)
    launched_now = launched(f.handle(Submit(3, spec(1)), 0))
    assert launched_now == [3]
    assert f.pending_reason(2) == "needs 4 GPUs on one node; largest free block is 1"


def test_a_job_the_pass_skipped_still_says_why_it_waits() -> None:
    f = factory([Project("a")], gpus=2)
    f.handle(Submit(1, spec(2)), 0)
    f.handle(Submit(2, spec(2)), 1)  # full floor, a is over quota: the pass stops early
    assert f.pending_reason(2) == "needs 2 GPUs on one node; largest free block is 0"


def test_memory_fractions_count_by_the_share_of_the_gpu() -> None:
    from aifactory.core import Cluster, Factory

    f = Factory(Cluster.virtual(2, 1, memory_mib=80_000), [Project("a", quota=1)])
    f.handle(Submit(1, spec(1, gpu_memory_mib=20_000)), 0)
    assert f.job(1).demand == 0.25 and f.usage["a"] == 0.25
    assert f.job(1).placement is not None and f.job(1).placement.milli == 250
    with pytest.raises(SpecError) as err:
        f.check(spec(1, gpu_memory_mib=100_000))
    assert err.value.field == "gpu_memory"


def test_a_job_behind_its_own_project_says_how_many_are_ahead() -> None:
    f = factory([Project("a", limit=1)], gpus=4)
    f.handle(Submit(1, spec(1)), 0)
    f.handle(Submit(2, spec(1)), 0)
    f.handle(Submit(3, spec(1, priority=5)), 0)
    f.handle(Submit(4, spec(1)), 0)
    f.job(4).pending_reason = ""  # as if no pass had reached it
    assert f.pending_reason(4) == "project a at its limit 1/1"
    f.set_project(Project("a", limit=None))
    f.job(2).pending_reason = ""
    assert f.pending_reason(2) == "1 job of project a ahead; waiting for its fair-share turn"
