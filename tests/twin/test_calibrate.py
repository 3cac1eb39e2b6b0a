"""`aifactory twin calibrate`: each GPU model's idle and busy power fitted from the floor's telemetry."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from aifactory.cli.twin import app
from aifactory.core.cluster import NodeSpec
from aifactory.core.errors import SpecError
from aifactory.live.store import Store
from aifactory.live.telemetry import GpuSample
from aifactory.twin.calibrate import fit
from aifactory.twin.power import power_spec


def _store(tmp_path: Path, minutes: int) -> str:
    """A floor's store: two H100 nodes whose GPUs drew 80 W idle and 690 W busy, with noise, for `minutes`."""
    url = f"sqlite:///{tmp_path / 'factory.db'}"
    rng = np.random.default_rng(0)
    with Store(url) as store:
        store.save_nodes([NodeSpec("h0", 8, "H100-SXM"), NodeSpec("h1", 8, "H100-SXM")])
        rows = []
        for i in range(minutes):
            util = float(rng.uniform(0, 100))
            power = 80 + 6.1 * util + float(rng.normal(0, 5))
            rows.append(GpuSample(60.0 * i, f"h{i % 2}", i % 8, 60.0, util, 1000.0, power, 50.0, None, None))
        store.add_gpu_samples(rows)
    return url


def test_calibrate_fits_idle_and_busy_and_the_twin_reads_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("AIFACTORY_HOME", str(home))
    url = _store(tmp_path, 500)
    before = power_spec("H100")
    result = CliRunner().invoke(app, ["calibrate", "--store", url, "--json"])
    assert result.exit_code == 0, result.output
    (fitted,) = json.loads(result.output)["fits"]
    assert fitted["model"] == "H100-SXM" and fitted["samples"] == 500 and fitted["r2"] > 0.99
    assert fitted["idle_w"] == pytest.approx(80, abs=3) and fitted["busy_w"] == pytest.approx(690, abs=3)
    assert (home / "calibrated.toml").is_file()
    after = power_spec("H100")  # the twin's power model now reads the floor's own figures
    assert after.idle_w == pytest.approx(fitted["idle_w"], abs=0.1) and after.busy_w == pytest.approx(
        fitted["busy_w"], abs=0.1
    )
    assert "fitted" in after.sources["idle_w"] and "fitted" in after.sources["busy_w"]
    assert before.idle_w == 140  # the catalogue's assumption until then


def test_too_little_telemetry_is_refused(tmp_path: Path) -> None:
    url = _store(tmp_path, 10)
    result = CliRunner().invoke(app, ["calibrate", "--store", url, "--out", str(tmp_path / "c.toml")])
    assert result.exit_code != 0 and not (tmp_path / "c.toml").exists()
    with pytest.raises(SpecError, match="only spans"):
        fit([("A100", 50.0 + i % 3, 300.0) for i in range(100)])
    with pytest.raises(SpecError, match="no GPU power samples"):
        fit([])
