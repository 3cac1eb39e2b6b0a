"""The Factory driven through events with an explicit clock: no processes, no sleeping."""

from __future__ import annotations

import pytest

from aifactory.core import (
    Cancel,
    Cluster,
    Factory,
    Finished,
    InvalidTransition,
    JobSpec,
    JobState,
    Kill,
    Launch,
    NotFound,
    Project,
    SpecError,
    StateChanged,
    Submit,
    Tick,
)
from aifactory.core.factory import FactorySettings
from aifactory.core.job import Placement


def make(gpus: int = 4, nodes: int = 1, policy: str = "fifo") -> Factory:
    return Factory(
        Cluster.virtual(gpus, nodes),
        [Project("default", quota=gpus * nodes), Project("vision")],
        FactorySettings(policy=policy),
    )


def spec(gpus: float = 1, **kw: object) -> JobSpec:
    return JobSpec(command=("true",), gpus=gpus, **kw)  # type: ignore[arg-type]


def launches(actions: list) -> list[int]:
    return [a.job_id for a in actions if isinstance(a, Launch)]


def test_submit_starts_when_room_and_records_transitions() -> None:
    f = make()
    acts = f.handle(Submit(1, spec(2)), now=5.0)
    assert launches(acts) == [1]
    changes = [(a.old, a.new, a.at) for a in acts if isinstance(a, StateChanged)]
    assert changes == [(None, JobState.QUEUED, 5.0), (JobState.QUEUED, JobState.RUNNING, 5.0)]
    job = f.job(1)
    assert job.state is JobState.RUNNING and job.started_at == 5.0 and job.attempts == 1
    assert job.placement == Placement((("node0", (0, 1)),))


def test_fifo_head_blocks_and_queue_drains_in_order() -> None:
    f = make()
    f.handle(Submit(1, spec(3)), 0)
    assert launches(f.handle(Submit(2, spec(2)), 1)) == []
    assert launches(f.handle(Submit(3, spec(1)), 2)) == []  # 1 GPU free, but job 2 is first
    assert f.pending_reason(2) == "needs 2 GPUs on one node; largest free block is 1"
    assert f.pending_reason(3) == "1 job ahead in the queue"
    acts = f.handle(Finished(1, 0), 10)
    assert launches(acts) == [2, 3]
    assert f.job(1).state is JobState.SUCCEEDED
    assert f.cluster.free_gpus() == 1


def test_priority_policy_orders_by_priority_then_submission() -> None:
    f = make(policy="priority")
    f.handle(Submit(1, spec(4)), 0)
    for i, prio in [(2, 0), (3, 5), (4, 5)]:
        f.handle(Submit(i, spec(4, priority=prio)), i)
    order = []
    for done in (1, 3, 4):
        order += launches(f.handle(Finished(done, 0), 10 + done))
    assert order == [3, 4, 2]


def test_multi_gpu_job_stays_on_one_node_when_it_fits() -> None:
    f = make(gpus=4, nodes=2)
    f.handle(Submit(1, spec(2)), 0)  # node0: 2 of 4 busy
    f.handle(Submit(2, spec(3)), 0)  # does not fit node0's 2 free: goes whole to node1
    assert f.job(2).placement is not None and f.job(2).placement.nodes == ("node1",)
    f.handle(Submit(3, spec(2)), 0)  # pack: fills node0 rather than splitting
    assert f.job(3).placement == Placement((("node0", (2, 3)),))


def test_multi_node_gang_is_all_or_nothing() -> None:
    f = make(gpus=4, nodes=2)
    f.handle(Submit(1, spec(1)), 0)
    f.handle(Submit(2, spec(8, multi_node=True)), 0)
    assert f.job(2).state is JobState.QUEUED  # 7 free, never a partial start
    f.handle(Finished(1, 0), 1)
    assert f.job(2).state is JobState.RUNNING and f.job(2).placement.gpu_count == 8


