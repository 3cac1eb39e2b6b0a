"""The pass shared by the preemptive orderings (las, srtf): order, place, preempt the outranked.

Jobs are taken in the policy's order. One that does not fit may preempt running,
preemptible jobs it outranks (`outranks(victim, job)`), at least `min_runtime_s`
old, cheapest work lost first (`reclaim.find_victims`). Once a job waits for room
being freed for it, nothing behind it in the pass may start (it would take that
room); a job that cannot get room even by preemption lets the next ones try.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from aifactory.core.job import Job
from aifactory.core.policies.base import Plan, SchedulerView, Start
from aifactory.core.project import PREEMPTIBLE
from aifactory.core.reclaim import find_victims
from aifactory.core.states import JobState


def preemptive_pass(
    view: SchedulerView,
    key: str | None,
    ordered: Iterable[Job],
    plan: Plan,
    outranks: Callable[[Job, Job], bool],
    label: str,
) -> None:
    now = view.now
    min_run = view.settings.min_runtime_s
    held = view.running_in(key)
    stopping = [j for j in held if j.state is JobState.PREEMPTED or j.stop_reason is not None]
    movable: list[Job] = []
    for j in held:
        if j.state is JobState.RUNNING and j.stop_reason is None and j.spec.priority_class in PREEMPTIBLE:
            if j.started_at is not None and now - j.started_at < min_run:
                wake(plan, key, j.started_at + min_run)
            else:
                movable.append(j)
    for job in ordered:
        limit = view.limit_reason(job)
        if limit is not None:
            plan.reasons[job.id] = limit
            continue
        placement = view.try_place(job)
        if placement is not None:
            plan.starts.append(Start(job.id, placement))
            continue
        plan.reasons[job.id] = view.why_not(job)
        candidates = [v for v in movable if outranks(v, job)]
        found = find_victims(job, view.cluster, key, candidates, stopping, now, lambda _v, _t: True)
        if found is None:
            continue
        for victim in found.jobs:
            plan.preempt.append((victim.id, f"{label}: job {job.id} ranks higher"))
            stopping.append(victim)
            movable.remove(victim)
        waiting = len(found.jobs) or len(stopping)
        plan.reasons[job.id] = f"{label}: waiting for {waiting} preempted job(s) to stop"
        return


def wake(plan: Plan, key: str | None, at: float) -> None:
    current = plan.wakeups.get(key)
    plan.wakeups[key] = at if current is None else min(current, at)
