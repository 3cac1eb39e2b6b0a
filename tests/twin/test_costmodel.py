"""Rows that give work (FLOPs) run as long as the plan's training cost model says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aifactory.cli.twin import app
from aifactory.core.errors import SpecError, UnknownName
from aifactory.plan.catalog import load_catalog
from aifactory.plan.train import wall_seconds
from aifactory.twin.costmodel import flops_cost_model
from aifactory.twin.traces.format import trace_job, write_trace


def test_seconds_follow_the_catalogue_gpu_and_mfu() -> None:
    catalog = load_catalog()
    h100, a100 = catalog.gpu("H100"), catalog.gpu("A100")
    cost = flops_cost_model("H100")
    whole = trace_job(0, "a", 8, None, work=1e21)
    assert cost(whole) == pytest.approx(wall_seconds(1e21, h100, 8, catalog.default_mfu(h100)))
    on_a100 = trace_job(0, "a", 8, None, gpu_model="A100", work=1e21)
    assert cost(on_a100) > cost(whole)  # a slower GPU takes longer for the same FLOPs
    assert cost(on_a100) == pytest.approx(wall_seconds(1e21, a100, 8, catalog.default_mfu(a100)))
    half = trace_job(0, "a", 0.5, None, work=1e18)
    assert flops_cost_model("H100", mfu=0.5)(half) == pytest.approx(2 * wall_seconds(1e18, h100, 1, 0.5))
    with pytest.raises(UnknownName):
        flops_cost_model("H1000")
    with pytest.raises(SpecError) as err:
        flops_cost_model("H100", mfu=1.5)
    assert err.value.field == "mfu"


def test_twin_run_times_work_rows_with_the_cost_model(tmp_path: Path) -> None:
    catalog = load_catalog()
    h100 = catalog.gpu("H100")
    trace = write_trace([trace_job(0, "a", 4, None, work=4e20), trace_job(0, "a", 4, 100.0)], tmp_path / "w.csv")
    result = CliRunner().invoke(app, ["run", "--trace", str(trace), "--policy", "fifo", "--mfu", "0.5", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)["variants"][0]["summary"]
    expected = wall_seconds(4e20, h100, 4, 0.5)
    assert summary["jct_s_mean"] == pytest.approx((expected + 100.0) / 2)
