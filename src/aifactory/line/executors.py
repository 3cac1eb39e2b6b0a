"""Where a pipeline step runs. One small interface, `StepExecutor.run(StepJob) -> StepOutcome`:

- `FloorExecutor`: a job on the embedded floor (`aifactory.live.service.FactoryService`),
  queued, placed on its GPU share, charged to its project, in its priority class;
- `ClientExecutor`: a job on a running factory server (`aifactory up`), over its HTTP API;
- `LocalExecutor`: a plain subprocess, for a machine without a factory.

Every executor runs `job.command` with `job.env` added and `job.workdir` as working
directory, and leaves the step's stdout and stderr where `StepOutcome.log_path` says.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

POLL_S = 0.2  # how often the client executor asks the server about a running job
TERMINAL = ("succeeded", "failed", "cancelled")


@dataclass(frozen=True)
class StepJob:
    step: str
    command: tuple[str, ...]
    env: dict[str, str]
    gpus: float
    project: str
    priority_class: str
    workdir: Path  # the step's folder: its log, metrics and outputs
    cwd: Path | None = None  # where the command runs (default: workdir); a user's step runs in its pipeline's folder
    time_limit_s: float | None = None
    # Called with the job id once the floor has accepted the job (progress shows it while it runs).
    on_submitted: Callable[[int], None] | None = None

    @property
    def run_in(self) -> Path:
        return self.cwd or self.workdir

    def submitted(self, job_id: int) -> None:
        if self.on_submitted is not None:
            self.on_submitted(job_id)


@dataclass(frozen=True)
class StepOutcome:
    exit_code: int | None
    log_path: Path | None
    job_id: int | None = None
    state: str = ""


class StepExecutor(Protocol):
    async def run(self, job: StepJob) -> StepOutcome: ...


class LocalExecutor:
    """Runs a step as a plain subprocess (no factory): stdout and stderr go to `workdir/log.txt`."""

    async def run(self, job: StepJob) -> StepOutcome:
        log_path = job.workdir / "log.txt"
        with open(log_path, "wb") as log:
            proc = await asyncio.create_subprocess_exec(
                *job.command,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                env={**os.environ, **job.env},
                cwd=job.run_in,
            )
            try:
                code = await asyncio.wait_for(proc.wait(), job.time_limit_s)
            except (TimeoutError, asyncio.CancelledError) as exc:
                proc.kill()
                await proc.wait()
                if isinstance(exc, asyncio.CancelledError):
                    raise
                return StepOutcome(None, log_path, state="time limit")
        return StepOutcome(code, log_path, state="succeeded" if code == 0 else f"exit code {code}")


class FactoryLike(Protocol):
    """The part of `aifactory.live.service.FactoryService` a pipeline needs."""

    async def submit(self, spec: Any) -> Any: ...
    async def wait(self, job_id: int, timeout: float | None = None) -> Any: ...
    async def cancel(self, job_id: int) -> Any: ...
    def log_path(self, job_id: int) -> Path: ...


class FloorExecutor:
    """Runs a step as a job on the floor: queued, placed on its GPU share, charged to its project."""

    def __init__(self, service: FactoryLike, user: str = "line") -> None:
        self.service = service
        self.user = user

    async def run(self, job: StepJob) -> StepOutcome:
        from aifactory.core.job import JobSpec

        spec = JobSpec(
            command=job.command,
            project=job.project,
            user=self.user,
            gpus=job.gpus,
            priority_class=job.priority_class,
            time_limit_s=job.time_limit_s,
            name=f"line:{job.step}",
            workdir=str(job.run_in),
            env=dict(job.env),
        )
        row = await self.service.submit(spec)
        job.submitted(row.id)
        try:
            row = await self.service.wait(row.id)
        except asyncio.CancelledError:  # the pipeline was interrupted: its job must not run on alone
            await self.service.cancel(row.id)
            raise
        state = f"{row.state.value} ({row.reason})" if row.reason else row.state.value
        return StepOutcome(row.exit_code, self.service.log_path(row.id), row.id, state)


class ClientExecutor:
    """Runs a step as a job on a running factory server, through `aifactory.live.client.Client`."""

    def __init__(self, client: Any) -> None:
        self.client = client

    async def run(self, job: StepJob) -> StepOutcome:
        body: dict[str, Any] = {
            "command": list(job.command),
            "project": job.project,
            "gpus": job.gpus,
            "name": f"line:{job.step}",
            "workdir": str(job.run_in),
            "env": dict(job.env),
        }
        if job.time_limit_s is not None:
            body["time_limit"] = job.time_limit_s
        out = await asyncio.to_thread(self.client.submit, body)
        job.submitted(out.id)
        try:
            while out.state not in TERMINAL:
                await asyncio.sleep(POLL_S)
                out = await asyncio.to_thread(self.client.job, out.id)
        except asyncio.CancelledError:
            await asyncio.to_thread(self.client.cancel, out.id)
            raise
        log_path = job.workdir / "log.txt"
        log_path.write_text(await asyncio.to_thread(self.client.logs, out.id))
        state = f"{out.state} ({out.reason})" if out.reason else out.state
        return StepOutcome(out.exit_code, log_path, out.id, state)
