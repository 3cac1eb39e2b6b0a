"""How many GPUs to buy, in one command: cluster sizes as a list or a range, arrivals that grow,
why jobs were refused, and the smallest size that meets a wait target.

- `expand_nodes(["300,350", "200..400:50", "+32"])`: every size named (a list item may be a
  range `FROM..TO:STEP` of node counts, or any single form `resize` takes), in order, once each.
- `grow(scenario, factor, period_s)`: the arrival rate multiplied by `factor` every `period_s`
  (training compute has doubled about every six months): each job at time t is submitted
  `factor ** (t / period_s)` times on average, the fraction decided by a seeded draw, so a replay
  is repeatable. The copies are new rows; the trace's own jobs keep their ids.
- `rejection_reasons(result)`: the refused jobs grouped by why (the core's message with the
  job's own numbers taken out), with one example each.
- `parse_target("p95<1h")` and `smallest_meeting(results, target)`.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from aifactory.core.errors import SpecError
from aifactory.twin.replay import RunResult
from aifactory.twin.traces.format import Scenario

_RANGE = re.compile(r"^(\d+)\.\.(\d+)(?::(\d+))?$")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|min|m|h|d|w|mo|y)$")
UNITS_S = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "mo": 30.44 * 86400, "y": 365.25 * 86400}
_TARGET = re.compile(r"^(mean|p50|p95|p99)\s*<\s*(\S+)$")
MAX_SIZES = 200  # sizes in one command: each is a whole replay


def expand_nodes(items: Sequence[str]) -> list[str]:
    """The sizes named by `--nodes` (repeatable; each a comma list of sizes or ranges)."""
    from aifactory.twin.whatif import parse_nodes

    out: list[str] = []
    for item in items:
        for part in (p.strip() for p in item.split(",")):
            if not part:
                raise SpecError("nodes", f"{item!r}: an empty size")
            match = _RANGE.match(part)
            if match is None:
                parse_nodes(part)  # raises for a malformed size
                sizes = [part]
            else:
                start, stop, step = int(match.group(1)), int(match.group(2)), int(match.group(3) or 1)
                if step < 1 or stop < start:
                    raise SpecError("nodes", f"{part!r}: expected FROM..TO[:STEP] with FROM <= TO and STEP >= 1")
                sizes = [str(n) for n in range(start, stop + 1, step)]
            for size in sizes:
                if size not in out:
                    out.append(size)
            if len(out) > MAX_SIZES:
                raise SpecError("nodes", f"more than {MAX_SIZES} sizes: each is a whole replay")
    return out


def parse_duration(text: str, field: str) -> float:
    """`180d`, `6mo`, `1h`, `30min` (or `30m`) -> seconds."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise SpecError(field, f"{text!r}: expected a duration like 90s, 30min, 1h, 180d, 6mo, 1y")
    return float(match.group(1)) * UNITS_S[match.group(2)]


def parse_growth(text: str) -> tuple[float, float]:
    """`2x/180d` -> (2.0, 180 days in s): the arrival rate's factor and the time it takes."""
    factor_text, sep, period_text = text.partition("/")
    try:
        factor = float(factor_text.strip().removesuffix("x"))
    except ValueError:
        factor = math.nan
    if not sep or not (math.isfinite(factor) and factor > 0):
        raise SpecError("growth", f"{text!r}: expected FACTORx/PERIOD, e.g. 2x/180d (doubling every 180 days)")
    period = parse_duration(period_text.strip(), "growth")
    if period <= 0:
        raise SpecError("growth", f"{text!r}: the period must be longer than 0")
    return factor, period


def grow(scenario: Scenario, factor: float, period_s: float, seed: int = 0) -> Scenario:
    """`scenario` with its arrival rate multiplied by `factor` every `period_s` (see the module)."""
    if factor == 1.0 or not scenario.jobs:
        return scenario
    start = min(j.submit_time for j in scenario.jobs)
    rng = np.random.default_rng(seed)
    if factor < 1:  # a shrinking rate keeps each job with probability rate (seeded)
        keep = [j for j in scenario.jobs if rng.random() < factor ** ((j.submit_time - start) / period_s)]
        return replace(scenario, jobs=keep, job_events=[])
    extra = []
    for job in scenario.jobs:
        rate = factor ** ((job.submit_time - start) / period_s)
        copies = int(rate) - 1 + int(rng.random() < rate - int(rate))
        extra += [job] * copies  # the same row again: same project, size and run time
    return replace(scenario, jobs=[*scenario.jobs, *extra])


@dataclass(frozen=True, slots=True)
class Reason:
    reason: str  # the core's message with the job's numbers taken out
    count: int
    example: str  # one message in full


def rejection_reasons(result: RunResult) -> list[Reason]:
    """Refused jobs grouped by why, most first."""
    shapes: Counter[str] = Counter()
    example: dict[str, str] = {}
    for message in result.rejected.values():
        shape = re.sub(r"\d+(\.\d+)?", "N", message)
        shapes[shape] += 1
        example.setdefault(shape, message)
    return [Reason(shape, n, example[shape]) for shape, n in shapes.most_common()]


@dataclass(frozen=True, slots=True)
class Target:
    stat: str  # mean, p50, p95, p99
    limit_s: float

    @property
    def key(self) -> str:
        return f"first_wait_s_{self.stat}"

    @property
    def text(self) -> str:
        from aifactory.twin.metrics import duration_text

        return f"{self.stat} wait < {duration_text(self.limit_s)}"


def parse_target(text: str) -> Target:
    match = _TARGET.match(text.strip())
    if match is None:
        raise SpecError("target-wait", f"{text!r}: expected STAT<DURATION, e.g. p95<1h (STAT: mean, p50, p95, p99)")
    return Target(match.group(1), parse_duration(match.group(2), "target-wait"))


def smallest_meeting(results: Sequence[RunResult], target: Target) -> RunResult | None:
    """The replay with the fewest GPUs whose wait meets `target` and that refused no job; None if none."""
    ok = [
        r
        for r in results
        if r.summary.get("rejected", 0) == 0
        and isinstance(r.summary.get(target.key), int | float)
        and r.summary[target.key] < target.limit_s
    ]
    return min(ok, key=lambda r: r.recorder.total_gpus, default=None)
