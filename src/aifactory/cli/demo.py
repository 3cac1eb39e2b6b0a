"""`make demo`: the main job.

By default it runs the production line's whole flywheel on an embedded factory
(`aifactory.cli.line_demo`: data -> train -> gate -> serve -> feedback -> retrain ->
promote). `--floor` runs the floor's own act instead: an embedded factory with 4
virtual GPUs drains a queue of real jobs.

In the floor act, two projects (`default` and `vision`) submit a dozen short `python -c` sleeps
asking for 1, 2 or 4 GPUs; a live table shows the queue draining and a summary
gives each job's wait and runtime. `run_floor_demo` is the first act other demos
can call; `main()` runs it in a temporary home.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from aifactory.core.job import JobSpec
from aifactory.core.project import Project
from aifactory.core.states import JobState
from aifactory.live.service import FactoryService
from aifactory.live.settings import LiveSettings

DEMO_GPUS = 4
# (project, GPUs, seconds of sleep): a mix that makes 4-GPU jobs wait for the floor to clear.
DEMO_JOBS: tuple[tuple[str, int, float], ...] = (
    ("default", 1, 2.0),
    ("vision", 2, 1.5),
    ("default", 1, 1.0),
    ("vision", 4, 2.0),
    ("default", 2, 1.0),
    ("vision", 1, 3.0),
    ("default", 1, 1.5),
    ("vision", 2, 2.0),
    ("default", 4, 1.0),
    ("vision", 1, 1.0),
    ("default", 2, 2.5),
    ("vision", 1, 1.5),
)
STYLE = {"queued": "yellow", "running": "cyan", "succeeded": "green", "failed": "red", "cancelled": "dim"}


@dataclass(frozen=True, slots=True)
class DemoJob:
    id: int
    project: str
    gpus: int
    state: str
    wait_s: float
    runtime_s: float


@dataclass(frozen=True, slots=True)
class FloorSummary:
    jobs: list[DemoJob]
    makespan_s: float  # first submit to last finish, wall seconds

    @property
    def all_succeeded(self) -> bool:
        return all(j.state == JobState.SUCCEEDED for j in self.jobs)


def _queue_table(rows: list[Any], reasons: dict[int, str], elapsed: float) -> Table:
    table = Table(title=f"the floor at t={elapsed:4.1f}s ({DEMO_GPUS} virtual GPUs)", title_justify="left")
    for col in ("job", "project", "gpus", "state", "where", "why waiting"):
        table.add_column(col)
    for r in sorted(rows, key=lambda r: r.id):
        state = str(r.state)
        where = r.placement.describe() if r.placement is not None else "-"
        cells = (f"{r.spec.gpus:g}", f"[{STYLE.get(state, '')}]{state}[/]", where, reasons.get(r.id, ""))
        table.add_row(str(r.id), r.project, *cells)
    return table


def _summary_table(summary: FloorSummary) -> Table:
    table = Table(title=f"summary: {len(summary.jobs)} jobs in {summary.makespan_s:.1f}s", title_justify="left")
    for col in ("job", "project", "gpus", "state", "wait", "runtime"):
        table.add_column(col, justify="right" if col in ("gpus", "wait", "runtime") else "left")
    for j in summary.jobs:
        table.add_row(str(j.id), j.project, str(j.gpus), j.state, f"{j.wait_s:.2f}s", f"{j.runtime_s:.2f}s")
    return table


async def _drain(service: FactoryService, console: Console, ids: list[int], t0: float) -> list[Any]:
    """Refresh the live table until every demo job has ended; return their final rows."""
    with Live(console=console, refresh_per_second=8, transient=False) as live:
        while True:
            rows = [service.job(i) for i in ids]
            reasons = {r.id: service.pending_reason(r.id) for r in rows if str(r.state) == JobState.QUEUED}
            live.update(_queue_table(rows, reasons, time.monotonic() - t0))
            if all(JobState(str(r.state)).terminal for r in rows):
                return rows
            await asyncio.sleep(0.15)


async def _run(console: Console, home: Path, speed: float) -> FloorSummary:
    service = await FactoryService.open(LiveSettings(home=home, gpus=DEMO_GPUS, nodes=1, isolation="none"))
    try:
        vision = Project("vision", quota=2.0)
        service.store.save_projects([vision])  # stored first, then given to the running core
        service.factory.set_project(vision)
        t0 = time.monotonic()
        ids = []
        for project, gpus, seconds in DEMO_JOBS:
            code = f"import time; time.sleep({seconds / speed:.3f}); print('done after {seconds / speed:.3f}s')"
            spec = JobSpec(command=(sys.executable, "-c", code), project=project, user="demo", gpus=gpus)
            ids.append((await service.submit(spec)).id)
        rows = await _drain(service, console, ids, t0)
    finally:
        await service.close()
    jobs = [
        DemoJob(
            id=r.id,
            project=r.project,
            gpus=int(r.spec.gpus),
            state=str(r.state),
            wait_s=(r.started_at or r.finished_at) - r.submitted_at,
            runtime_s=(r.finished_at - r.started_at) if r.started_at is not None else 0.0,
        )
        for r in rows
    ]
    first = min(r.submitted_at for r in rows)
    return FloorSummary(jobs=jobs, makespan_s=max(r.finished_at for r in rows) - first)


def run_floor_demo(console: Console, home: Path, speed: float = 1.0) -> FloorSummary:
    """Run the floor demo in `home` (a fresh data directory); `speed` > 1 shortens every job."""
    summary = asyncio.run(_run(console, home, speed))
    console.print()
    console.print(_summary_table(summary))
    return summary


def floor_main() -> int:
    console = Console()
    console.print("[bold]aifactory demo: the floor[/] - an embedded factory with 4 virtual GPUs, two projects")
    with tempfile.TemporaryDirectory(prefix="aifactory-demo-") as tmp:
        summary = run_floor_demo(console, Path(tmp) / "home")
    if not summary.all_succeeded:
        console.print("[red]some demo jobs did not succeed[/]")
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--floor"]:
        return floor_main()
    from aifactory.cli.line_demo import main as flywheel_main

    return flywheel_main(args)


if __name__ == "__main__":
    sys.exit(main())
