"""What-if variants, the `aifactory twin` commands and the HTML report."""

from __future__ import annotations

import base64
import json
import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aifactory.cli.twin import app
from aifactory.core.cluster import NodeSpec
from aifactory.core.errors import SpecError, UnknownName
from aifactory.core.project import Project
from aifactory.twin.report import render
from aifactory.twin.traces.format import Scenario, write_trace
from aifactory.twin.whatif import Variant, apply_variant, figure_text, read_projects, resize, run_variants

from .helpers import job


def pools(counts: dict[str, int]) -> list[NodeSpec]:
    return [NodeSpec(f"{p}-{i}", 8, pool=p) for p, n in counts.items() for i in range(n)]


def by_pool(nodes: list[NodeSpec]) -> dict[str, int]:
    out: dict[str, int] = {}
    for n in nodes:
        out[n.pool] = out.get(n.pool, 0) + 1
    return out


def test_resize_spreads_nodes_over_pools_by_size() -> None:
    nodes = pools({"big": 6, "mid": 3, "small": 1})
    assert by_pool(resize(nodes, "+10")) == {"big": 12, "mid": 6, "small": 2}
    assert by_pool(resize(nodes, "+1")) == {"big": 7, "mid": 3, "small": 1}
    assert by_pool(resize(nodes, "-5")) == {"big": 3, "mid": 1, "small": 1}  # 3, 1.5, 0.5: largest remainders
    assert len(resize(nodes, "20")) == 20
    added = [n for n in resize(nodes, "+10") if n.name.endswith("x0")]
    assert all(n == replace(next(m for m in nodes if m.pool == n.pool), name=n.name) for n in added)  # same capacity
    assert by_pool(resize(nodes, "small:+3")) == {"big": 6, "mid": 3, "small": 4}
    assert by_pool(resize(nodes, "mid:1")) == {"big": 6, "mid": 1, "small": 1}
    assert by_pool(resize(nodes, "small:-1")) == {"big": 6, "mid": 3}
    for bad in ("+x", "-10", "0", "1.5", "small:-2", "big:x"):
        with pytest.raises(SpecError) as err:
            resize(nodes, bad)
        assert err.value.field == "nodes"
    with pytest.raises(UnknownName, match="did you mean 'small'"):
        resize(nodes, "smal:+1")


def test_project_overrides_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "q.toml"
    path.write_text('[projects.a]\nquota = 6\n[projects.c]\nquota = 1\nweight = 2\npool = "p"\n')
    scenario = Scenario("s", [], [NodeSpec("n", 8)], [Project("a", quota=2, weight=3, pool="p"), Project("b", 4)])
    out = {p.name: p for p in apply_variant(scenario, Variant(projects=read_projects(path))).projects}
    assert (out["a"].quota, out["a"].weight, out["a"].pool) == (6, 3, "p")  # only quota changed
    assert (out["c"].quota, out["c"].weight, out["c"].pool) == (1, 2, "p")
    assert scenario.projects[0].quota == 2  # the scenario itself is untouched
    for text, field in [
        ("[projects.a]\nquota = -1\n", "projects.a.quota"),
        ("[projects.a]\ncolour = 1\n", "projects.a.colour"),
        ("[projects.a]\npool = 3\n", "projects.a.pool"),
        ("quota = 3\n", "projects"),
        ("[projects.a\n", "projects"),
    ]:
        path.write_text(text)
        with pytest.raises(SpecError) as err:
            read_projects(path)
        assert err.value.field == field


def small_trace(tmp_path: Path) -> Path:
    jobs = [job(i * 10.0, 1 + i % 4, 30.0 + i, "a" if i % 3 else "b") for i in range(40)]
    return write_trace(jobs, tmp_path / "small.csv")


def test_unknown_policy_fails_before_any_replay() -> None:
    scenario = Scenario("s", [job(0, 1, 1)], [NodeSpec("n", 1)], [Project("a", 1)])
    with pytest.raises(UnknownName, match=r"known: .*fifo"):
        run_variants(scenario, [Variant("fifo"), Variant("fifoo")])


