"""Twin = floor: one workload run by the live FactoryService (real `sleep` processes, real
SQLite store) and by the twin starts the same jobs in the same order at the same times."""

from __future__ import annotations

import asyncio
import random
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from aifactory.core.events import Hold, Update
from aifactory.core.factory import FactorySettings
from aifactory.core.job import JobSpec
from aifactory.core.project import Project
from aifactory.core.states import JobState
from aifactory.live import history
from aifactory.live.service import FactoryService
from aifactory.live.settings import LiveSettings
from aifactory.live.store import JobRow, Store
from aifactory.twin.replay import RunResult, TwinSettings, replay
from aifactory.twin.scenarios import from_file
from aifactory.twin.traces.format import Scenario

SLEEP = shutil.which("sleep")


BLOCKER_S = 1.5  # holds all 4 GPUs while the rest are submitted, so every run sees the same queue


def workload(seed: int = 7, n: int = 40) -> list[JobSpec]:
    """A 4-GPU blocker, then 40 sleeps of 0.1-0.3 s on 1-4 GPUs, two projects, random priorities."""
    rng = random.Random(seed)
    out = [JobSpec(command=(str(SLEEP), str(BLOCKER_S)), project="a", gpus=4, duration_s=BLOCKER_S)]
    for i in range(n):
        seconds = rng.choice((0.1, 0.2, 0.3))
        out.append(
            JobSpec(
                command=(str(SLEEP), str(seconds)),
                project="a" if i % 2 else "b",
                gpus=float(rng.choice((1, 1, 2, 2, 3, 4))),
                priority=rng.randrange(3),
                duration_s=seconds,
            )
        )
    return out


def run_live(home: Path, specs: list[JobSpec], policy: str) -> Path:
    settings = LiveSettings(home=home, gpus=4, nodes=1, policy=policy, kill_grace_s=0.5)
    home.mkdir(parents=True)
    with Store(settings.database_url) as store:
        store.save_projects([Project("a", quota=2.0), Project("b", quota=2.0)])

    async def main() -> None:
        async with await FactoryService.open(settings) as svc:
            ids = [(await svc.submit(spec)).id for spec in specs]
            assert svc.job(ids[0]).state is JobState.RUNNING, "submitting took longer than the blocker runs"
            for job_id in ids:
                row = await svc.wait(job_id, 30)
                assert row.state is JobState.SUCCEEDED, row.reason

    asyncio.run(asyncio.wait_for(main(), 60))
    return Path(settings.database_url.removeprefix("sqlite:///"))


def same_starts(result: RunResult, starts: list[tuple[int, float]], index: dict[int, int], t0: float) -> None:
    """The replay started the floor's jobs in the floor's order, each when the floor did (to 1 ms)."""
    assert result.recorder.start_order == [index[j] for j, _ in starts]
    for job_id, at in starts:
        assert result.recorder.started[index[job_id]] == pytest.approx(at - t0, abs=1e-3)


def floor_history(settings: LiveSettings) -> tuple[list[JobRow], list[tuple[int, float]], Scenario]:
    """The floor's jobs by id, its first starts in order, and its history as the twin reads it."""
    with Store(settings.database_url) as store:
        return sorted(store.list_jobs(), key=lambda r: r.id), live_starts(store), history.load(store)


def live_starts(store: Store) -> list[tuple[int, float]]:
    """(job id, time) of each first start, in the log's order."""
    seen: dict[int, float] = {}
    for ev in store.events():
        if ev.new is JobState.RUNNING and ev.job_id not in seen:
            seen[ev.job_id] = ev.at
    return list(seen.items())


@pytest.mark.skipif(SLEEP is None, reason="no sleep binary")
@pytest.mark.parametrize("policy", ["priority", "fairshare"])
def test_the_twin_starts_what_the_floor_started_when_it_did(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, policy: str
) -> None:
    monkeypatch.setenv("AIFACTORY_HOME", str(tmp_path / "home"))
    specs = workload()
    db = run_live(tmp_path / "home", specs, policy)
    settings = TwinSettings(FactorySettings(policy=policy, placement="pack", kill_grace_s=0.5))
    with Store(f"sqlite:///{db}") as store:
        rows = sorted(store.list_jobs(), key=lambda r: r.id)
        starts = live_starts(store)
        recorded = history.load(store)  # the floor's own history as a trace
    t0 = rows[0].submitted_at
    index = {row.id: i for i, row in enumerate(rows)}
    live_order = [index[job_id] for job_id, _ in starts]
    live_at = {index[job_id]: at - t0 for job_id, at in starts}
    assert len(live_order) == len(specs) == len(recorded.jobs) == 41

    # 1. Replaying the recorded run times: the same decisions at the same instants.
    exact = replay(recorded, settings)
    assert exact.recorder.start_order == live_order
    for i in live_order:
        assert exact.recorder.started[i] == pytest.approx(live_at[i], abs=1e-3)

    # 2. The nominal workload (sleep seconds, the live submit times). Under `priority` the queue
    #    order is fixed once the blocker holds the GPUs, so the order must match and each start
    #    be early by no more than the launch overheads before it. Fair share ranks projects by
    #    what they hold at each instant, so shorter nominal run times may rightly reorder it.
    if policy != "priority":
        return
    nominal = Scenario(
        "nominal",
        [
            type(j)(j.submit_time, replace(j.spec, duration_s=spec.duration_s))
            for j, spec in zip(recorded.jobs, specs, strict=True)
        ],
        recorded.nodes,
        recorded.projects,
    )
    twin = replay(nominal, settings)
    assert twin.recorder.start_order == live_order
    overheads = [job.spec.duration_s - spec.duration_s for job, spec in zip(recorded.jobs, specs, strict=True)]
    assert all(o >= 0 for o in overheads)  # a process never ends before its sleep
    for k, i in enumerate(live_order):
        drift = live_at[i] - twin.recorder.started[i]
        assert -1e-3 <= drift <= sum(overheads[j] for j in live_order[:k]) + 1e-3