def test_fractions_share_a_gpu_without_overcommit() -> None:
    f = make(gpus=1)
    for i in range(1, 4):
        f.handle(Submit(i, spec(0.4)), 0)
    assert [f.job(i).state for i in (1, 2, 3)] == [JobState.RUNNING, JobState.RUNNING, JobState.QUEUED]
    assert f.cluster.nodes["node0"].free == [200]
    assert f.job(1).placement.milli == 400


def test_exit_codes_decide_success_or_failure() -> None:
    f = make()
    f.handle(Submit(1, spec()), 0)
    f.handle(Submit(2, spec()), 0)
    f.handle(Finished(1, 3), 1)
    f.handle(Finished(2, None, reason="process lost while the server was down"), 1)
    assert (f.job(1).state, f.job(1).reason) == (JobState.FAILED, "exit code 3")
    assert (f.job(2).state, f.job(2).reason) == (JobState.FAILED, "process lost while the server was down")


def test_a_job_whose_process_never_started_goes_back_to_its_place_in_the_queue() -> None:
    f = make(gpus=1)
    f.handle(Submit(1, spec()), 0)
    f.handle(Submit(2, spec()), 0)
    assert (f.job(1).state, f.job(1).attempts) == (JobState.RUNNING, 1)
    acts = f.handle(Finished(1, None, "server stopped before the spawn", started=False), 5)
    # Not failed: it never ran. Its GPU is free and it starts again at once, ahead of job 2.
    assert [a.job_id for a in acts if isinstance(a, Launch)] == [1]
    assert (f.job(1).state, f.job(1).attempts, f.job(2).state) == (JobState.RUNNING, 1, JobState.QUEUED)
    f.handle(Cancel(1), 6)
    f.handle(Finished(1, None, started=False), 7)  # a cancelled job that never started ends cancelled
    assert f.job(1).state is JobState.CANCELLED


def test_cancel_queued_is_immediate_and_running_asks_for_a_kill() -> None:
    f = make(gpus=1)
    f.handle(Submit(1, spec()), 0)
    f.handle(Submit(2, spec()), 0)
    f.handle(Cancel(2), 1)
    assert f.job(2).state is JobState.CANCELLED
    acts = f.handle(Cancel(1), 2)
    assert [a for a in acts if isinstance(a, Kill)] == [Kill(1, "cancelled by user", 10.0)]
    assert f.job(1).state is JobState.RUNNING  # until its process has really exited
    f.handle(Finished(1, -15), 3)
    assert f.job(1).state is JobState.CANCELLED
    with pytest.raises(InvalidTransition):
        f.handle(Cancel(1), 4)


def test_time_limit_kills_and_fails_with_reason() -> None:
    f = make()
    f.handle(Submit(1, spec(time_limit_s=30)), 100)
    assert f.next_wakeup() == 130
    assert not [a for a in f.handle(Tick(), 129) if isinstance(a, Kill)]
    kills = [a for a in f.handle(Tick(), 130) if isinstance(a, Kill)]
    assert kills == [Kill(1, "time limit", 10.0)]
    f.handle(Finished(1, -15), 131)
    assert (f.job(1).state, f.job(1).reason) == (JobState.FAILED, "time limit")
    assert f.next_wakeup() is None


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        (spec(0), "gpus"),
        (spec(-1), "gpus"),
        (spec(1.5), "gpus"),
        (spec(5), "gpus"),
        (spec(9, multi_node=True), "gpus"),
        (spec(project="nope"), "project"),
        (spec(gpu_model="H100"), "gpu_model"),
        (spec(time_limit_s=0), "time_limit"),
    ],
)
def test_bad_specs_name_the_field_and_change_nothing(bad: JobSpec, field: str) -> None:
    f = make(gpus=4, nodes=2)
    with pytest.raises(SpecError) as err:
        f.handle(Submit(1, bad), 0)
    assert err.value.field == field
    assert f.jobs == {} and f.cluster.free_gpus() == 8


def test_unknown_job_and_stale_reports() -> None:
    f = make()
    with pytest.raises(NotFound):
        f.handle(Cancel(99), 0)
    f.handle(Submit(1, spec()), 0)
    f.handle(Finished(1, 0), 1)
    assert f.handle(Finished(1, 0), 2) == []  # a repeated report changes nothing


