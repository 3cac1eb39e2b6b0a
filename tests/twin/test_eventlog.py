"""The live store's event log as a trace: run time over all attempts, the store's whole floor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aifactory.cli.twin import app
from aifactory.core.actions import StateChanged
from aifactory.core.cluster import NodeSpec
from aifactory.core.errors import SpecError
from aifactory.core.job import JobSpec
from aifactory.core.project import Department, Project
from aifactory.core.states import JobState
from aifactory.live import history
from aifactory.live.store import Store
from aifactory.twin.scenarios import from_file, parse_when
from aifactory.twin.traces.format import read_trace

Q, R, P, S, F, C = (
    JobState.QUEUED,
    JobState.RUNNING,
    JobState.PREEMPTED,
    JobState.SUCCEEDED,
    JobState.FAILED,
    JobState.CANCELLED,
)


def filled_store(url: str) -> None:
    with Store(url) as store:
        store.save_nodes([NodeSpec("n0", 4, "A100", 40960, cpu_milli=16000, memory_mib=65536, rack="r1")])
        store.save_departments([Department("research", quota=4)])
        store.save_projects([Project("a", quota=4, department="research", quota_by_model={"A100": 2})])
        a = JobSpec(command=("x",), project="a", gpus=2, priority=1, time_limit_s=500)
        b = JobSpec(command=("x",), project="b", user="bob", gpus=1)
        ids = [store.create_job(spec, at) for spec, at in [(a, 100.0), (b, 105.0), (b, 106.0), (b, 107.0)]]
        j1, j2, j3, j4 = ids
        moves = [
            (j1, Q, R, 101.0),
            (j2, Q, R, 105.0),
            (j3, Q, C, 110.0),  # never ran: left out
            (j4, Q, R, 108.0),  # still running: left out
            (j2, R, F, 125.0),  # 20 s, failed: replayed as 20 s of work
            (j1, R, P, 150.0),
            (j1, P, Q, 160.0),
            (j1, Q, R, 170.0),
            (j1, R, S, 230.0),  # 49 s until preempted, 10 s to stop, then 60 s: 119 s in all
        ]
        store.apply([StateChanged(i, old, new, at) for i, old, new, at in moves], {})


def test_final_attempts_become_durations(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'factory.db'}"
    filled_store(url)
    with Store(url) as store:
        s = history.load(store)
    assert [(j.submit_time, j.spec.project, j.spec.gpus, j.spec.duration_s) for j in s.jobs] == [
        (0, "a", 2, 119),
        (5, "b", 1, 20),
    ]
    assert (s.jobs[0].spec.priority, s.jobs[0].spec.time_limit_s, s.jobs[1].spec.user) == (1, 500, "bob")
    assert [n.name for n in s.nodes] == ["n0"]
    assert {p.name: p.quota for p in s.projects} == {"a": 4, "b": 0}  # b is known only from its jobs


def test_convert_the_event_log_to_csv(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'factory.db'}"
    filled_store(url)
    out = tmp_path / "last-month.csv"
    result = CliRunner().invoke(app, ["convert", "eventlog", str(out), "--store", url])
    assert result.exit_code == 0, result.output
    assert [j.spec.duration_s for j in read_trace(out)] == [119, 20]
    with Store(url) as store:
        recorded = history.load(store)
    # The floor file beside it holds the floor whole, and the trace file with it replays like the store.
    again = from_file(out)
    assert (again.nodes, again.projects, again.departments) == (recorded.nodes, recorded.projects, recorded.departments)
    assert again.nodes[0].cpu_milli == 16000 and again.projects[0].quota_by_model == {"A100": 2}
    assert again.jobs == recorded.jobs


def test_replay_the_event_log_under_another_policy(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'factory.db'}"
    filled_store(url)
    args = ["run", "--trace", "eventlog", "--store", url, "--policy", "fifo", "--policy", "fairshare", "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    variants = json.loads(result.output)["variants"]
    # On the store's 4 GPUs both jobs (2 + 1 GPUs) start on submission and run as long as they ran.
    for v in variants:
        assert v["summary"]["finished"] == 2 and v["summary"]["first_wait_s_mean"] == 0
        assert v["summary"]["jct_s_mean"] == (119 + 20) / 2


def test_a_window_keeps_only_the_jobs_submitted_in_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'factory.db'}"
    filled_store(url)
    out = tmp_path / "window.csv"
    # Job 1 was submitted at 100 s, job 2 at 105 s (epoch seconds in this store).
    result = CliRunner().invoke(app, ["convert", "eventlog", str(out), "--store", url, "--since", "101"])
    assert result.exit_code == 0, result.output
    assert [(j.submit_time, j.spec.duration_s) for j in read_trace(out)] == [(0, 20)]
    bad = CliRunner().invoke(app, ["convert", "eventlog", str(out), "--store", url, "--until", "last tuesday"])
    assert isinstance(bad.exception, SpecError) and bad.exception.field == "until"
    assert parse_when("1970-01-01T00:01:40", "since") == 100.0


def test_a_floor_file_names_its_settings_and_bad_ones_are_refused(tmp_path: Path) -> None:
    from aifactory.core.factory import FactorySettings
    from aifactory.projects_file import load_floor, write_floor

    path = write_floor(
        tmp_path / "f.floor.yaml", [NodeSpec("n0", 4)], [Project("a")], [], FactorySettings(policy="las")
    )
    assert load_floor(path).settings == FactorySettings(policy="las")
    for bad, field in [("colour: blue", "settings.colour"), ("kill_grace_s: soon", "settings.kill_grace_s")]:
        (tmp_path / "bad.floor.yaml").write_text(f"nodes: [{{name: n0, gpu_count: 1}}]\nsettings:\n  {bad}\n")
        with pytest.raises(SpecError) as err:
            load_floor(tmp_path / "bad.floor.yaml")
        assert err.value.field == field


def test_replaying_the_floors_history_defaults_to_its_policy(tmp_path: Path) -> None:
    from aifactory.core.factory import FactorySettings
    from aifactory.live.history import save_settings

    url = f"sqlite:///{tmp_path / 'factory.db'}"
    filled_store(url)
    with Store(url) as store:
        save_settings(store, FactorySettings(policy="priority", placement="spread", half_life_s=9.0))
    result = CliRunner().invoke(app, ["run", "--trace", "eventlog", "--store", url, "--json"])
    assert result.exit_code == 0, result.output
    (only,) = json.loads(result.output)["variants"]
    factory = only["settings"]["factory"]
    assert (factory["policy"], factory["placement"], factory["half_life_s"]) == ("priority", "spread", 9.0)
