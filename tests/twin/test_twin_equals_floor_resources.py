"""Twin = floor for everything the floor schedules by, not only GPUs: one workload on the live
FactoryService (real processes, real SQLite store) with CPU and memory per node and per job, GPU
fractions by memory, a department's hard limit, a time limit, a multi-node gang and a reclaim whose
victim checkpoints and resumes. Its history, exported as a trace file with its floor file, replays
on the twin under the floor's own settings: the same starts in the same order, each within the
launch overhead, and the same ends."""

from __future__ import annotations

import asyncio
import shutil
import sys
from pathlib import Path

import pytest

from aifactory.core.job import JobSpec
from aifactory.core.project import Department, Project
from aifactory.core.states import JobState
from aifactory.live import history
from aifactory.live.service import FactoryService
from aifactory.live.settings import LiveSettings
from aifactory.live.store import EventRow, Store
from aifactory.twin.executor import ExecutorSettings
from aifactory.twin.replay import Twin, TwinSettings
from aifactory.twin.scenarios import from_file

SLEEP = shutil.which("sleep")
GIB = 1024
TOLERANCE_S = 0.25  # launch overhead: a start decided on an exit the twin sees a little earlier
LAB_LIMIT = 5.0  # GPUs the lab department's projects may hold at once

# Runs `work` seconds in all over its attempts: on SIGTERM it saves what it has done and exits.
RESUMABLE = """
import os, signal, sys, time
from pathlib import Path
work, progress = float(sys.argv[1]), Path(sys.argv[2])
done = float(progress.read_text()) if progress.exists() else 0.0
t0 = time.time()
def stop(*_):
    progress.write_text(str(done + time.time() - t0))
    os._exit(143)
signal.signal(signal.SIGTERM, stop)
time.sleep(max(0.0, work - done))
"""


def sleep(seconds: float, project: str, **asks: object) -> JobSpec:
    return JobSpec(command=(str(SLEEP), str(seconds)), project=project, **asks)  # type: ignore[arg-type]


def first_wave() -> list[JobSpec]:
    """Submitted together while a gang of ops holds all 8 GPUs, so the queue is the same every run."""
    return [
        sleep(1.5, "ops", gpus=8, multi_node=True),  # the gang: 2 nodes x 4 GPUs
        *[sleep(0.8, "b", cpu_milli=6000) for _ in range(3)],  # one per 8-CPU node: the third waits
        *[sleep(0.8, "a", gpus=0.5, gpu_memory_mib=8 * GIB) for _ in range(2)],  # two halves of a 16 GiB GPU
        sleep(5, "a", time_limit_s=0.4),  # stopped at its time limit: failed
        *[sleep(0.8, "a", memory_mib=20 * GIB) for _ in range(3)],  # one per 32 GiB node: the third waits
    ]


def live_settings(home: Path) -> LiveSettings:
    return LiveSettings(
        home=home,
        gpus=4,
        nodes=2,
        gpu_memory_mib=16 * GIB,
        cpu_milli_per_node=8000,
        memory_mib_per_node=32 * GIB,
        policy="fairshare",
        kill_grace_s=0.5,
        preempt_grace_s=5.0,
        min_runtime_s=0.0,
    )


def run_live(settings: LiveSettings, progress: Path) -> list[int]:
    settings.home.mkdir(parents=True)
    with Store(settings.database_url) as store:
        store.save_departments([Department("infra", quota=8), Department("lab", quota=0, limit=LAB_LIMIT)])
        store.save_projects(
            [
                Project("ops", quota=8, department="infra"),
                Project("a", department="lab"),
                Project("b", department="lab"),
            ]
        )
    victim = JobSpec(command=(sys.executable, "-c", RESUMABLE, "2.0", str(progress)), project="a", gpus=4)
    owner = sleep(0.5, "ops", gpus=8, multi_node=True)

    async def main() -> list[int]:
        async with await FactoryService.open(settings) as svc:
            ids = [(await svc.submit(spec)).id for spec in first_wave()]
            assert svc.job(ids[0]).state is JobState.RUNNING, "submitting took longer than the gang runs"
            for job_id in ids:
                await svc.wait(job_id, 30)
            borrower = (await svc.submit(victim)).id  # lab borrows 4 of ops' idle GPUs
            await asyncio.sleep(0.6)
            ids += [borrower, (await svc.submit(owner)).id]  # ops wants all 8: the borrower is reclaimed
            for job_id in ids[-2:]:
                await svc.wait(job_id, 30)
            return ids

    return asyncio.run(asyncio.wait_for(main(), 90))


