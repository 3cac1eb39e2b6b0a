"""`aifactory up --power-budget-kw`: the live floor obeys the core's power budget, and `show` says why a job waits."""

from __future__ import annotations

import subprocess
from pathlib import Path

from aifactory.live.api.launch import ServerProcess

from .test_cli import PY, cli, ok, refused, wait_state

SLEEP = [PY, "-c", "import time; time.sleep(60)"]


def test_a_job_waits_for_the_power_budget(tmp_path: Path) -> None:
    args = ("--gpus", "4", "--power-budget-kw", "0.9", "--power-per-gpu-w", "300")  # 3 GPUs' worth of power
    with ServerProcess(tmp_path / "home", *args) as srv:
        ids = [ok(cli(srv, "submit", "-q", "--gpus", "1", "--", *SLEEP)).strip() for _ in range(4)]
        for job_id in ids[:3]:
            wait_state(srv, int(job_id), {"running"})
        wait_state(srv, int(ids[3]), {"queued"})
        shown = ok(cli(srv, "show", ids[3]))
        assert "power budget" in shown and "1.2 kW of 0.9 kW" in shown, shown
        ok(cli(srv, "cancel", ids[0]))
        wait_state(srv, int(ids[3]), {"running"})  # power freed: it starts
        for job_id in ids[1:]:
            cli(srv, "cancel", job_id)


def test_a_bad_budget_is_refused_before_anything_starts(tmp_path: Path) -> None:
    home = tmp_path / "home"
    bad_options = [["--power-budget-kw", bad] for bad in ("-5", "nan", "lots")]
    bad_options += [["--pool-power-budget", bad] for bad in ("a", "a=-1", "=3")]
    bad_options += [["--gpus", "1", "--pool-power-budget", "gpu-a=5"]]  # no such pool: it would limit nothing
    for options in bad_options:
        done = subprocess.run(
            [PY, "-c", "from aifactory.cli import main; main()", "up", "--home", str(home), *options],
            capture_output=True,
            text=True,
            timeout=60,
        )
        refused(done, "power")
    assert not (home / "server.json").exists()
