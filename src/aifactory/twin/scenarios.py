"""Find a scenario by name (`philly`, `openb`, `eventlog`) or by the path of a trace in our format."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

from aifactory.core.cluster import Node
from aifactory.core.errors import SpecError, UnknownName
from aifactory.core.project import Project
from aifactory.twin.traces.format import Scenario, read_trace

TRACES = ("philly", "openb", "eventlog")
SUFFIXES = (".csv", ".parquet")


def from_file(path: Path, gpus_per_node: int = 8) -> Scenario:
    """A trace file in our format, on the fewest `gpus_per_node`-GPU nodes that fit its widest job.

    Use a variant's `nodes` ("N") to size the cluster; projects come from the trace, with no quota.
    """
    if gpus_per_node < 1:
        raise SpecError("gpus_per_node", f"must be >= 1, got {gpus_per_node}")
    jobs = read_trace(path)
    widest = max((j.gpus for j in jobs), default=1.0)
    count = max(1, math.ceil(widest / gpus_per_node))
    nodes = [Node(name=f"node{i}", gpu_count=gpus_per_node) for i in range(count)]
    projects = [Project(name=name) for name in sorted({j.project for j in jobs})]
    return Scenario(path.stem, jobs, nodes, projects)


def load_scenario(
    trace: str,
    limit: int | None = None,
    store_url: str | None = None,
    gpus_per_node: int = 8,
    window: tuple[float | None, float | None] = (None, None),
) -> Scenario:
    """`philly`, `openb`, `eventlog` (the live store at `store_url`, jobs submitted in
    `window` = [since, until) epoch seconds) or a .csv/.parquet path."""
    if trace == "philly":
        from aifactory.twin.traces import philly

        return philly.load(limit=limit)
    if trace == "openb":
        from aifactory.twin.traces import openb

        return openb.load(limit=limit)
    if trace == "eventlog":
        scenario = _eventlog(store_url, window)
    elif Path(trace).suffix in SUFFIXES:
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


def _eventlog(store_url: str | None, window: tuple[float | None, float | None]) -> Scenario:
    from aifactory.live.settings import LiveSettings
    from aifactory.live.store import Store
    from aifactory.twin.traces import eventlog

    url = store_url or LiveSettings().database_url
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        raise SpecError("store", f"no live store at {url} (opening it would create an empty one)")
    with Store(url) as store:
        return eventlog.load(store, *window)
