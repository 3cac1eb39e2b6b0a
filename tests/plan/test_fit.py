"""The power-law fit: recovers a known law, its uncertainty covers the truth, CSV in, PNG out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aifactory.core.errors import SpecError
from aifactory.plan.fit import fit_power_law, plot_fit, read_runs_csv


def _law(c: np.ndarray) -> np.ndarray:
    return 1.2 + 30.0 * c**-0.08


def test_recovers_a_known_law_from_noisy_points() -> None:
    rng = np.random.default_rng(0)
    c = np.geomspace(1e10, 1e15, 12)
    loss = _law(c) * (1 + 0.002 * rng.standard_normal(c.size))
    fit = fit_power_law(list(c), list(loss))
    se = fit.param_stderr
    assert abs(fit.alpha - 0.08) < 3 * se["alpha"] + 1e-3
    assert abs(fit.E - 1.2) < 3 * se["E"] + 1e-2
    assert fit.r2 > 0.999
    assert fit.A_absolute == pytest.approx(30.0, rel=0.5)
    far = 1e17
    lo, hi = fit.band(far)
    assert lo < _law(np.array(far)) < hi
    assert hi - lo > fit.band(1e12)[1] - fit.band(1e12)[0]  # wider when extrapolating


def test_exact_points_fit_exactly() -> None:
    c = [1e9, 1e10, 1e11, 1e12, 1e13]
    fit = fit_power_law(c, list(_law(np.array(c))))
    assert fit.predict(1e14) == pytest.approx(float(_law(np.array(1e14))), rel=1e-4)


def test_csv_and_plot(tmp_path: Path) -> None:
    c = np.geomspace(1e9, 1e12, 6)
    csv = tmp_path / "runs.csv"
    csv.write_text(
        "name,flops,val_loss\n" + "".join(f"r{i},{x},{y}\n" for i, (x, y) in enumerate(zip(c, _law(c), strict=True)))
    )
    compute, loss = read_runs_csv(csv)
    assert compute == pytest.approx(list(c)) and len(loss) == 6
    png = plot_fit(fit_power_law(compute, loss), compute, loss, tmp_path / "out" / "fit.png", 1e14)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


@pytest.mark.parametrize(
    ("compute", "loss", "match"),
    [([1, 2, 3], [3, 2, 1], "at least 4"), ([1, 2, -3, 4], [4, 3, 2, 1], r"runs\[2\]\.compute"),
     ([1, 2, 3, 4], [4, 3, float("nan"), 1], r"runs\[2\]\.loss"), ([1, 1, 2, 2], [4, 3, 2, 1], "distinct")],
)  # fmt: skip
def test_bad_points(compute: list[float], loss: list[float], match: str) -> None:
    with pytest.raises(SpecError, match=match):
        fit_power_law(compute, loss)


def test_bad_csv(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="no such file"):
        read_runs_csv(tmp_path / "absent.csv")
    (tmp_path / "a.csv").write_text("x,y\n1,2\n")
    with pytest.raises(SpecError, match="header"):
        read_runs_csv(tmp_path / "a.csv")
    (tmp_path / "b.csv").write_text("compute,loss\n1e9,abc\n")
    with pytest.raises(SpecError, match=r"runs\[0\]"):
        read_runs_csv(tmp_path / "b.csv")
