"""Checkpoint reports through a file: the job touches it, the service tells the core, reclaim prefers it."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import pytest

from aifactory.checkpoint import report
from aifactory.core import JobSpec, JobState, Project
from aifactory.live.checkpoints import CheckpointWatch, checkpoint_path
from aifactory.live.service import FactoryService
from aifactory.live.settings import LiveSettings
from aifactory.live.store import Store

pytestmark = pytest.mark.usefixtures("no_leftovers")


def test_report_outside_the_factory_does_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("AIFACTORY_CHECKPOINT_FILE", raising=False)
    assert report() is False
    target = tmp_path / "ckpt"
    monkeypatch.setenv("AIFACTORY_CHECKPOINT_FILE", str(target))
    assert report() is True and target.exists()


def test_watch_sees_new_mtimes_only(tmp_path: Path) -> None:
    watch = CheckpointWatch(tmp_path)
    for job_id in (1, 2, 3):  # the jobs' scratch directories, as launching makes them
        checkpoint_path(tmp_path, job_id).parent.mkdir()
    old = checkpoint_path(tmp_path, 1)
    old.write_text("from an earlier attempt\n")
    watch.baseline(1)  # launched: the earlier attempt's file is no report
    watch.baseline(2)  # no file yet
    assert watch.poll([1, 2]) == []
    os.utime(old, ns=(time.time_ns(), time.time_ns() + 1_000_000))
    report(str(checkpoint_path(tmp_path, 2)))
    assert watch.poll([1, 2]) == [1, 2]
    assert watch.poll([1, 2]) == []  # each report counts once
    report(str(checkpoint_path(tmp_path, 3)))
    assert watch.poll([3]) == []  # first seen after a restart: its present file is the baseline


def test_a_job_that_checkpointed_is_the_reclaim_victim(tmp_path: Path) -> None:
    """Two jobs of `a` borrow `b`'s GPU; the OLDER one reports a checkpoint, so it (not the younger) is preempted."""
    settings = LiveSettings(
        home=tmp_path / "home", gpus=2, min_runtime_s=0, preempt_grace_s=2, kill_grace_s=0.5, checkpoint_poll_s=0.05
    )
    gate, ckpt_gate = tmp_path / "go", tmp_path / "checkpoint-now"
    wait = f"while not os.path.exists({str(gate)!r}): time.sleep(0.02)"
    plain = f"import os, time\nprint('start', flush=True)\n{wait}"
    saver = (
        "import os, time\nfrom aifactory.checkpoint import report\nprint('start', flush=True)\n"
        f"while not os.path.exists({str(ckpt_gate)!r}): time.sleep(0.02)\n"
        "print('reported', report(), flush=True)\n" + wait
    )
    with Store(settings.database_url) as store:
        store.save_projects([Project("a", quota=1), Project("b", quota=1)])

    def job(project: str, code: str) -> JobSpec:
        return JobSpec(command=(sys.executable, "-c", code), project=project)

    async def started(svc: FactoryService, job_id: int) -> None:
        path = svc.log_path(job_id)
        while "start" not in (path.read_text() if path.exists() else ""):
            await asyncio.sleep(0.02)

    async def main() -> None:
        async with await FactoryService.open(settings) as svc:
            older = await svc.submit(job("a", saver))
            await started(svc, older.id)
            younger = await svc.submit(job("a", plain))  # without checkpoints the younger one loses least
            await started(svc, younger.id)
            ckpt_gate.touch()
            while svc.factory.jobs[older.id].checkpoint_at is None:
                await asyncio.sleep(0.02)
            assert "reported True" in svc.log_path(older.id).read_text()
            assert svc.factory.jobs[younger.id].checkpoint_at is None
            b = await svc.submit(job("b", plain))
            assert svc.job(older.id).state in (JobState.PREEMPTED, JobState.QUEUED)
            assert svc.job(younger.id).state is JobState.RUNNING
            while svc.job(b.id).state is not JobState.RUNNING:
                await asyncio.sleep(0.02)
            gate.touch()
            rows = [await svc.wait(j, 20) for j in (older.id, younger.id, b.id)]
            assert [r.state for r in rows] == [JobState.SUCCEEDED] * 3
            assert (rows[0].attempts, rows[1].attempts) == (2, 1)

    asyncio.run(asyncio.wait_for(main(), 60))