def test_twin_run_json_and_report(tmp_path: Path) -> None:
    trace = small_trace(tmp_path)
    report = tmp_path / "out.html"
    args = ["run", "--trace", str(trace), "--policy", "fifo", "--policy", "priority", "--nodes", "2"]
    result = CliRunner().invoke(app, [*args, "--json", "--report", str(report)])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["jobs"] == 40 and [v["variant"] for v in out["variants"]] == ["fifo nodes 2", "priority nodes 2"]
    fifo = out["variants"][0]
    assert fifo["gpus"] == 16 and fifo["summary"]["finished"] == 40
    assert fifo["settings"]["factory"]["policy"] == "fifo"  # the effective configuration travels with the figures
    assert set(fifo["summary"]["projects"]) == {"a", "b"}
    series = fifo["series"]
    assert len(series["at"]) == len(series["allocated"]) > 0 and max(series["allocated"]) <= 16
    page = report.read_text()
    # CDFs, allocation, projects, power over time, + usage per variant
    assert page.count("data:image/png;base64,") == 6 + 2 and "<script" not in page
    assert fifo["summary"]["energy_kwh"] > 0 and fifo["summary"]["peak_kw"] > 0
    png = page.split("data:image/png;base64,")[1].split('"')[0]
    assert base64.b64decode(png)[:8] == b"\x89PNG\r\n\x1a\n"


def test_twin_run_prints_a_comparison_table(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["run", "--trace", str(small_trace(tmp_path)), "--policy", "fifo@shared"])
    assert result.exit_code == 0, result.output
    assert "fifo no-pools" in result.output and "mean wait to first start" in result.output