def test_restore_reattaches_running_jobs_and_requeues_queued() -> None:
    f = make()
    f.handle(Submit(1, spec(3)), 0)
    f.handle(Submit(2, spec(2)), 0)
    g = make()
    for job in f.jobs.values():
        g.restore(job)
    assert g.cluster.free_gpus() == 1 and list(g.queues[None]) == [2]
    assert launches(g.handle(Finished(1, 0), 5)) == [2]


def test_a_preempted_job_gets_its_place_in_the_queue_back() -> None:
    from aifactory.core import Preempt

    f = Factory(
        Cluster.virtual(4),
        [Project("a", quota=2), Project("b", quota=2)],
        FactorySettings(policy="fairshare", min_runtime_s=0),
    )
    f.handle(Submit(1, spec(2, project="a")), 0)
    f.handle(Submit(2, spec(2, project="a")), 0)  # borrows b's idle guarantee
    f.handle(Submit(3, spec(2, project="a")), 1)  # queued: the floor is full
    acts = f.handle(Submit(4, spec(2, project="b")), 2)  # b wants its guarantee back
    victims = [a.job_id for a in acts if isinstance(a, Preempt)]
    assert len(victims) == 1 and victims[0] in (1, 2)
    f.handle(Finished(victims[0], -15), 3)
    assert f.job(victims[0]).state is JobState.QUEUED and f.job(victims[0]).attempts == 1
    # Submitted before job 3, so it waits ahead of job 3, not behind it.
    assert [j for j in f.queues[None] if f.job(j).spec.project == "a"] == [victims[0], 3]


def test_a_drained_node_takes_no_new_job_and_its_running_jobs_run_on() -> None:
    from aifactory.core import Drain
    from aifactory.core.errors import UnknownName

    f = make(gpus=2, nodes=2)
    f.handle(Submit(1, spec(2)), 0)
    assert f.job(1).placement.parts[0][0] == "node0"
    f.handle(Drain("node1"), 1)
    f.handle(Submit(2, spec(2)), 2)
    assert f.job(2).state is JobState.QUEUED  # node1 is free but drained
    f.handle(Drain("node0"), 3)
    assert f.job(1).state is JobState.RUNNING  # a drained node's job runs on
    f.handle(Finished(1, 0), 4)
    f.handle(Submit(3, spec(1)), 5)
    assert f.job(2).state is JobState.QUEUED and f.job(3).state is JobState.QUEUED
    acts = f.handle(Drain("node1", drained=False), 6)
    assert [a.job_id for a in acts if isinstance(a, Launch)] == [2]  # back: the queue moves at once
    with pytest.raises(UnknownName, match="did you mean 'node1'"):
        f.handle(Drain("node11"), 7)


def test_a_job_whose_node_died_is_requeued_until_max_attempts() -> None:
    from aifactory.core import NodeState

    f = make(gpus=1, nodes=2)
    f.handle(Submit(1, spec(1)), 0)
    first = f.job(1).placement.parts[0][0]
    f.handle(NodeState(first, up=False), 1)
    acts = f.handle(Finished(1, None, f"node {first} lost", node_lost=True), 2)
    # Requeued with its attempt counted, and started at once on the node that is left.
    assert [a.job_id for a in acts if isinstance(a, Launch)] == [1]
    assert f.job(1).attempts == 2 and f.job(1).placement.parts[0][0] != first
    f.handle(NodeState(first, up=True), 3)
    f.handle(Finished(1, None, "lost again", node_lost=True), 4)
    assert f.job(1).state is JobState.RUNNING and f.job(1).attempts == 3
    f.handle(Finished(1, None, "and again", node_lost=True), 5)
    assert (f.job(1).state, f.job(1).reason) == (JobState.FAILED, "and again")  # max_attempts reached


