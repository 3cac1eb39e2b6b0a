"""Find a scenario by name (`philly`, `openb`) or by the path of a trace in our format."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

from aifactory.core.cluster import NodeSpec
from aifactory.core.errors import SpecError, UnknownName
from aifactory.core.project import Project
from aifactory.projects_file import load_floor
from aifactory.twin.traces.format import Scenario, floor_path, read_trace

TRACES = ("philly", "openb")
SUFFIXES = (".csv", ".parquet")


def from_file(path: Path, gpus_per_node: int = 8) -> Scenario:
    """A trace file in our format, on the floor of its floor file (`NAME.floor.yaml`) where one lies
    beside it; else on the fewest `gpus_per_node`-GPU nodes that fit its widest job, with one
    project per name and no quota (size the cluster with a variant's `nodes`)."""
    if gpus_per_node < 1:
        raise SpecError("gpus_per_node", f"must be >= 1, got {gpus_per_node}")
    jobs = read_trace(path)
    floor = floor_path(path)
    if floor.is_file():
        nodes, projects, departments, settings, node_events, job_events = load_floor(floor)
        known = {p.name for p in projects}
        projects += [Project(name=name) for name in sorted({j.spec.project for j in jobs} - known)]
        return Scenario(path.stem, jobs, nodes, projects, departments, settings, node_events, job_events)
    widest = max((j.spec.gpus for j in jobs), default=1.0)
    count = max(1, math.ceil(widest / gpus_per_node))
    nodes = [NodeSpec(name=f"node{i}", gpu_count=gpus_per_node) for i in range(count)]
    projects = [Project(name=name) for name in sorted({j.spec.project for j in jobs})]
    return Scenario(path.stem, jobs, nodes, projects)


def load_scenario(
    trace: str,
    limit: int | None = None,
    gpus_per_node: int = 8,
) -> Scenario:
    """`philly`, `openb` or a .csv/.parquet path (the floor's own history comes as a trace file
    from `aifactory export-trace`)."""
    if trace == "philly":
        from aifactory.twin.traces import philly

        return philly.load(limit=limit)
    if trace == "openb":
        from aifactory.twin.traces import openb

        return openb.load(limit=limit)
    if Path(trace).suffix in SUFFIXES:
        scenario = from_file(Path(trace), gpus_per_node)
    else:
        raise UnknownName("trace", trace, [*TRACES, "PATH.csv", "PATH.parquet"])
    if limit is not None:
        scenario.jobs = scenario.jobs[:limit]
    return scenario


def parse_when(text: str, field: str) -> float:
    """Epoch seconds from a number or an ISO date/time (UTC unless it says otherwise)."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise SpecError(field, f"{text!r} is neither epoch seconds nor an ISO date") from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
