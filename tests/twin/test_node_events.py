"""Node events in the twin: a floor's drains, deaths and joins replayed when they happened, and
carried from the live store's log through the floor file."""

from __future__ import annotations

from pathlib import Path

from aifactory.core import Drain, JobSpec, NodeJoined, NodeSpec, NodeState, Project
from aifactory.core.states import JobState
from aifactory.live import history
from aifactory.live.store import NodeEventRow, Store
from aifactory.projects_file import load_floor, write_floor
from aifactory.twin.replay import Twin
from aifactory.twin.scenarios import from_file
from aifactory.twin.traces.format import Scenario, TraceJob


def job(at: float, gpus: int, seconds: float) -> TraceJob:
    return TraceJob(at, JobSpec((), project="p", gpus=gpus, duration_s=seconds))


def scenario(events: list[tuple[float, object]]) -> Scenario:
    nodes = [NodeSpec("a", 2), NodeSpec("b", 2), NodeSpec("late", 4)]
    return Scenario(
        "s", [job(0, 2, 100), job(1, 2, 100), job(2, 4, 50)], nodes, [Project("p", quota=8)], [], None, events
    )  # type: ignore[arg-type]


def test_a_node_dies_its_job_runs_elsewhere_and_a_late_node_takes_work() -> None:
    twin = Twin(scenario([(0, NodeJoined(NodeSpec("late", 4))), (30, NodeState("a", up=False))]))
    # "late" joins at 0, before the first job: all three start at once.
    result = twin.run()
    rec = twin.recorder
    assert result.summary["finished"] == 3 and not result.rejected
    assert [rec.started[i] for i in range(3)] == [0, 1, 2]
    # Job 0 ran 30 s on "a", which died: requeued, it waits for the first 2 free GPUs ("late",
    # where job 2 ends at 52) then runs its 70 s left (the history counts the lost attempt's run
    # time as work done).
    assert twin.factory.job(0).attempts == 2 and rec.ended[0] == 52 + 70


def test_a_node_that_joins_later_is_not_there_before() -> None:
    s = scenario([(40, NodeJoined(NodeSpec("late", 4))), (60, Drain("b"))])
    twin = Twin(s)
    result = twin.run()
    # No node had 4 GPUs when the 4-GPU job came (2 s): refused, as the floor refuses a job that
    # could never run; a 2-GPU job waits for the node that joins.
    assert list(result.rejected) == [2] and "gpus" in result.rejected[2]
    s.jobs[2] = job(2, 2, 50)
    twin = Twin(s)
    twin.run()
    assert twin.recorder.started[2] == 40
    assert twin.cluster.node("b").state == "drained"


def test_the_floor_file_carries_node_events_and_refuses_bad_ones(tmp_path: Path) -> None:
    import pytest

    from aifactory.core.errors import SpecError

    s = scenario([(0, NodeJoined(NodeSpec("late", 4))), (5, Drain("a", drained=True)), (9, NodeState("b", False))])
    path = write_floor(tmp_path / "f.floor.yaml", s.nodes, s.projects, [], None, s.node_events)
    assert load_floor(path).node_events == s.node_events
    text = path.read_text()
    path.write_text(text.replace("node: b", "node: nowhere"))
    with pytest.raises(SpecError, match=r"node_events\[2\]\.node"):
        load_floor(path)
    path.write_text(text.replace("at: 9", "at: 1"))
    with pytest.raises(SpecError, match=r"node_events\[2\]\.at"):
        load_floor(path)
    path.write_text(text.replace("kind: drain", "kind: reboot"))
    with pytest.raises(SpecError, match=r"node_events\[1\]\.kind"):
        load_floor(path)


def test_the_live_stores_node_events_go_into_the_exported_trace(tmp_path: Path) -> None:
    from aifactory.core.actions import StateChanged

    url = f"sqlite:///{tmp_path / 'factory.db'}"
    R, Q, S = JobState.RUNNING, JobState.QUEUED, JobState.SUCCEEDED
    with Store(url) as store:
        store.save_nodes([NodeSpec("n0", 2), NodeSpec("n1", 2)])
        store.save_projects([Project("p", quota=4)])
        j = store.create_job(JobSpec(("x",), project="p", gpus=2), 100.0)
        store.apply([StateChanged(j, Q, R, 100.0), StateChanged(j, R, Q, 110.0, "node n0 lost")], {})
        store.apply([StateChanged(j, Q, R, 110.0), StateChanged(j, R, S, 150.0)], {})
        store.add_node_events(
            [
                NodeEventRow(50.0, Drain("n1"), "alice"),  # before the first job: at 0
                NodeEventRow(52.0, Drain("n1", drained=False), "alice"),
                NodeEventRow(110.0, NodeState("n0", up=False)),
            ]
        )
        recorded = history.load(store)
    assert recorded.jobs[0].spec.duration_s == 50  # both attempts
    assert recorded.node_events == [(0, Drain("n1")), (0, Drain("n1", drained=False)), (10, NodeState("n0", False))]
    out, _ = history.export(recorded, tmp_path / "floor.csv")
    again = from_file(out)
    assert again.node_events == recorded.node_events
    twin = Twin(again)
    twin.run()
    # In the replay n0 dies at 10 s too: the job comes back and runs on n1, 50 s of work in all.
    assert twin.factory.job(0).attempts == 2 and twin.recorder.ended[0] == 50


def test_the_floor_file_carries_job_events_and_refuses_bad_ones(tmp_path: Path) -> None:
    import pytest

    from aifactory.core import GpuIdle, Hold, Update
    from aifactory.core.errors import SpecError

    s = scenario([])
    events = [(1.0, Hold(0, True, "ops")), (2.0, Update(1, priority=3, by="ops")), (3.0, GpuIdle(1, 2.5))]
    path = write_floor(tmp_path / "f.floor.yaml", s.nodes, s.projects, [], None, [], events)
    assert load_floor(path).job_events == events
    text = path.read_text()
    path.write_text(text.replace("priority: 3", "priority: lots"))
    with pytest.raises(SpecError, match=r"job_events\[1\]\.data\.priority"):
        load_floor(path)
    path.write_text(text.replace("kind: hold", "kind: pause"))
    with pytest.raises(SpecError, match=r"job_events\[0\]\.kind"):
        load_floor(path)