def starts(events: list[EventRow], index: dict[int, int], t0: float) -> list[tuple[int, float]]:
    """(trace index, seconds from t0) of every start, attempts included, in the log's order."""
    return [(index[e.job_id], e.at - t0) for e in events if e.new is JobState.RUNNING]


def most_held(intervals: list[tuple[float, float, float]]) -> float:
    """The most GPUs held at once, from (start, end, GPUs) intervals."""
    edges = sorted([(s, g) for s, _, g in intervals] + [(e, -g) for _, e, g in intervals])
    held = top = 0.0
    for _, g in edges:
        held += g
        top = max(top, held)
    return top


@pytest.mark.skipif(SLEEP is None, reason="no sleep binary")
def test_the_twin_replays_cpu_memory_fractions_departments_limits_gangs_and_a_reclaim(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIFACTORY_HOME", str(tmp_path / "home"))
    settings = live_settings(tmp_path / "home")
    ids = run_live(settings, tmp_path / "progress")
    trace = tmp_path / "floor.csv"
    with Store(settings.database_url) as store:
        rows = {r.id: r for r in store.list_jobs()}
        events = store.events()
        history.export(history.load(store), trace)
    t0 = rows[ids[0]].submitted_at
    index = {job_id: i for i, job_id in enumerate(ids)}

    # What the floor did, in the facts that only CPU, memory, fractions and departments explain.
    live = starts(events, index, t0)
    first: dict[int, float] = {}
    for i, at in live:
        first.setdefault(i, at)
    ended = {index[i]: r.finished_at - t0 for i, r in rows.items()}  # type: ignore[operator]
    assert first[3] >= min(ended[1], ended[2]) - 1e-6  # CPU: the third 6-CPU job waited for one to end
    assert first[9] >= min(ended[7], ended[8]) - 1e-6  # memory: the third 20 GiB job likewise
    halves = [rows[ids[i]].placement for i in (4, 5)]
    assert halves[0] is not None and halves[0].parts == halves[1].parts  # type: ignore[union-attr]
    assert rows[ids[6]].state is JobState.FAILED and rows[ids[6]].reason == "time limit"
    assert rows[ids[10]].attempts == 2 and rows[ids[10]].state is JobState.SUCCEEDED  # reclaimed, resumed
    assert all(r.state is JobState.SUCCEEDED for i, r in rows.items() if index[i] != 6)
    lab = [(first[i], ended[i], rows[ids[i]].spec.gpus) for i in range(1, 10)]
    assert most_held(lab) <= LAB_LIMIT, "\n".join(map(str, lab))

    # The twin, on the exported trace and floor file, under the floor's own core settings.
    scenario = from_file(trace)
    assert {n.cpu_milli for n in scenario.nodes} == {8000} and {d.name for d in scenario.departments} == {
        "infra",
        "lab",
    }
    assert scenario.settings == settings.core()  # the export carries the settings the floor scheduled with
    twin = Twin(scenario, TwinSettings(scenario.settings, ExecutorSettings(kill_delay_s=0.0, preempt_delay_s=0.0)))
    result = twin.run()
    rec = result.recorder
    assert rec.start_order == list(first)
    for i, at in first.items():
        assert rec.started[i] == pytest.approx(at, abs=TOLERANCE_S), f"job {i}"
        assert rec.ended[i] == pytest.approx(ended[i], abs=TOLERANCE_S), f"job {i}"
    assert [rec.final[i] for i in range(len(ids))] == [rows[job_id].state for job_id in ids]
    assert result.summary["preemptions"] == 1
