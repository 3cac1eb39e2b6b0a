"""`make demo`'s floor act runs end to end (jobs shortened) and every job succeeds."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from aifactory.cli.demo import DEMO_JOBS, run_floor_demo


def test_floor_demo_drains_a_dozen_jobs_from_two_projects(tmp_path: Path) -> None:
    out = io.StringIO()
    summary = run_floor_demo(Console(file=out, width=120), tmp_path / "home", speed=5.0)
    assert len(summary.jobs) == len(DEMO_JOBS) == 12
    assert summary.all_succeeded, summary.jobs
    assert {j.project for j in summary.jobs} == {"default", "vision"}
    assert {j.gpus for j in summary.jobs} == {1, 2, 4}
    # 4 virtual GPUs cannot hold every job at once: some had to wait.
    assert max(j.wait_s for j in summary.jobs) > 0.1
    assert all(j.runtime_s > 0 for j in summary.jobs)
    text = out.getvalue()
    assert "summary: 12 jobs" in text and "vision" in text
