"""The live factory's own history as a twin scenario, so an operator can replay last month.

Reads the store's jobs and event log (`aifactory.live.store.Store`). A job's
duration is the run time of its final attempt (its last `running` event to the
event that ended it), so a job preempted twice replays as the work it finally
did; jobs that never started, or still run, are left out (their run time is not
known). Submit times are seconds from the first submission in the window; the
nodes and projects are those the store holds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aifactory.core.errors import SpecError
from aifactory.core.project import Project
from aifactory.core.states import JobState
from aifactory.twin.traces.format import Scenario, TraceJob

_HOLDING = (JobState.RUNNING, JobState.PREEMPTED)

if TYPE_CHECKING:
    from aifactory.live.store import EventRow, JobRow, Store


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
        spec = row.spec
        out.append(
            TraceJob(
                submit_time=row.submitted_at - t0,
                project=spec.project,
                gpus=spec.gpus,
                duration_s=max(0.0, end - start),
                user=spec.user,
                gpu_model=spec.gpu_model,
                time_limit_s=spec.time_limit_s,
                priority=spec.priority,
                priority_class=spec.priority_class,
                multi_node=spec.multi_node,
            )
        )
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
    projects += [Project(name=name) for name in sorted({j.project for j in jobs} - known)]
    return Scenario("eventlog", jobs, nodes, projects)