def aifactory(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    code = "import sys; from aifactory.cli import main; sys.argv[0] = 'aifactory'; main()"
    env = {"AIFACTORY_HOME": str(home), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=60)


def test_cli_errors_exit_2_with_the_known_names(tmp_path: Path) -> None:
    trace = str(small_trace(tmp_path))
    bad_policy = aifactory("twin", "run", "--trace", trace, "--policy", "fifoo", home=tmp_path)
    assert bad_policy.returncode == 2 and "did you mean 'fifo'" in bad_policy.stderr
    assert "Traceback" not in bad_policy.stderr
    bad_trace = aifactory("twin", "run", "--trace", "phily", home=tmp_path)
    assert bad_trace.returncode == 2 and "philly" in bad_trace.stderr and "openb" in bad_trace.stderr
    no_dir = aifactory("twin", "run", "--trace", trace, "--report", str(tmp_path / "nope" / "r.html"), home=tmp_path)
    assert no_dir.returncode == 2 and "report" in no_dir.stderr and "Traceback" not in no_dir.stderr
    no_store = aifactory("twin", "convert", "eventlog", str(tmp_path / "x.csv"), home=tmp_path)
    assert no_store.returncode == 2 and "no live store" in no_store.stderr
    assert not (tmp_path / "factory.db").exists() and not (tmp_path / "x.csv").exists()


def test_convert_philly_to_parquet_and_replay_it(tmp_path: Path, shared_data: Path) -> None:
    out = tmp_path / "philly.parquet"
    result = CliRunner().invoke(app, ["convert", "philly", str(out), "--limit", "300"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "philly.floor.yaml").is_file()
    on_its_floor = CliRunner().invoke(app, ["run", "--trace", str(out), "--json"])
    assert on_its_floor.exit_code == 0, on_its_floor.output
    direct = CliRunner().invoke(app, ["run", "--trace", "philly", "--limit", "300", "--json"])
    summary = json.loads(on_its_floor.output)["variants"][0]["summary"]
    assert summary["finished"] == 300
    assert summary == json.loads(direct.output)["variants"][0]["summary"]  # the floor file is the Philly floor
    (tmp_path / "philly.floor.yaml").unlink()  # a bare trace: sized from its widest job, one shared pool
    bare = CliRunner().invoke(app, ["run", "--trace", str(out), "--nodes", "4", "--json"])
    assert json.loads(bare.output)["variants"][0]["summary"]["finished"] == 300


def test_render_handles_a_run_where_nothing_finished() -> None:
    scenario = Scenario("s", [job(0, 8, 1)], [NodeSpec("n", 4)], [Project("a", 4)])
    (result,) = run_variants(scenario, [Variant("fifo")])
    assert result.summary["rejected"] == 1
    assert "<table>" in render([result])


@pytest.mark.parametrize(
    ("key", "value", "text"),
    [
        ("first_wait_s_mean", 42.0, "42 s"),
        ("first_wait_s_mean", 4.25, "4.25 s"),
        ("queued_s_mean", 750.0, "12.5 min"),
        ("jct_s_p99", 3 * 3600 + 720, "3.2 h"),
        ("makespan_s", 61 * 86400.0, "61.0 d"),
        ("first_wait_s_p95", math.nan, "-"),
        ("utilisation", 0.875, "0.875"),
        ("preemptions", 12, "12"),
    ],
)
def test_tables_give_durations_in_units_a_person_reads(key: str, value: float, text: str) -> None:
    assert figure_text(key, value) == text


def test_policy_options_go_to_the_variants_whose_policy_has_them(tmp_path: Path) -> None:
    trace = str(small_trace(tmp_path))
    args = ["run", "--trace", trace, "--policy", "fifo", "--policy", "fairshare", "--policy-opt", "half_life_s=0"]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    fifo, fair = json.loads(result.output)["variants"]
    assert fifo["settings"]["factory"]["half_life_s"] == 86400.0  # fifo has no such option: untouched
    assert fair["settings"]["factory"]["half_life_s"] == 0.0 and fair["variant"] == "fairshare half_life_s=0"
    bad = aifactory("twin", "run", "--trace", trace, "--policy", "fifo", "--policy-opt", "half_life_s=0", home=tmp_path)
    assert bad.returncode == 2 and "policy_opt" in bad.stderr and "Traceback" not in bad.stderr, bad.stderr
    worse = aifactory("twin", "run", "--trace", trace, "--policy-opt", "half_life_s=soon", home=tmp_path)
    assert worse.returncode == 2 and "policy_opt.half_life_s" in worse.stderr, worse.stderr


def test_the_energy_and_sizing_options_refuse_bad_input(tmp_path: Path) -> None:
    trace = str(small_trace(tmp_path))
    grid = tmp_path / "grid.csv"
    grid.write_text("offset_h,g_per_kwh\n0,100\n")
    cases = [
        (["--growth", "fast"], "growth"),
        (["--nodes", "9..3"], "nodes"),
        (["--target-wait", "soon"], "target-wait"),
        (["--power-off", "0min"], "power-off"),
        (["--power-off", "later"], "power-off"),
        (["--checkpoint-every", "0h"], "checkpoint-every"),
        (["--gpu-util", "2"], "gpu-util"),
        (["--pue", "0.5"], "pue"),
        (["--usd-per-kwh", "-1"], "usd-per-kwh"),
        (["--power-cap", "0.3"], "power-cap"),
        (["--failures", "often"], "failures"),
        (["--carbon-aware", "6h"], "carbon-aware"),
        (["--grid-csv", str(tmp_path / "none.csv")], "grid-csv"),
        (["--power-budget-kw", "-1"], "power-budget-kw"),
        (["--pool-power-budget", "a"], "pool_power_budget"),
        (["--pool-power-budget", "nosuch=5"], "no node pool 'nosuch'"),
        (["--power-gpu", "Z80"], "Z80"),
    ]
    for options, word in cases:
        done = aifactory("twin", "run", "--trace", trace, *options, home=tmp_path)
        assert done.returncode == 2, (options, done.stderr)
        assert "Traceback" not in done.stderr and word in done.stderr and len(done.stderr.strip().splitlines()) == 1
    ok = aifactory("twin", "run", "--trace", trace, "--grid-csv", str(grid), "--json", home=tmp_path)
    assert ok.returncode == 0, ok.stderr
