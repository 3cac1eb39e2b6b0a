"""The live factory's own history as a twin scenario, so an operator can replay last month.

Reads the store's jobs and event log (`aifactory.live.store.Store`); `export` writes them as a
trace file with its floor file beside it (`aifactory export-trace`), which the twin reads like
any trace. Each job keeps its whole spec (`for_replay`: less what ran it here). A job's
duration is the run time of its final attempt (its last `running` event to the
event that ended it), so a job preempted twice replays as the work it finally
did; jobs that never started, or still run, are left out (their run time is not
known). Submit times are seconds from the first submission in the window; the
nodes and projects are those the store holds.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from aifactory.core.errors import SpecError
from aifactory.core.project import Project
from aifactory.core.states import JobState
from aifactory.live.store import EventRow, JobRow, Store
from aifactory.projects_file import write_floor
from aifactory.twin.traces.format import Scenario, TraceJob, floor_path, for_replay, write_trace

_HOLDING = (JobState.RUNNING, JobState.PREEMPTED)


def final_runs(events: list[EventRow]) -> dict[int, tuple[float, float]]:
    """job id -> (start, end) of its last attempt that ended (events in log order)."""
    started: dict[int, float] = {}
    out: dict[int, tuple[float, float]] = {}
    for ev in events:
        if ev.new is JobState.RUNNING:
            started[ev.job_id] = ev.at
        elif ev.job_id in started and ev.old in _HOLDING and ev.new is not JobState.PREEMPTED:
            out[ev.job_id] = (started.pop(ev.job_id), ev.at)  # the attempt's process has exited
    return out


def jobs_from(rows: list[JobRow], events: list[EventRow]) -> list[TraceJob]:
    """Trace jobs from stored job rows and their events, in submission order."""
    runs = final_runs(events)
    kept = sorted((r for r in rows if r.id in runs), key=lambda r: (r.submitted_at, r.id))
    if not kept:
        return []
    t0 = kept[0].submitted_at
    out = []
    for row in kept:
        start, end = runs[row.id]
        spec = replace(for_replay(row.spec), duration_s=max(0.0, end - start))
        out.append(TraceJob(row.submitted_at - t0, spec))
    return out


def load(store: Store, since: float | None = None, until: float | None = None) -> Scenario:
    """The store's jobs submitted in [since, until) with its nodes and projects."""
    rows = [
        r
        for r in store.list_jobs()
        if (since is None or r.submitted_at >= since) and (until is None or r.submitted_at < until)
    ]
    events = store.events(since=since)
    jobs = jobs_from(rows, events)
    nodes = store.load_nodes()
    if not nodes:
        raise SpecError("store", f"{store.url}: the store holds no nodes to replay on")
    projects = store.load_projects()
    known = {p.name for p in projects}
    projects += [Project(name=name) for name in sorted({j.spec.project for j in jobs} - known)]
    return Scenario("eventlog", jobs, nodes, projects, store.load_departments())


def open_and_load(url: str, since: float | None = None, until: float | None = None) -> Scenario:
    """`load` from the store at `url`, which must exist (opening a missing SQLite file would create it)."""
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        raise SpecError("store", f"no live store at {url} (opening it would create an empty one)")
    with Store(url) as store:
        return load(store, since, until)


def export(scenario: Scenario, out: Path) -> tuple[Path, Path]:
    """Write the scenario's jobs to `out` (.csv or .parquet) and its floor beside it."""
    if out.suffix not in (".csv", ".parquet"):
        raise SpecError("out", f"{out}: the name must end in .csv or .parquet")
    write_trace(scenario.jobs, out)
    floor = write_floor(floor_path(out), scenario.nodes, scenario.projects, scenario.departments)
    return out, floor
