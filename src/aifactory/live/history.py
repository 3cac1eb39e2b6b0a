"""The live factory's own history as a twin scenario, so an operator can replay last month.

Reads the store's jobs and event log (`aifactory.live.store.Store`); `export` writes them as a
trace file with its floor file beside it (`aifactory export-trace`), which the twin reads like
any trace. Each job keeps its whole spec (`for_replay`: less what ran it here). A job's
duration is the time its processes ran, summed over its attempts: the twin keeps a preempted
job's work (it checkpoints when stopped), so replaying the floor under its own settings runs
each attempt as long as it ran. (A job that restarts from scratch after a preemption did that
much work once; under another policy that never preempts it, the replay over-states it by the
work it lost.) Jobs that never started, or still run, are left out (their run time is not
known). Submit times are seconds from the first submission in the window; the
nodes and projects are those the store holds.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

from aifactory.core.errors import SpecError
from aifactory.core.events import GpuIdle, JobEvent, NodeEvent
from aifactory.core.project import Project
from aifactory.core.settings import FactorySettings
from aifactory.core.states import JobState
from aifactory.live.store import EventRow, JobRow, NodeEventRow, Store
from aifactory.projects_file import core_settings, write_floor
from aifactory.twin.traces.format import Scenario, TraceJob, floor_path, for_replay, write_trace

_HOLDING = (JobState.RUNNING, JobState.PREEMPTED)
SETTINGS_META = "core_settings"  # the store's meta key: the core settings the floor last started with


def save_settings(store: Store, settings: FactorySettings) -> None:
    """Remember the core settings the floor schedules with, so its history replays under them."""
    store.set_meta(SETTINGS_META, json.dumps(asdict(settings)))


def run_times(events: list[EventRow]) -> dict[int, float]:
    """job id -> seconds its processes ran, summed over its attempts, for jobs none of whose
    attempts still runs (events in log order). An attempt runs from `running` to the event that
    says its process exited (a preempted job's exit is its move back to `queued`)."""
    started: dict[int, float] = {}
    out: dict[int, float] = {}
    for ev in events:
        if ev.new is JobState.RUNNING and ev.old is not JobState.RUNNING:  # (running -> running: a note)
            started[ev.job_id] = ev.at
        elif ev.job_id in started and ev.old in _HOLDING and ev.new is not JobState.PREEMPTED:
            out[ev.job_id] = out.get(ev.job_id, 0.0) + ev.at - started.pop(ev.job_id)
    for job_id in started:  # still running: its work is not known yet
        out.pop(job_id, None)
    return out


def jobs_from(rows: list[JobRow], events: list[EventRow]) -> tuple[list[TraceJob], float, dict[int, int]]:
    """Trace jobs from stored job rows and their events, in submission order, the time their
    clock starts from (the first one's submission), and each kept job's row."""
    runs = run_times(events)
    kept = sorted((r for r in rows if r.id in runs), key=lambda r: (r.submitted_at, r.id))
    if not kept:
        return [], 0.0, {}
    t0 = kept[0].submitted_at
    row_of = {r.id: k for k, r in enumerate(kept)}  # a trace names jobs by row
    jobs = []
    for r in kept:
        # A dependency on a job the trace does not hold (never started, or outside the window) is
        # taken as met: it is left out. An array element names its first element's row.
        after = tuple((row_of[d], kind) for d, kind in r.spec.after if d in row_of)
        array_id = row_of.get(r.spec.array_id) if r.spec.array_id is not None else None
        spec = replace(for_replay(r.spec), duration_s=max(0.0, runs[r.id]), after=after, array_id=array_id)
        if array_id is None:
            spec = replace(spec, array_index=None, array_cap=None)
        jobs.append(TraceJob(r.submitted_at - t0, spec))
    return jobs, t0, row_of


def node_events_from(rows: list[NodeEventRow], t0: float) -> list[tuple[float, NodeEvent]]:
    """The node events on the jobs' clock; those before the first job at 0, in order (the state
    the nodes were in when the window opened)."""
    return [(max(0.0, r.at - t0), r.event) for r in rows]


def load(store: Store, since: float | None = None, until: float | None = None) -> Scenario:
    """The store's jobs submitted in [since, until) with its nodes and projects."""
    rows = [
        r
        for r in store.list_jobs()
        if (since is None or r.submitted_at >= since) and (until is None or r.submitted_at < until)
    ]
    events = store.events(since=since)
    jobs, t0, row_of = jobs_from(rows, events)
    nodes = store.load_nodes()
    if not nodes:
        raise SpecError("store", f"{store.url}: the store holds no nodes to replay on")
    projects = store.load_projects()
    known = {p.name for p in projects}
    projects += [Project(name=name) for name in sorted({j.spec.project for j in jobs} - known)]
    saved = store.get_meta(SETTINGS_META)
    settings = core_settings(json.loads(saved), "store.settings") if saved else None
    node_events = node_events_from(store.node_events(until=until), t0) if jobs else []
    job_events = job_events_from(store.job_events(until=until), t0, row_of)
    return Scenario("eventlog", jobs, nodes, projects, store.load_departments(), settings, node_events, job_events)


def job_events_from(
    rows: list[tuple[float, JobEvent]], t0: float, row_of: dict[int, int]
) -> list[tuple[float, JobEvent]]:
    """The holds, updates, requeues and idle GPUs of the trace's jobs, on its clock, naming rows
    (the events of jobs the trace does not hold are left out)."""
    out: list[tuple[float, JobEvent]] = []
    for at, event in rows:
        if event.job_id not in row_of:
            continue
        moved = replace(event, job_id=row_of[event.job_id])
        if isinstance(moved, GpuIdle) and moved.since is not None:
            moved = replace(moved, since=max(0.0, moved.since - t0))
        out.append((max(0.0, at - t0), moved))
    return out


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
    floor = write_floor(
        floor_path(out),
        scenario.nodes,
        scenario.projects,
        scenario.departments,
        scenario.settings,
        scenario.node_events,
        scenario.job_events,
    )
    return out, floor