def test_a_drained_node_that_dies_and_comes_back_is_still_drained() -> None:
    from aifactory.core import Drain, NodeState

    f = make(gpus=1, nodes=2)
    f.handle(Drain("node1"), 0)
    f.handle(NodeState("node1", up=False), 1)
    assert f.cluster.node("node1").state == "down, drained"
    f.handle(NodeState("node1", up=True), 2)
    assert f.cluster.node("node1").state == "drained"
    f.handle(Submit(1, spec(1)), 3)
    f.handle(Submit(2, spec(1)), 3)
    assert f.job(2).state is JobState.QUEUED  # node0 is taken, node1 is drained
    f.handle(Drain("node1", drained=False), 4)
    assert f.job(2).state is JobState.RUNNING and f.job(2).placement.parts[0][0] == "node1"


def test_a_node_that_joins_takes_work_and_new_shapes_and_models() -> None:
    from aifactory.core import NodeJoined, NodeSpec

    f = make(gpus=2, nodes=1)
    f.handle(Submit(1, spec(2)), 0)
    f.handle(Submit(2, spec(2)), 0)
    with pytest.raises(SpecError, match="gpus"):  # no node has 8 GPUs (yet)
        f.handle(Submit(3, spec(8)), 0)
    with pytest.raises(SpecError, match="gpu_model"):
        f.handle(Submit(3, spec(1, gpu_model="H100")), 0)
    acts = f.handle(NodeJoined(NodeSpec("big", 8, gpu_model="H100", gpu_memory_mib=81559)), 1)
    assert launches(acts) == [2] and f.job(2).placement.parts[0][0] == "big"  # the queue moved at once
    f.handle(Submit(3, spec(6, gpu_model="H100")), 2)  # now it fits: on the new node
    assert f.job(3).state is JobState.RUNNING and f.job(3).placement.parts[0] == ("big", (2, 3, 4, 5, 6, 7))
    assert f.capacity(None, None).total == 10


def test_a_known_node_may_change_capacity_only_while_it_holds_nothing() -> None:
    from aifactory.core import NodeJoined, NodeSpec, NodeState

    f = make(gpus=2, nodes=2)
    f.handle(Submit(1, spec(2)), 0)
    held = f.job(1).placement.parts[0][0]
    other = "node1" if held == "node0" else "node0"
    with pytest.raises(SpecError, match="changed capacity"):
        f.handle(NodeJoined(NodeSpec(held, 4)), 1)
    assert f.cluster.node(held).gpu_count == 2 and f.job(1).state is JobState.RUNNING  # nothing changed
    f.handle(NodeState(other, up=False), 2)
    f.handle(NodeJoined(NodeSpec(other, 4)), 3)  # back with more GPUs: alive, empty, bigger
    node = f.cluster.node(other)
    assert (node.gpu_count, node.up, node.free_whole) == (4, True, 4)
    f.handle(Submit(2, spec(4)), 4)
    assert f.job(2).placement.parts[0] == (other, (0, 1, 2, 3))
    f.handle(NodeJoined(NodeSpec(held, 2)), 5)  # the same capacity: nothing to change
    assert f.job(1).state is JobState.RUNNING


def test_node_events_have_one_word_each_and_back() -> None:
    from aifactory.core import Drain, NodeJoined, NodeSpec, NodeState
    from aifactory.core.events import NODE_EVENT_KINDS, node_event, node_event_kind, node_event_name

    spec = NodeSpec("n", 2)
    events = [
        Drain("n"),
        Drain("n", drained=False),
        NodeState("n", up=False),
        NodeState("n", up=True),
        NodeJoined(spec),
    ]
    assert [node_event_kind(e) for e in events] == list(NODE_EVENT_KINDS)
    assert [node_event(node_event_kind(e), node_event_name(e), spec) for e in events] == events
    with pytest.raises(ValueError, match="not a node event"):
        node_event("reboot", "n")


