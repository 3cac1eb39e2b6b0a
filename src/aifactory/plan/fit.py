"""Fit L(C) = E + A * (C / C0)^-alpha to (compute, loss) points, with uncertainty, and plot it.

C0 is the smallest compute in the data, so A is in loss units and the fit is well scaled whatever the
FLOP counts. Least squares by scipy's `curve_fit`; parameter standard errors from its covariance, and a
95 % band on predictions by the delta method (gradient of the prediction through that covariance).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

from aifactory.core.errors import SpecError

Z95 = 1.959964  # two-sided 95 % normal quantile
COMPUTE_COLUMNS = ("compute", "flops", "c")
LOSS_COLUMNS = ("loss", "val_loss", "l")


@dataclass(frozen=True, slots=True)
class PowerLawFit:
    """L(C) = E + A * (C / c0)^-alpha; `cov` is the 3x3 covariance of (E, A, alpha), row-major."""

    E: float
    A: float
    alpha: float
    c0: float
    cov: tuple[tuple[float, ...], ...]
    r2: float
    points: int

    def predict(self, compute: float) -> float:
        return self.E + self.A * (compute / self.c0) ** -self.alpha

    def _grad(self, compute: float) -> tuple[float, float, float]:
        x = (compute / self.c0) ** -self.alpha
        return 1.0, x, -self.A * x * math.log(compute / self.c0)

    def stderr(self, compute: float) -> float:
        """Standard error of the predicted loss at `compute` (delta method)."""
        g = self._grad(compute)
        var = sum(g[i] * self.cov[i][j] * g[j] for i in range(3) for j in range(3))
        return math.sqrt(max(var, 0.0))

    def band(self, compute: float, z: float = Z95) -> tuple[float, float]:
        """pred +- z standard errors, the lower end clipped at 0 (a loss is never negative)."""
        pred, se = self.predict(compute), self.stderr(compute)
        return max(pred - z * se, 0.0), pred + z * se

    @property
    def param_stderr(self) -> dict[str, float]:
        return {k: math.sqrt(max(self.cov[i][i], 0.0)) for i, k in enumerate(("E", "A", "alpha"))}

    @property
    def A_absolute(self) -> float:
        """A in L = E + A * C^-alpha with C in FLOP."""
        return self.A * self.c0**self.alpha


def _check_points(compute: list[float], loss: list[float]) -> None:
    if len(compute) != len(loss):
        raise SpecError("runs", f"{len(compute)} compute values but {len(loss)} losses")
    if len(compute) < 4:
        raise SpecError("runs", f"need at least 4 (compute, loss) points to fit 3 parameters, got {len(compute)}")
    for i, (c, v) in enumerate(zip(compute, loss, strict=True)):
        if not (math.isfinite(c) and c > 0):
            raise SpecError(f"runs[{i}].compute", f"must be a finite number > 0, got {c}")
        if not (math.isfinite(v) and v > 0):
            raise SpecError(f"runs[{i}].loss", f"must be a finite number > 0, got {v}")
    if len(set(compute)) < 3:
        raise SpecError("runs", "need at least 3 distinct compute values")


def fit_power_law(compute: list[float], loss: list[float]) -> PowerLawFit:
    """Least-squares fit of E + A * (C/c0)^-alpha with E in [0, min loss), A > 0, alpha in (0, 3)."""
    import numpy as np
    from scipy.optimize import curve_fit

    _check_points(compute, loss)
    c = np.asarray(compute, dtype=float)
    y = np.asarray(loss, dtype=float)
    c0 = float(c.min())
    x = c / c0

    def model(xv: np.ndarray, e: float, a: float, alpha: float) -> np.ndarray:
        return e + a * xv**-alpha

    best = None
    for alpha0 in (0.05, 0.15, 0.4, 1.0):  # a few starts: the E-alpha valley is long and flat
        p0 = (0.5 * y.min(), max(y.max() - 0.5 * y.min(), 1e-6), alpha0)
        bounds = ([0.0, 1e-12, 1e-4], [float(y.min()), np.inf, 3.0])
        try:
            popt, pcov = curve_fit(model, x, y, p0=p0, bounds=bounds, maxfev=20000)
        except (RuntimeError, ValueError):
            continue
        sse = float(np.sum((model(x, *popt) - y) ** 2))
        if best is None or sse < best[0]:
            best = (sse, popt, pcov)
    if best is None:
        raise SpecError("runs", "the power-law fit did not converge")
    sse, popt, pcov = best
    sst = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - sse / sst if sst > 0 else 1.0
    cov = tuple(tuple(float(v) if np.isfinite(v) else math.inf for v in row) for row in pcov)
    return PowerLawFit(float(popt[0]), float(popt[1]), float(popt[2]), c0, cov, r2, len(compute))


def read_runs_csv(path: Path) -> tuple[list[float], list[float]]:
    """(compute, loss) columns of a CSV with a header naming them (`compute`/`flops`, `loss`/`val_loss`)."""
    if not path.is_file():
        raise SpecError("runs", f"no such file: {path}")
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        header = {h.strip().lower(): h for h in reader.fieldnames or []}
        ccol = next((header[k] for k in COMPUTE_COLUMNS if k in header), None)
        lcol = next((header[k] for k in LOSS_COLUMNS if k in header), None)
        if ccol is None or lcol is None:
            raise SpecError("runs", f"{path} needs a header with a compute (or flops) and a loss column")
        compute, loss = [], []
        for i, row in enumerate(reader):
            try:
                compute.append(float(row[ccol]))
                loss.append(float(row[lcol]))
            except (TypeError, ValueError):
                raise SpecError(f"runs[{i}]", f"not a number: {row[ccol]!r}, {row[lcol]!r}") from None
    return compute, loss


def plot_fit(fit: PowerLawFit, compute: list[float], loss: list[float], path: Path, extrapolate_to: float) -> Path:
    """PNG of loss against compute on log-log axes: the points, the fit and the 95 % extrapolation band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    cmax = max(max(compute), extrapolate_to)
    grid = np.geomspace(min(compute), cmax, 200)
    pred = np.array([fit.predict(c) for c in grid])
    lo, hi = zip(*(fit.band(c) for c in grid), strict=True)
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    ax.fill_between(grid, np.maximum(lo, 1e-9), hi, alpha=0.25, label="95 % band")
    inside = grid <= max(compute)
    label = f"fit: {fit.E:.3f} + {fit.A:.3f}(C/{fit.c0:.2g})^-{fit.alpha:.3f}"
    ax.plot(grid[inside], pred[inside], "-", label=label)
    ax.plot(grid[~inside], pred[~inside], "--", label="extrapolation")
    ax.scatter(compute, loss, color="black", zorder=3, label="runs")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training compute C (FLOP)")
    ax.set_ylabel("loss")
    ax.set_title(f"L(C) power law, R^2 = {fit.r2:.4f}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
