"""Accounting against a hand-checked period: allocated GPU-hours from the event log cut to the
period, busy GPU-hours and energy from the GPUs' stored history, cost at the model's price."""

from __future__ import annotations

from pathlib import Path

import pytest

from aifactory.core.actions import StateChanged
from aifactory.core.cluster import NodeSpec
from aifactory.core.errors import SpecError
from aifactory.core.job import Job, JobSpec, Placement
from aifactory.core.project import Department, Project
from aifactory.core.states import JobState
from aifactory.live.store import Store
from aifactory.live.telemetry import GpuSample
from aifactory.live.usage import report

Q, R, P, S = JobState.QUEUED, JobState.RUNNING, JobState.PREEMPTED, JobState.SUCCEEDED
H = 3600.0


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store(f"sqlite:///{tmp_path / 'f.db'}").open()
    store.save_nodes([NodeSpec("a", 8, "H100"), NodeSpec("b", 8, "T4")])
    store.save_departments([Department("research")])
    store.save_projects([Project("vision", department="research"), Project("nlp")])
    # Job 1: vision/alice, 2 GPUs on a (H100), runs 0-2 h, preempted at 2 h, back 3-4 h.
    # Job 2: nlp/bob, 4 GPUs on b (T4), runs 1 h - still running.
    # Job 3: vision/bob, 1 GPU on a, ran before the period (-3 h to -1 h).
    specs = [
        JobSpec(("x",), project="vision", user="alice", gpus=2),
        JobSpec(("x",), project="nlp", user="bob", gpus=4),
        JobSpec(("x",), project="vision", user="bob", gpus=1),
    ]
    ids = [store.create_job(s, at) for s, at in zip(specs, (0.0, 0.5 * H, -3 * H), strict=True)]
    moves = [
        (ids[0], Q, R, 0.0),
        (ids[1], Q, R, 1 * H),
        (ids[0], R, P, 2 * H),
        (ids[0], P, Q, 2 * H + 60),
        (ids[0], Q, R, 3 * H),
        (ids[0], R, S, 4 * H),
        (ids[2], Q, R, -3 * H),
        (ids[2], R, S, -1 * H),
    ]
    store.apply([StateChanged(i, o, n, at) for i, o, n, at in moves], {})
    placements = {ids[0]: Placement((("a", (0, 1)),)), ids[1]: Placement((("b", (0, 1, 2, 3)),))}
    placements[ids[2]] = Placement((("a", (4,)),))
    finished = {ids[0]: 4 * H, ids[1]: None, ids[2]: -1 * H}
    jobs = {}
    for i, spec in zip(ids, specs, strict=True):
        job = Job(id=i, spec=spec, submitted_at=0.0, queued_at=0.0, placement=placements[i], started_at=0.0)
        job.state, job.finished_at = (S if finished[i] is not None else R), finished[i]
        jobs[i] = job
    store.apply([], jobs)
    # The history: job 1's two GPUs at 50 % and 300 W over its first hour; job 2's at 100 %, 70 W, 1 h.
    samples = [
        GpuSample(0.0 + k * 60, "a", g, 60, 50.0, 1000, 300.0, 60, ids[0], "vision") for k in range(60) for g in (0, 1)
    ]
    samples += [
        GpuSample(H + k * 60, "b", g, 60, 100.0, 1000, 70.0, 50, ids[1], "nlp") for k in range(60) for g in range(4)
    ]
    samples += [GpuSample(-2 * H, "a", 4, 60, 100.0, 1000, 300.0, 60, ids[2], "vision")]  # before the period
    store.add_gpu_samples(samples)
    return store


def test_by_project_with_prices(store: Store) -> None:
    rows = {r.key: r for r in report(store, 0.0, 5 * H, "project", {"H100": 2.5, "T4": 0.5})}
    vision, nlp = rows["vision"], rows["nlp"]
    # vision: job 1 held 2 GPUs for 2 h + ~1 min (preempted still holds) + 1 h; job 3 is outside.
    held = 2 * (2 * H + 60 + H) / H
    assert vision.jobs == 1 and vision.gpu_hours == pytest.approx(held)
    assert vision.busy_gpu_hours == pytest.approx(2 * 0.5 * 1) and vision.energy_kwh == pytest.approx(2 * 0.3 * 1)
    assert vision.cost == pytest.approx(held * 2.5)
    # nlp: 4 GPUs from 1 h to the period's end at 5 h (still running).
    assert nlp.gpu_hours == pytest.approx(16) and nlp.busy_gpu_hours == pytest.approx(4)
    assert nlp.energy_kwh == pytest.approx(4 * 0.07) and nlp.cost == pytest.approx(16 * 0.5)
    assert nlp.busy_ratio == pytest.approx(0.25)
    assert list(rows) == ["nlp", "vision"]  # largest first


def test_by_user_and_department_and_a_tenants_view(store: Store) -> None:
    users = {r.key: r.gpu_hours for r in report(store, -4 * H, 5 * H, "user")}
    assert users["bob"] == pytest.approx(4 * 4 + 1 * 2)  # job 2: 4 GPUs from 1 h to 5 h; job 3: 1 GPU for 2 h
    depts = {r.key: r.jobs for r in report(store, -4 * H, 5 * H, "department")}
    assert depts == {"research": 2, "-": 1}
    mine = report(store, 0.0, 5 * H, "project", projects=frozenset({"nlp"}))
    assert [r.key for r in mine] == ["nlp"]
    part = {r.key: r.gpu_hours for r in report(store, 0.5 * H, 1.5 * H, "project")}
    assert part == pytest.approx({"vision": 2 * 1.0, "nlp": 4 * 0.5})  # cut to the period


def test_bad_periods_and_groups_name_the_field(store: Store) -> None:
    with pytest.raises(SpecError, match="by"):
        report(store, 0, 1, "team")
    with pytest.raises(SpecError, match="since"):
        report(store, 5, 1)