def test_an_interactive_job_left_idle_is_stopped_after_its_projects_idle_timeout() -> None:
    from aifactory.core import GpuIdle

    f = Factory(Cluster.virtual(4), [Project("lab", quota=4, idle_timeout_s=600)], FactorySettings(kill_grace_s=5))
    f.handle(Submit(1, spec(1, project="lab", priority_class="interactive")), 0)
    f.handle(Submit(2, spec(1, project="lab", priority_class="interactive")), 0)
    f.handle(Submit(3, spec(1, project="lab")), 0)  # train: the idle timeout is not for it
    for job_id in (1, 2, 3):
        f.handle(GpuIdle(job_id, since=100), 100)
    f.handle(GpuIdle(2, since=None), 300)  # busy again: its clock stops
    assert f.next_wakeup() == 700
    acts = f.handle(Tick(), 700)
    kills = [a for a in acts if isinstance(a, Kill)]
    assert [k.job_id for k in kills] == [1] and kills[0].grace_s == 5
    f.handle(Finished(1, -15), 702)
    assert f.job(1).state is JobState.CANCELLED and "idle GPUs for 10 min" in f.job(1).reason
    assert f.job(2).state is JobState.RUNNING and f.job(3).state is JobState.RUNNING
    f.handle(GpuIdle(2, since=800), 800)  # idle again: a new clock
    assert [a.job_id for a in f.handle(Tick(), 1400) if isinstance(a, Kill)] == [2]
    with pytest.raises(SpecError, match="idle_timeout"):
        f.set_project(Project("lab", quota=4, idle_timeout_s=0))


def test_a_held_job_is_not_started_and_keeps_its_place_when_released() -> None:
    from aifactory.core import Hold
    from aifactory.core.actions import Noted

    f = make(gpus=1)
    f.handle(Submit(1, spec(1)), 0)  # runs
    f.handle(Submit(2, spec(1)), 1)
    f.handle(Submit(3, spec(1)), 2)
    acts = f.handle(Hold(2, by="ana"), 3)
    assert [(a.job_id, a.reason) for a in acts if isinstance(a, Noted)] == [(2, "held by ana")]
    assert f.pending_reason(2) == "held by ana"
    f.handle(Finished(1, 0), 4)
    assert f.job(3).state is JobState.RUNNING and f.job(2).state is JobState.QUEUED  # 3 went first
    f.handle(Submit(4, spec(1)), 5)
    f.handle(Hold(2, held=False, by="ana"), 6)
    f.handle(Finished(3, 0), 7)
    assert f.job(2).state is JobState.RUNNING and f.job(4).state is JobState.QUEUED  # 2 before 4: its old place
    with pytest.raises(InvalidTransition, match="only a queued job"):
        f.handle(Hold(2), 8)


def test_update_reevaluates_the_queue_and_a_running_job_may_change_only_its_time_limit() -> None:
    from aifactory.core import Update

    f = make(gpus=2)
    f.handle(Submit(1, spec(2, time_limit_s=100)), 0)
    f.handle(Submit(2, spec(2)), 0)
    f.handle(Submit(3, spec(1)), 0)
    assert f.job(3).state is JobState.QUEUED  # fifo: behind job 2
    f.handle(Update(2, gpus=1, by="bo"), 1)
    f.handle(Finished(1, 0), 2)
    assert f.job(2).state is JobState.RUNNING and f.job(3).state is JobState.RUNNING  # both fit now
    with pytest.raises(SpecError, match="only its time limit"):
        f.handle(Update(2, gpus=2), 3)
    with pytest.raises(SpecError, match="time_limit"):
        f.handle(Update(3, time_limit_s=-5), 3)
    assert f.job(3).spec.time_limit_s is None  # nothing changed
    f.handle(Update(2, time_limit_s=50), 4)  # running: a deadline at 2 + 50
    assert f.next_wakeup() == 52
    kills = [a for a in f.handle(Tick(), 52) if isinstance(a, Kill)]
    assert [k.job_id for k in kills] == [2]


def test_a_longer_time_limit_moves_the_deadline_and_requeue_sends_a_job_back() -> None:
    from aifactory.core import Preempt, Requeue, Update

    f = make(gpus=1)
    f.handle(Submit(1, spec(1, time_limit_s=10)), 0)
    f.handle(Update(1, time_limit_s=100), 5)
    assert not [a for a in f.handle(Tick(), 10) if isinstance(a, Kill)]  # the old deadline passes
    acts = f.handle(Requeue(1, by="op"), 20)
    assert [a.job_id for a in acts if isinstance(a, Preempt)] == [1]
    f.handle(Finished(1, -15), 21)
    assert f.job(1).state is JobState.RUNNING and f.job(1).attempts == 2  # back in the queue, started again
    f.handle(Submit(2, spec(1)), 22)
    with pytest.raises(InvalidTransition, match="only a running job"):
        f.handle(Requeue(2), 23)


