"""Scaling sweep on this machine: tiny character-level transformers of growing width, fitted L(C) = E + A C^-alpha.

Prints each run, the fit (exponent, R^2, parameter standard errors), the error of predicting the largest run
from a fit of the others, and as its last line one JSON object with those figures.

    .venv/bin/python benchmarks/plan_sweep.py [--widths 32,40,48,56,64,80] [--tokens-per-param 10] [--plot sweep.png]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from aifactory.plan.fit import plot_fit
from aifactory.plan.sweep import LocalRunner, run_sweep, sweep_jobs, write_csv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--widths", default="32,40,48,56,64,80")
    parser.add_argument("--tokens-per-param", type=float, default=10.0)
    parser.add_argument("--parallel", type=int, default=1)
    parser.add_argument("--plot", type=Path, default=None, help="write the fit as a PNG here")
    parser.add_argument("--csv", type=Path, default=None, help="write the runs as CSV here")
    args = parser.parse_args()
    jobs = sweep_jobs([int(w) for w in args.widths.split(",")], tokens_per_param=args.tokens_per_param)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        outcome = run_sweep(jobs, LocalRunner(parallel=args.parallel), Path(tmp))
    wall = time.perf_counter() - start
    for r in outcome.results:
        print(
            f"{r.name:>8}  N={r.params:>8,d}  D={r.tokens:>10,d}  C={r.compute:.3e}  loss={r.val_loss:.4f}  {r.seconds:6.1f} s"
        )
    fit = outcome.fit
    se = fit.param_stderr
    print(f"fit: L = {fit.E:.4f} + {fit.A:.4f} (C/{fit.c0:.3g})^-{fit.alpha:.4f}   R^2 = {fit.r2:.5f}")
    print(f"std errors: E {se['E']:.4f}  A {se['A']:.4f}  alpha {se['alpha']:.4f}")
    print(f"compute span: {outcome.compute_decades:.2f} decades; wall {wall:.1f} s")
    if outcome.holdout_error_pct is not None:
        last = outcome.results[-1]
        pred = outcome.holdout_fit.predict(last.compute) if outcome.holdout_fit else float("nan")
        print(
            f"hold-out: largest run loss {last.val_loss:.4f}, predicted {pred:.4f} ({outcome.holdout_error_pct:.2f} %)"
        )
    if args.plot:
        plot_fit(
            fit,
            [r.compute for r in outcome.results],
            [r.val_loss for r in outcome.results],
            args.plot,
            100 * outcome.results[-1].compute,
        )
    if args.csv:
        write_csv(outcome.results, args.csv)
    figures = {
        "fit_exponent": round(fit.alpha, 5),
        "fit_exponent_stderr": round(se["alpha"], 5),
        "fit_E": round(fit.E, 5),
        "fit_r2": round(fit.r2, 6),
        "holdout_error_pct": None if outcome.holdout_error_pct is None else round(outcome.holdout_error_pct, 3),
        "sizes": len(outcome.results),
        "params": [r.params for r in outcome.results],
        "compute_flops": [float(f"{r.compute:.4g}") for r in outcome.results],
        "losses": [round(r.val_loss, 4) for r in outcome.results],
        "compute_decades": round(outcome.compute_decades, 3),
        "wall_s": round(wall, 1),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