@pytest.mark.skipif(SLEEP is None, reason="no sleep binary")
def test_twin_equals_floor_with_dependencies_and_an_array(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A chain of dependencies (one that can never be met) and an array capped at 2, run live and
    replayed from the floor's exported history: the same starts at the same times."""
    monkeypatch.setenv("AIFACTORY_HOME", str(tmp_path / "home"))
    home = tmp_path / "home"
    settings = LiveSettings(home=home, gpus=4, nodes=1, policy="fifo", kill_grace_s=0.5)
    home.mkdir(parents=True)
    with Store(settings.database_url) as store:
        store.save_projects([Project("a", quota=4.0)])
    sleep = (str(SLEEP),)

    async def main() -> None:
        async with await FactoryService.open(settings) as svc:
            blocker = await svc.submit(JobSpec((*sleep, "1.0"), project="a", gpus=4))
            first = await svc.submit(JobSpec((*sleep, "0.2"), project="a", gpus=1))
            ok = await svc.submit(JobSpec((*sleep, "0.2"), project="a", gpus=2, after=((first.id, "ok"),)))
            never = await svc.submit(JobSpec((*sleep, "0.1"), project="a", gpus=1, after=((first.id, "failed"),)))
            await svc.submit(JobSpec((*sleep, "0.1"), project="a", gpus=1, after=((ok.id, "any"), (blocker.id, "ok"))))
            elements = await svc.submit_array(
                JobSpec((*sleep, "0.2"), project="a", gpus=1), list(range(5)), 2, [{}] * 5
            )
            # Operators too: one job held for a while, another's GPUs changed while it waits.
            held = await svc.submit(JobSpec((*sleep, "0.1"), project="a", gpus=4))
            changed = await svc.submit(JobSpec((*sleep, "0.1"), project="a", gpus=4))
            await svc.act(Hold(held.id, True, "ops"))
            await svc.act(Update(changed.id, gpus=2, by="ops"))
            await asyncio.sleep(1.6)  # the blocker ends meanwhile; the held job waits
            await svc.act(Hold(held.id, False, "ops"))
            for row in [blocker, first, ok, never, *elements, held, changed]:
                await svc.wait(row.id, 30)
            assert svc.job(never.id).state is JobState.CANCELLED
            await asyncio.sleep(0.5)

    asyncio.run(asyncio.wait_for(main(), 60))
    rows, starts, recorded = floor_history(settings)
    kept = [r for r in rows if r.started_at is not None]
    index = {row.id: i for i, row in enumerate(kept)}
    t0 = kept[0].submitted_at
    assert len(recorded.jobs) == len(kept) == 11  # the cancelled one never ran: not in the trace
    assert [type(e).__name__ for _, e in recorded.job_events] == ["Hold", "Update", "Hold"]
    out, _ = history.export(recorded, tmp_path / "history.csv")  # and through the floor file
    assert from_file(out).job_events == recorded.job_events
    exact = replay(recorded, TwinSettings(FactorySettings(policy="fifo", placement="pack", kill_grace_s=0.5)))
    same_starts(exact, starts, index, t0)


@pytest.mark.skipif(SLEEP is None, reason="no sleep binary")
@pytest.mark.parametrize("budget", ["factory", "pool"])
def test_twin_equals_floor_under_a_power_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, budget: str) -> None:
    """The floor holds jobs for its power budget (the factory's, or its one pool's); its history
    replays under the settings it saved (budget included, also through the floor file) and starts
    the same jobs at the same times."""
    monkeypatch.setenv("AIFACTORY_HOME", str(tmp_path / "home"))
    home = tmp_path / "home"
    # 4 GPUs, 300 W each held, a 0.9 kW budget: three jobs at a time, whatever the GPUs say.
    given: dict[str, Any] = (
        {"power_budget_kw": 0.9} if budget == "factory" else {"pool_power_budgets": ("default=0.9",)}
    )
    settings = LiveSettings(home=home, gpus=4, nodes=1, policy="fifo", kill_grace_s=0.5, power_per_gpu_w=300, **given)
    home.mkdir(parents=True)
    with Store(settings.database_url) as store:
        store.save_projects([Project("a", quota=4.0)])

    async def main() -> None:
        async with await FactoryService.open(settings) as svc:
            rows = [await svc.submit(JobSpec((str(SLEEP), "0.4"), project="a", gpus=1)) for _ in range(5)]
            assert rows[3].pending_reason.startswith("power budget:")  # as the submit answered
            for row in rows:
                await svc.wait(row.id, 30)
            await asyncio.sleep(0.3)

    asyncio.run(asyncio.wait_for(main(), 60))
    rows, starts, recorded = floor_history(settings)
    assert recorded.settings is not None
    saved = recorded.settings.power_budget_w, tuple(map(tuple, recorded.settings.pool_power_budgets_w))
    assert saved == ((900, ()) if budget == "factory" else (None, (("default", 900),)))
    out, _ = history.export(recorded, tmp_path / "history.csv")
    assert from_file(out).settings == recorded.settings  # the budget travels in the floor file
    index = {row.id: i for i, row in enumerate(rows)}
    t0 = rows[0].submitted_at
    exact = replay(recorded, TwinSettings(recorded.settings))
    same_starts(exact, starts, index, t0)
    # Without the budget the twin would have started the fourth job at once: the rule is what makes them agree.
    free = replay(recorded, TwinSettings(replace(recorded.settings, power_budget_w=None, pool_power_budgets_w=())))
    assert free.recorder.started[3] < exact.recorder.started[3]