def test_a_chain_of_dependencies_and_one_that_can_never_be_met() -> None:
    f = make(gpus=4)
    f.handle(Submit(1, spec(1)), 0)
    f.handle(Submit(2, spec(1, after=((1, "ok"),))), 0)
    f.handle(Submit(3, spec(1, after=((2, "ok"),))), 0)
    f.handle(Submit(4, spec(1, after=((1, "failed"),))), 0)
    f.handle(Submit(5, spec(1, after=((1, "any"), (2, "any")))), 0)
    assert [f.job(i).state for i in (2, 3, 4, 5)] == [JobState.QUEUED] * 4  # 3 GPUs free: they wait
    assert f.pending_reason(2) == "waits for job 1 (afterok)"
    f.handle(Finished(1, 0), 1)
    assert f.job(2).state is JobState.RUNNING
    assert (f.job(4).state, f.job(4).reason) == (
        JobState.CANCELLED,
        "dependency 1 ended succeeded: afterfailed can never be met",
    )
    assert f.job(3).state is JobState.QUEUED and f.job(5).pending_reason == "waits for job 2 (afterany)"
    f.handle(Finished(2, 1), 2)  # failed: 3 (afterok) can never start; 5 (afterany) starts
    assert f.job(3).state is JobState.CANCELLED and "dependency 2 ended failed" in f.job(3).reason
    assert f.job(5).state is JobState.RUNNING
    with pytest.raises(SpecError, match="after"):
        f.handle(Submit(6, spec(1, after=((99, "ok"),))), 3)
    with pytest.raises(SpecError, match="after"):
        f.handle(Submit(6, spec(1, after=((5, "soon"),))), 3)
    # A dependency the shell knows ended (the core forgot it): settled at submission.
    f.forget(4)
    f.handle(Submit(7, spec(1, after=((4, "ok"),)), settled=((4, JobState.CANCELLED),)), 4)
    assert f.job(7).state is JobState.CANCELLED


def test_a_held_job_that_waits_starts_only_when_released_and_its_dependency_ends() -> None:
    from aifactory.core import Hold

    f = make(gpus=2)
    f.handle(Submit(1, spec(1)), 0)
    f.handle(Submit(2, spec(1, after=((1, "any"),))), 0)
    f.handle(Hold(2), 1)
    f.handle(Finished(1, 0), 2)
    assert f.job(2).state is JobState.QUEUED and f.pending_reason(2).startswith("held")
    f.handle(Hold(2, held=False), 3)
    assert f.job(2).state is JobState.RUNNING


def test_an_array_with_a_cap_runs_at_most_that_many_elements_in_index_order() -> None:
    from aifactory.core import Hold

    f = make(gpus=8)
    for i in range(6):
        f.handle(Submit(10 + i, spec(1, array_id=10, array_index=i, array_cap=2)), 0)
    running = sorted(j.spec.array_index for j in f.running.values())
    assert running == [0, 1] and f.pending_reason(12) == "array 10: 2 of its elements at once (%2)"
    f.handle(Finished(10, 0), 1)
    assert sorted(j.spec.array_index for j in f.running.values()) == [1, 2]
    f.handle(Hold(14), 2)  # a waiting element held: skipped when its turn comes
    f.handle(Finished(11, 0), 3)
    assert sorted(j.spec.array_index for j in f.running.values()) == [2, 3]
    f.handle(Finished(12, 0), 4)
    f.handle(Finished(13, 0), 5)
    assert sorted(j.spec.array_index for j in f.running.values()) == [5]
    f.handle(Hold(14, held=False), 6)
    assert sorted(j.spec.array_index for j in f.running.values()) == [4, 5]
