"""How many GPUs to buy in one command: sizes as lists and ranges, quotas that scale with the cluster,
growing arrivals, why jobs were refused, and the smallest size that meets a wait target."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aifactory.cli.twin import app
from aifactory.core.cluster import NodeSpec
from aifactory.core.errors import SpecError
from aifactory.core.project import Project
from aifactory.twin.sizing import expand_nodes, grow, parse_growth, parse_target, rejection_reasons
from aifactory.twin.traces.format import Scenario, write_trace
from aifactory.twin.whatif import Variant, apply_variant, read_projects, run_variants

from .helpers import job


def test_sizes_as_lists_and_ranges() -> None:
    assert expand_nodes(["2,4", "3..7:2", "+1", "4"]) == ["2", "4", "3", "5", "7", "+1"]
    assert expand_nodes(["pool-a:+2"]) == ["pool-a:+2"]
    for bad in (["7..3"], ["1..5:0"], ["x"], ["2,,3"], ["1..1000"]):
        with pytest.raises(SpecError) as err:
            expand_nodes(bad)
        assert err.value.field == "nodes"


def test_quotas_scale_with_the_cluster_unless_given(tmp_path: Path) -> None:
    nodes = [NodeSpec(f"a-{i}", 8, pool="a") for i in range(4)] + [NodeSpec(f"b-{i}", 8, pool="b") for i in range(4)]
    projects = [Project("ta", quota=32, pool="a"), Project("tb", quota=32, pool="b"), Project("free", quota=16)]
    scenario = Scenario("s", [], nodes, projects)
    half = {p.name: p.quota for p in apply_variant(scenario, Variant(nodes="4")).projects}
    assert half == {"ta": 16, "tb": 16, "free": 8}  # 2,816 GPUs guaranteed on 1,216 no more
    grown = {p.name: p.quota for p in apply_variant(scenario, Variant(nodes="a:+4")).projects}
    assert grown == {"ta": 64, "tb": 32, "free": 16 * 12 / 8}
    path = tmp_path / "q.toml"
    path.write_text("[projects.tb]\nquota = 30\n")
    given = {
        p.name: p.quota for p in apply_variant(scenario, Variant(nodes="4", projects=read_projects(path))).projects
    }
    assert given["tb"] == 30 and given["ta"] == 16
    assert {p.name: p.quota for p in apply_variant(scenario, Variant()).projects} == {"ta": 32, "tb": 32, "free": 16}


def test_growth_multiplies_the_arrival_rate_over_time() -> None:
    assert parse_growth("2x/180d") == (2.0, 180 * 86400)
    assert parse_growth("1.5x/6mo")[0] == 1.5
    for bad in ("2x", "x/1d", "0x/1d", "2x/0d", "2x/soon"):
        with pytest.raises(SpecError) as err:
            parse_growth(bad)
        assert err.value.field == "growth"
    day = 86400.0
    jobs = [job(i * day / 10, 1, 60.0) for i in range(3650)]  # ten a day for a year
    scenario = Scenario("s", jobs, [NodeSpec("n", 8)], [Project("a", 8)])
    grown = grow(scenario, 2.0, 180 * day)
    first, last = (sum(1 for j in grown.jobs if lo <= j.submit_time < lo + 30 * day) for lo in (0, 330 * day))
    assert 280 < first < 340 and 1000 < last < 1300  # 300 a month at first; 2^(345/180) x 300 ~ 1,130 at the end
    assert grown.jobs[:3650] == jobs and grow(scenario, 2.0, 180 * day).jobs == grown.jobs  # seeded: repeatable
    assert grow(scenario, 1.0, day) is scenario


def test_refused_jobs_say_why_and_the_smallest_size_meeting_a_target(tmp_path: Path) -> None:
    jobs = [job(i * 20.0, 1 + i % 4, 300.0, "a") for i in range(60)] + [job(5.0, 16, 10.0, "a")]
    trace = write_trace(jobs, tmp_path / "t.csv")
    scenario = Scenario("s", jobs, [NodeSpec("n0", 8)], [Project("a", 8)])
    (result,) = run_variants(scenario, [Variant("fifo")])
    (reason,) = rejection_reasons(result)
    assert reason.count == 1 and "16" in reason.example
    args = ["run", "--trace", str(trace), "--policy", "fifo", "--nodes", "1,2", "--nodes", "3..4"]
    out = CliRunner().invoke(app, [*args, "--target-wait", "p95<10min", "--json", "--growth", "1x/1d"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert [v["variant"] for v in data["variants"]] == ["fifo nodes 1", "fifo nodes 2", "fifo nodes 3", "fifo nodes 4"]
    assert all(v["rejected_reasons"][0]["count"] == 1 for v in data["variants"])  # 16 GPUs: no node has them
    # Every size refuses the 16-GPU job, so none meets the target "with no job refused".
    assert data["smallest_meeting_target"] is None and data["target_wait"] == {"stat": "p95", "limit_s": 600.0}
    fits = [job(i * 20.0, 1 + i % 4, 60.0, "a") for i in range(60)]  # 7.5 GPUs busy on average
    trace = write_trace(fits, tmp_path / "fits.csv")  # bare: nodes as wide as its widest job, 4 GPUs
    text = CliRunner().invoke(app, ["run", "--trace", str(trace), "--nodes", "1..4", "--target-wait", "p95<30s"])
    assert text.exit_code == 0, text.output
    assert "against cluster size" in text.output and "smallest size meeting p95 wait" in text.output
    waits = json.loads(CliRunner().invoke(app, ["run", "--trace", str(trace), "--nodes", "1..4", "--json"]).output)[
        "variants"
    ]
    assert waits[0]["summary"]["first_wait_s_p95"] > 30  # one node is too few
    best = next(v for v in waits if v["summary"]["first_wait_s_p95"] < 30)
    assert f"{best['variant']} ({best['gpus']:,} GPUs)" in " ".join(text.output.split())
    for bad in ("p95", "p42<1h", "p95<soon"):
        with pytest.raises(SpecError):
            parse_target(bad)
