"""The scaling sweep: real training subprocesses, locally and as jobs of the live factory, then the fit."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from aifactory.core.errors import SpecError, UnknownName
from aifactory.plan.charlm import CharLMConfig
from aifactory.plan.sweep import LocalRunner, SweepJob, analyse, approx_params, get_runner, sweep_jobs, write_csv

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


def test_local_sweep_trains_real_models_and_fits_them(home: Path, tmp_path: Path) -> None:
    results = LocalRunner(parallel=2).run(tiny_jobs(), tmp_path / "runs")
    for r, job in zip(results, tiny_jobs(), strict=True):
        assert r.params == approx_params(job.config.d_model, 1)  # the planner's count is the model's
        assert r.compute == pytest.approx(6 * r.params * r.tokens)
        assert 0 < r.val_loss < math.log(103)  # better than a uniform guess over the characters
    record = json.loads((tmp_path / "runs" / "d16-l1.json").read_text())
    assert (
        record["config"]["d_model"] == 16
        and record["config"]["batch"] == 4
        and record["val_loss"] == results[0].val_loss
    )
    outcome = analyse(results)
    assert outcome.fit.points == 4 and 0 < outcome.fit.alpha < 3
    assert outcome.results[0].val_loss > outcome.results[-1].val_loss  # bigger models, lower loss
    csv = write_csv(outcome.results, tmp_path / "runs.csv")
    assert csv.read_text().splitlines()[0] == "name,params,tokens,compute,loss,seconds"


def test_floor_sweep_runs_each_size_as_a_factory_job(home: Path, tmp_path: Path) -> None:
    from aifactory.live.store import Store
    from aifactory.plan.floor_runner import FloorRunner

    jobs = tiny_jobs()[:1]
    results = FloorRunner(gpus=2).run(jobs, tmp_path / "runs")
    assert [r.name for r in results] == [j.name for j in jobs]
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
    for config, word in [('{"d_model": -4}', "d_model"), ('{"width": 4}', "width"), ("{nope", "JSON")]:
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
