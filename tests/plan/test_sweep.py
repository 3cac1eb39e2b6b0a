"""The scaling sweep: real training subprocesses, locally and as jobs of the live factory, then the fit."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aifactory.cli import app
from aifactory.core.errors import SpecError, UnknownName
from aifactory.plan.charlm import CharLMConfig
from aifactory.plan.fit import read_runs_csv
from aifactory.plan.sweep import LocalRunner, SweepJob, SweepResult, analyse, approx_params, get_runner, sweep_jobs

TINY = CharLMConfig(seq_len=32, eval_windows=64)


def tiny_jobs() -> list[SweepJob]:
    """Four sizes of 40 to 75 steps each: about a second of training per run."""
    return sweep_jobs((16, 24, 32, 40), n_layer=1, tokens_per_param=1.0, base=TINY)


def test_job_sizes_grow_in_params_and_compute() -> None:
    jobs = sweep_jobs()
    params = [approx_params(j.config.d_model, j.config.n_layer) for j in jobs]
    compute = [6 * p * j.config.tokens for p, j in zip(params, jobs, strict=True)]
    assert params == sorted(params) and len(jobs) >= 5
    assert compute[-1] / compute[0] > 10**1.5


def test_plan_sweep_trains_real_models_locally_and_fits_them(home: Path, tmp_path: Path) -> None:
    """`aifactory plan sweep` end to end: four local training processes, the fit, the CSV and the plot."""
    args = ["plan", "sweep", "--widths", "16,24,32,40", "--tokens-per-param", "1", "--out", str(tmp_path), "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    progress = result.stderr.splitlines()  # one line per finished run, on stderr: stdout stays JSON
    assert progress[0].startswith("sweep: 4 runs") and [line[:5] for line in progress[1:]] == [
        "[1/4]",
        "[2/4]",
        "[3/4]",
        "[4/4]",
    ]
    runs = data["runs"]
    assert [r["name"] for r in runs] == ["d16-l2", "d24-l2", "d32-l2", "d40-l2"]
    for r, d in zip(runs, (16, 24, 32, 40), strict=True):
        assert r["params"] == approx_params(d, 2)  # the planner's count is the model's
        assert r["compute"] == pytest.approx(6 * r["params"] * r["tokens"])
        assert 0 < r["val_loss"] < math.log(103)  # better than a uniform guess over the characters
    assert runs[0]["val_loss"] > runs[-1]["val_loss"]  # bigger models, lower loss
    record = json.loads((tmp_path / "runs" / "d16-l2.json").read_text())
    assert record["config"]["batch"] == 4 and record["val_loss"] == runs[0]["val_loss"]
    assert data["sizes"] == 4 and 0 < data["fit_exponent"] < 3 and data["holdout_error_pct"] is None
    compute, loss = read_runs_csv(tmp_path / "runs.csv")
    assert compute == pytest.approx([r["compute"] for r in runs], rel=1e-5) and len(loss) == 4
    assert (tmp_path / "fit.png").read_bytes()[:4] == b"\x89PNG"


def test_analyse_holds_out_the_largest_run() -> None:
    results = [
        SweepResult(f"r{i}", 1, 1, c, 1.5 + 9 * c**-0.1, 0.0) for i, c in enumerate((1e9, 1e10, 1e11, 1e12, 1e13))
    ]
    outcome = analyse(results[::-1])
    assert [r.compute for r in outcome.results] == [1e9, 1e10, 1e11, 1e12, 1e13]
    assert outcome.fit.r2 > 0.9999 and outcome.compute_decades == pytest.approx(4)
    assert outcome.holdout_error_pct == pytest.approx(0, abs=0.01)


def test_floor_sweep_runs_each_size_as_a_factory_job(home: Path, tmp_path: Path) -> None:
    from aifactory.live.store import Store
    from aifactory.live.sweep_runner import FloorRunner

    jobs = tiny_jobs()[:1]
    told: list[SweepResult] = []
    results = FloorRunner(gpus=2).run(jobs, tmp_path / "runs", told.append)
    assert [r.name for r in results] == [j.name for j in jobs] and told == results
    store = Store(f"sqlite:///{tmp_path / 'runs' / 'factory' / 'factory.db'}").open()
    try:
        rows = store.list_jobs()
        assert [r.spec.name for r in rows] == ["sweep-d16-l1"]
        assert all(r.placement is not None and r.spec.command[1:3] == ("-m", "aifactory.plan.charlm") for r in rows)
        assert all(r.state.value == "succeeded" and r.exit_code == 0 for r in rows)
    finally:
        store.close()


def test_a_failing_run_is_reported(home: Path, tmp_path: Path) -> None:
    from aifactory.plan.sweep import SweepFailed

    broken = [SweepJob("bad", replace(TINY, d_model=8, n_head=1, tokens=10))]
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "bad.json").mkdir()  # the run cannot write its result there: refused before training
    with pytest.raises(SweepFailed, match=r"bad exited 2: error: out: .*bad.json is a directory"):
        LocalRunner().run(broken, tmp_path / "runs")


def test_charlm_refuses_a_bad_config_with_exit_2(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "aifactory.plan.charlm", "--out", str(tmp_path / "r.json")]
    cases = [('{"d_model": -4}', "d_model"), ('{"width": 4}', "width"), ("{nope", "JSON"), ('{"lr": "x"}', "lr")]
    for config, word in cases:
        proc = subprocess.run([*cmd, "--config", config], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2 and word in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "r.json").exists()


def test_bad_sweep_input() -> None:
    with pytest.raises(SpecError, match="widths"):
        sweep_jobs((16, 32, 64))
    with pytest.raises(SpecError, match="widths"):
        sweep_jobs((16, 20, 32, 64))
    with pytest.raises(UnknownName, match="did you mean 'floor'"):
        get_runner("flor")
