"""Microsoft Philly (2017) as a twin scenario.

The 11 virtual clusters (VCs) become 11 projects; each owns a node pool of its
`node num` x 8 GPUs and a guaranteed quota of that size. Jobs are those submitted
in the study window whose VC is one of the 11 (68,503 in the default window);
jobs wider than one 8-GPU node are multi-node gangs.
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path

from aifactory.core.cluster import NodeSpec
from aifactory.core.errors import SpecError
from aifactory.core.project import Project
from aifactory.twin.traces.format import Scenario, TraceJob, trace_job

GPUS_PER_NODE = 8
WINDOW = ("2017-10-01 00:00:00", "2017-11-30 23:59:59")


def default_dir() -> Path:
    """`../shared/data/traces/philly` next to the repository (where the data lives)."""
    return Path(__file__).resolve().parents[5] / "shared" / "data" / "traces" / "philly"


def read_vcs(path: Path) -> dict[str, int]:
    """VC name -> node count, in file order."""
    if not path.is_file():
        raise SpecError("trace", f"Philly VC list not found: {path}")
    out: dict[str, int] = {}
    with path.open(newline="") as fh:
        for i, rec in enumerate(csv.DictReader(fh), start=1):
            try:
                out[rec["vc"]] = int(rec["node num"])
            except (KeyError, ValueError):
                raise SpecError("node num", f"{path} row {i}: bad VC row {rec}") from None
    return out


def _epoch(stamp: str) -> float:
    """Seconds since the epoch of a Philly stamp, read as UTC (no local-time DST shifts)."""
    return datetime.fromisoformat(stamp).replace(tzinfo=UTC).timestamp()


def read_jobs(path: Path, vcs: dict[str, int], window: tuple[str, str] = WINDOW) -> list[TraceJob]:
    """Jobs of the known VCs submitted in `window`, in submission order (file order on ties)."""
    if not path.is_file():
        raise SpecError("trace", f"Philly job list not found: {path}")
    start, end = window
    t0 = _epoch(start)
    rows: list[tuple[str, float, int, str]] = []
    with path.open(newline="") as fh:
        for i, rec in enumerate(csv.DictReader(fh), start=1):
            stamp = rec["timestamp"]
            # Fixed-width `YYYY-MM-DD HH:MM:SS` stamps compare correctly as strings.
            if not start <= stamp <= end or rec["cluster"] not in vcs:
                continue
            try:
                rows.append((stamp, float(rec["duration"]), int(float(rec["num_gpus"])), rec["cluster"]))
            except ValueError:
                raise SpecError("duration", f"{path} row {i}: bad number in {rec}") from None
    rows.sort(key=lambda r: r[0])
    cache: dict[str, float] = {}
    jobs = []
    for stamp, duration, gpus, vc in rows:
        at = cache.get(stamp)
        if at is None:
            at = cache[stamp] = _epoch(stamp) - t0
        jobs.append(trace_job(at, vc, float(gpus), duration, multi_node=gpus > GPUS_PER_NODE))
    return jobs


def load(directory: Path | None = None, window: tuple[str, str] = WINDOW, limit: int | None = None) -> Scenario:
    """The Philly scenario: 352 nodes (2,816 GPUs) in 11 pools, 11 projects, the window's jobs."""
    directory = directory or default_dir()
    vcs = read_vcs(directory / "philly_vc.csv")
    jobs = read_jobs(directory / "philly.csv", vcs, window)
    if limit is not None:
        jobs = jobs[:limit]
    nodes = [
        NodeSpec(name=f"{vc}-{i}", gpu_count=GPUS_PER_NODE, pool=vc) for vc, count in vcs.items() for i in range(count)
    ]
    projects = [Project(name=vc, quota=float(count * GPUS_PER_NODE), pool=vc) for vc, count in vcs.items()]
    return Scenario("philly", jobs, nodes, projects)
