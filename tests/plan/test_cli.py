"""`aifactory plan` as a user runs it: tables and JSON through Typer, bad input through the real entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from aifactory.cli import app

ENTRY = [sys.executable, "-c", "from aifactory.cli import main; main()"]


def invoke(*args: str) -> str:
    result = CliRunner().invoke(app, ["plan", *args])
    assert result.exit_code == 0, result.output
    return result.output


def as_json(*args: str) -> Any:
    return json.loads(invoke(*args, "--json"))


def refused(home: Path, *args: str) -> str:
    """Run `aifactory plan ...` as a process: it must exit 2 with one line on stderr and no traceback."""
    env = {"AIFACTORY_HOME": str(home), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([*ENTRY, "plan", *args], capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    return proc.stderr


def test_gpus_table_and_json(home: Path) -> None:
    out = invoke("gpus")
    assert "H100-SXM" in out and "DGX-1" in out and "169.6" in out
    data = as_json("gpus")
    assert data["gpus"]["A100-SXM-80GB"]["bf16"] == 312 and data["systems"]["DGX-1"]["fp16_tflops"] == 169.6
    assert data["gpus"]["V100-SXM2"]["sources"]["measured_power_w"].startswith("Patterson")


def test_train_example_from_the_issue(home: Path) -> None:
    args = ("train", "--params", "70e9", "--tokens", "2e12", "--gpu", "A100-80GB", "--gpus", "2048")
    assert "wall-clock" in invoke(*args) and "ampere" in invoke(*args)
    data = as_json(*args, "--pue", "1.2", "--grid", "400", "--usd-per-gpu-hour", "1.5")
    assert data["flops"] == pytest.approx(8.4e23)
    assert data["gpu_hours"] == pytest.approx(8.4e23 / (312e12 * 0.40) / 3600 / 0.9)
    assert data["days"] == pytest.approx(data["gpu_hours"] / 2048 / 24)
    assert data["facility_mwh"] == pytest.approx(data["gpu_hours"] * 0.4 * 1.2 / 1000)
    assert data["tco2e"] == pytest.approx(data["facility_mwh"] * 0.4)
    assert data["cost_usd"] == pytest.approx(1.5 * data["gpu_hours"])
    assert (
        data["memory_gb"]["total"] <= 80 and data["layout"]["dp"] * data["layout"]["tp"] * data["layout"]["pp"] == 2048
    )
    llama = as_json(*args, "--layers", "80", "--hidden", "8192", "--heads", "64", "--tp", "8", "--pp", "4")
    # selective recomputation: 34 bytes per token x hidden per layer, split over tp (Korthikanti et al. 2022)
    assert llama["memory_gb"]["activations"] == pytest.approx(80 * 4096 * 8192 * 34 / 8 / 1e9)
    assert llama["memory_gb"]["weights"] == pytest.approx(70e9 * 2 / 32 / 1e9) and llama["layout"]["dp"] == 64


def test_energy_prints_the_implied_mfu_of_llama2(home: Path, published: dict[str, Any]) -> None:
    for key in ("llama2-7b", "llama2-13b", "llama2-70b"):
        row = published["runs"][key]
        args = ["energy", "--gpu", row["gpu"], "--gpu-hours", str(row["gpu_hours"]), "--power-w", "400"]
        args += ["--pue", "1", "--params", str(row["params"]), "--tokens", str(row["tokens"])]
        assert "implied MFU" in invoke(*args)
        assert 0.30 < as_json(*args)["implied_mfu"] < 0.50


def test_optimal_and_budget(home: Path) -> None:
    opt = as_json("optimal", "--flops", "5.76e23", "--fit", "epoch")
    assert opt["params"] == pytest.approx(70e9, rel=0.1) and opt["tokens"] == pytest.approx(1.4e12, rel=0.1)
    assert "compute-optimal" in invoke("optimal", "--flops", "5.76e23", "--fit", "chinchilla")
    bud = as_json("budget", "--target-loss", str(opt["loss"]), "--inference-tokens", "1e13")
    assert bud["training_optimal"]["train_flops"] == pytest.approx(5.76e23, rel=1e-6)
    assert bud["inference_aware"]["params"] < bud["training_optimal"]["params"]
    assert bud["inference_aware"]["lifetime_flops"] < bud["training_optimal"]["lifetime_flops"]


def test_fit_writes_a_plot(home: Path, tmp_path: Path) -> None:
    c = np.geomspace(1e9, 1e13, 6)
    runs = tmp_path / "runs.csv"
    runs.write_text("compute,loss\n" + "".join(f"{x},{1.5 + 20 * x**-0.1}\n" for x in c))
    data = as_json("fit", str(runs), "--plot", str(tmp_path / "fit.png"), "--extrapolate", "1e15")
    assert data["alpha"] == pytest.approx(0.1, rel=1e-3) and data["E"] == pytest.approx(1.5, rel=1e-3)
    assert data["band95"][0] <= data["predicted_loss"] <= data["band95"][1]
    assert (tmp_path / "fit.png").read_bytes()[:4] == b"\x89PNG"


def test_inference_plan(home: Path) -> None:
    data = as_json("inference", "--params", "70e9", "--gpu", "H100", "--kv-heads", "8", "--rate", "20")
    assert data["gpus"] == data["replicas"] * data["tp"] and data["replicas"] * data["replica_rps"] >= 20
    assert "tokens/s per GPU" in invoke("inference", "--params", "7e9", "--gpu", "A100")


def test_bad_input_exits_2_with_a_clear_message(home: Path, tmp_path: Path) -> None:
    base = ["train", "--tokens", "2e12", "--gpus", "2048"]
    assert "params: must be a number > 0" in refused(home, *base, "--params", "-70e9", "--gpu", "A100")
    assert "did you mean 'A100-SXM-80GB'" in refused(home, *base, "--params", "70e9", "--gpu", "A100-80G")
    err = refused(home, *base, "--params", "70e9", "--gpu", "A100-80GB", "--tp", "1", "--pp", "1")
    assert "memory: plan does not fit" in err and "GB per GPU" in err
    partial = refused(home, *base, "--params", "7e9", "--gpu", "H100", "--layers", "32")
    assert "give --layers, --hidden and --heads together" in partial
    assert "target-loss" in refused(home, "budget", "--target-loss", "1.0")
    assert "no such file" in refused(home, "fit", str(tmp_path / "absent.csv"))
    assert "catalog" in refused(home, "gpus", "--catalog", str(tmp_path / "absent.toml"))


def test_train_on_a_count_no_layout_divides_and_defaults_with_their_sources() -> None:
    out = as_json("train", "--params", "175e9", "--tokens", "300e9", "--gpu", "V100", "--gpus", "10000")
    assert (out["gpus"], out["gpus_used"], out["idle_gpus"], out["nearest_above"]) == (10000, 9984, 16, 10112)
    assert out["layout"]["tp"] * out["layout"]["pp"] * out["layout"]["dp"] == 9984
    assert "Dubey et al. 2024" in out["goodput_source"] and "Uptime Institute" in out["pue_source"]
    assert "Ember" in out["grid_source"] and "Patterson" in out["mfu_source"]
    text = invoke("train", "--params", "175e9", "--tokens", "300e9", "--gpu", "V100", "--gpus", "10000")
    assert "16 of 10,000" in " ".join(text.split())
    given = as_json("train", "--flops", "3.14e23", "--gpu", "V100", "--gpus", "1024", "--pue", "1.58")
    assert given["memory_gb"] is None and given["pue_source"] == "given" and given["flops"] == 3.14e23


def test_compare_sets_gpus_and_cpus_side_by_side() -> None:
    """The seed story: AlexNet (5e17 FLOP) on two GTX 580s, and on 2,000 Sandy Bridge sockets (16,000 cores)."""
    out = as_json("compare", "--flops", "5e17", "--on", "GTX 580:2", "--on", "E5-2670:2000:0.05", "--on", "H100:8")
    gtx, xeon, h100 = out["sides"]
    assert (gtx["kind"], gtx["precision"], xeon["kind"], xeon["precision"]) == ("gpu", "fp32", "cpu", "fp32")
    assert 5 < gtx["days"] < 8  # Krizhevsky et al. 2012: five to six days
    assert gtx["days"] == pytest.approx(5e17 / (2 * 1.581e12 * 0.30 * 0.9) / 86400)
    assert xeon["days"] == pytest.approx(5e17 / (2000 * 0.3328e12 * 0.30 * 0.9) / 86400)
    assert xeon["cost_usd"] == pytest.approx(xeon["device_hours"] * 0.05) and gtx["cost_usd"] is None
    assert xeon["facility_kwh"] > gtx["facility_kwh"] and h100["days"] < gtx["days"] / 100
    assert "Krizhevsky" in gtx["efficiency_source"] and "CPUs" in xeon["efficiency_source"]
    assert "Ember" in out["sources"]["grid"]
    by_tokens = as_json("compare", "--params", "1e9", "--tokens", "2e10", "--on", "EPYC-9654:4")
    assert by_tokens["flops"] == pytest.approx(1.2e20)


def test_compare_refuses_bad_hardware(home: Path) -> None:
    assert "on: 'H100': expected NAME:COUNT" in refused(home, "compare", "--flops", "1e20", "--on", "H100")
    assert "COUNT must be 1 to" in refused(home, "compare", "--flops", "1e20", "--on", "H100:0")
    assert "unknown gpu 'Z80'" in refused(home, "compare", "--flops", "1e20", "--on", "Z80:4")
    assert "flops:" in refused(home, "compare", "--on", "H100:8")
