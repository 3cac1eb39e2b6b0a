"""Run a sweep on the factory floor: each size is a job of the live FactoryService.

The jobs go through the real scheduler, store and local executor, so they queue, hold (virtual) GPUs,
leave logs and history like any other job. By default the runner opens a factory of its own under the
sweep's work directory with `gpus` virtual GPUs (one job per GPU, so `gpus` runs at a time); pass
`settings` to use another home or database, one that no running server holds open.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from aifactory.plan.sweep import Done, SweepFailed, SweepJob, SweepResult, job_command, read_result


@dataclass(frozen=True, slots=True)
class FloorRunner:
    """Submits every size with `gpus_per_job` GPUs, waits for all, reads their result files."""

    gpus: int = 1
    gpus_per_job: float = 1.0
    project: str = "default"
    user: str = "plan-sweep"
    timeout_s: float = 1800.0
    home: Path | None = None  # None: <workdir>/factory

    def run(self, jobs: Sequence[SweepJob], workdir: Path, done: Done | None = None) -> list[SweepResult]:
        workdir.mkdir(parents=True, exist_ok=True)
        return asyncio.run(self._run(jobs, workdir.resolve(), done))

    async def _run(self, jobs: Sequence[SweepJob], workdir: Path, done: Done | None) -> list[SweepResult]:
        from aifactory.core.job import JobSpec
        from aifactory.core.states import JobState
        from aifactory.live.service import FactoryService
        from aifactory.live.settings import LiveSettings

        settings = LiveSettings(home=self.home or workdir / "factory", gpus=self.gpus, isolation="none")
        outs = {job.name: workdir / f"{job.name}.json" for job in jobs}
        async with await FactoryService.open(settings) as svc:
            rows = []
            for job in jobs:
                spec = JobSpec(
                    command=job_command(job, outs[job.name]),
                    project=self.project,
                    user=self.user,
                    gpus=self.gpus_per_job,
                    name=f"sweep-{job.name}",
                    workdir=str(workdir),
                )
                rows.append(await svc.submit(spec))
            results = []
            for job, row in zip(jobs, rows, strict=True):
                ended = await svc.wait(row.id, self.timeout_s)
                if ended.state is not JobState.SUCCEEDED:
                    raise SweepFailed(f"sweep job {row.id} ({job.name}) ended {ended.state.value}: {ended.reason}; "
                                      f"log {ended.log_path}")  # fmt: skip
                results.append(read_result(job, outs[job.name]))
                if done is not None:
                    done(results[-1])
        return results
