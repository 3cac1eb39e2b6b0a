"""A scaling sweep: a family of character-level transformers of growing size, trained, then fitted.

Each size is a separate `python -m aifactory.plan.charlm --config JSON --out PATH` process, so any runner
that can run a command can run the sweep: `LocalRunner` runs them as local subprocesses; `FloorRunner`
(live/sweep_runner.py) submits the same commands as jobs of the live factory. Runners are found by name
in `RUNNERS` ("local", "floor").

Sizes follow one rule: width d grows, depth stays, and the training budget is `tokens_per_param` times
the parameter count (data grows with the model, as along a compute-optimal frontier), so compute grows
as d^4 and a few widths span decades of compute.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Protocol

from aifactory.core.errors import AifactoryError, SpecError
from aifactory.plan.charlm import CharLMConfig
from aifactory.plan.fit import PowerLawFit, fit_power_law
from aifactory.plugins import lookup

VOCAB = 103  # distinct characters in CPython 3.11's pydoc_data.topics; it only sizes each run's token budget


@dataclass(frozen=True, slots=True)
class SweepJob:
    name: str
    config: CharLMConfig


@dataclass(frozen=True, slots=True)
class SweepResult:
    """One finished run: N parameters, D characters, C = 6ND FLOP, held-out loss in nats/char."""

    name: str
    params: int
    tokens: int
    compute: float
    val_loss: float
    seconds: float


class SweepFailed(AifactoryError):
    """A sweep run exited non-zero or wrote no result."""


Done = Callable[[SweepResult], None]  # told as each run finishes (progress)


class Runner(Protocol):
    def run(self, jobs: Sequence[SweepJob], workdir: Path, done: Done | None = None) -> list[SweepResult]: ...


def approx_params(d_model: int, n_layer: int, vocab: int = VOCAB) -> int:
    """Parameters counted by charlm (blocks 12d^2 + 13d each, final norm, tied head); no position table."""
    return n_layer * (12 * d_model * d_model + 13 * d_model) + 2 * d_model + vocab * d_model


def sweep_jobs(
    widths: Sequence[int] = (32, 40, 48, 56, 64, 80),
    n_layer: int = 2,
    tokens_per_param: float = 10.0,
    base: CharLMConfig | None = None,
) -> list[SweepJob]:
    """One job per width. Heads of 16 channels (or a little wider where 16 does not divide d); peak LR
    1e-2 at d=16, shrinking as 1/sqrt(d); batch d/4 sequences (at least 4), since the batch a model can
    use grows as its loss falls (Kaplan et al. 2020)."""
    if len(widths) < 4:
        raise SpecError("widths", f"need at least 4 sizes to fit a 3-parameter law, got {len(widths)}")
    if not tokens_per_param > 0:
        raise SpecError("tokens-per-param", f"must be > 0, got {tokens_per_param}")
    cfg = base or CharLMConfig()
    jobs = []
    for d in sorted(set(widths)):
        if d < 8 or d % 8:
            raise SpecError("widths", f"each width must be a multiple of 8 and >= 8, got {d}")
        tokens = int(tokens_per_param * approx_params(d, n_layer))
        heads = max(h for h in range(1, max(1, d // 16) + 1) if d % h == 0)
        lr = 1e-2 * (16 / d) ** 0.5
        sized = replace(cfg, d_model=d, n_layer=n_layer, n_head=heads, tokens=tokens, lr=lr, batch=max(4, d // 4))
        jobs.append(SweepJob(f"d{d}-l{n_layer}", sized))
    return jobs


def job_command(job: SweepJob, out: Path) -> tuple[str, ...]:
    """The process that runs one size and writes its result JSON to `out`."""
    config = json.dumps(asdict(job.config), separators=(",", ":"))
    return (sys.executable, "-m", "aifactory.plan.charlm", "--config", config, "--out", str(out))


def read_result(job: SweepJob, out: Path) -> SweepResult:
    if not out.is_file():
        raise SweepFailed(f"sweep run {job.name} wrote no result to {out}")
    raw = json.loads(out.read_text())
    return SweepResult(job.name, raw["params"], raw["tokens"], raw["compute"], raw["val_loss"], raw["seconds"])


@dataclass(frozen=True, slots=True)
class LocalRunner:
    """Runs each size as a local subprocess, `parallel` at a time (each uses one thread)."""

    parallel: int = 1
    timeout_s: float = 1800.0

    def _one(self, job: SweepJob, workdir: Path) -> SweepResult:
        out = workdir / f"{job.name}.json"
        try:
            proc = subprocess.run(job_command(job, out), capture_output=True, text=True, timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            raise SweepFailed(f"sweep run {job.name} ran past {self.timeout_s} s") from None
        if proc.returncode != 0:
            raise SweepFailed(f"sweep run {job.name} exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
        return read_result(job, out)

    def run(self, jobs: Sequence[SweepJob], workdir: Path, done: Done | None = None) -> list[SweepResult]:
        workdir.mkdir(parents=True, exist_ok=True)

        def one(job: SweepJob) -> SweepResult:
            result = self._one(job, workdir)
            if done is not None:
                done(result)
            return result

        with ThreadPoolExecutor(max_workers=max(1, self.parallel)) as pool:
            return list(pool.map(one, jobs))


# name -> a runner class, or "module:attribute" imported on first use: the floor's runner lives
# with the floor-facing code (the planner imports nothing of the live factory).
RUNNERS: dict[str, Callable[[], Runner] | str] = {
    "local": LocalRunner,
    "floor": "aifactory.live.sweep_runner:FloorRunner",
}


def get_runner(name: str) -> Runner:
    return lookup("sweep runner", RUNNERS, name)()


@dataclass(frozen=True, slots=True)
class SweepOutcome:
    """The runs, the fit of all of them, and the held-out check: the largest run predicted from the rest."""

    results: list[SweepResult]
    fit: PowerLawFit
    holdout_fit: PowerLawFit | None
    holdout_error_pct: float | None

    @property
    def compute_decades(self) -> float:
        return math.log10(max(r.compute for r in self.results) / min(r.compute for r in self.results))


def analyse(results: Sequence[SweepResult]) -> SweepOutcome:
    """Fit L(C) to all runs; refit without the largest and report how far off its prediction is (in %)."""
    ordered = sorted(results, key=lambda r: r.compute)
    fit = fit_power_law([r.compute for r in ordered], [r.val_loss for r in ordered])
    if len(ordered) < 5:
        return SweepOutcome(ordered, fit, None, None)
    rest, last = ordered[:-1], ordered[-1]
    held = fit_power_law([r.compute for r in rest], [r.val_loss for r in rest])
    error = abs(held.predict(last.compute) - last.val_loss) / last.val_loss * 100
    return SweepOutcome(ordered, fit, held, error)


def write_csv(results: Sequence[SweepResult], path: Path) -> Path:
    """The runs as a CSV that `aifactory plan fit` reads back."""
    lines = ["name,params,tokens,compute,loss,seconds"]
    lines += [f"{r.name},{r.params},{r.tokens},{r.compute:.6g},{r.val_loss:.6f},{r.seconds:.2f}" for r in results]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def run_sweep(jobs: Sequence[SweepJob], runner: Runner, workdir: Path, done: Done | None = None) -> SweepOutcome:
    return analyse(runner.run(jobs, workdir, done))
