"""Preemption on the live floor: fair share reclaims a borrowed GPU from a real process."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from aifactory.core import JobSpec, JobState, Project
from aifactory.live.service import FactoryService
from aifactory.live.settings import LiveSettings
from aifactory.live.store import Store

pytestmark = pytest.mark.usefixtures("no_leftovers")


class Clock:
    """Wall time plus an offset the test can jump (the core never preempts a job under a minute old)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        import time

        return time.time() + self.offset


def test_owner_reclaims_a_borrowed_gpu_and_the_victim_runs_again(tmp_path: Path) -> None:
    settings = LiveSettings(home=tmp_path / "home", gpus=2, policy="fairshare", kill_grace_s=0.5)
    gate = tmp_path / "gate"
    hold = f"import os, time\nprint('start', flush=True)\nwhile not os.path.exists({str(gate)!r}): time.sleep(0.02)"
    with Store(settings.database_url) as store:
        store.save_projects([Project("a", quota=1), Project("b", quota=1)])
    clock = Clock()

    def job(project: str) -> JobSpec:
        return JobSpec(command=(sys.executable, "-c", hold), project=project)

    async def main() -> None:
        async with await FactoryService.open(settings, clock=clock) as svc:
            a1, a2 = await svc.submit(job("a")), await svc.submit(job("a"))  # a borrows b's idle GPU
            assert (a1.state, a2.state) == (JobState.RUNNING, JobState.RUNNING)
            for row in (a1, a2):
                while "start" not in (svc.log_path(row.id).read_text() if svc.log_path(row.id).exists() else ""):
                    await asyncio.sleep(0.02)
            clock.offset = 3600.0  # both are old enough to be preempted
            b1 = await svc.submit(job("b"))
            victim = next(r for r in (svc.job(a1.id), svc.job(a2.id)) if r.state is not JobState.RUNNING)
            assert victim.state in (JobState.PREEMPTED, JobState.QUEUED)
            while svc.job(b1.id).state is not JobState.RUNNING:  # the victim's SIGTERM, then b's start
                await asyncio.sleep(0.02)
            assert svc.job(victim.id).state is JobState.QUEUED
            assert [p.in_use for p in svc.projects()] == [1.0, 1.0]
            gate.touch()
            rows = [await svc.wait(j, 20) for j in (a1.id, a2.id, b1.id)]
            assert all(r.state is JobState.SUCCEEDED for r in rows)
            again = svc.job(victim.id)
            assert again.attempts == 2
            assert [e.new for e in svc.history(victim.id)] == [
                JobState.QUEUED,
                JobState.RUNNING,
                JobState.PREEMPTED,
                JobState.QUEUED,
                JobState.RUNNING,
                JobState.SUCCEEDED,
            ]
            assert svc.log_path(victim.id).read_text().count("start") == 2  # one log, both attempts

    asyncio.run(asyncio.wait_for(main(), 60))
