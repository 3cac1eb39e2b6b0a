"""Shortest remaining time first (an oracle: it needs `spec.duration_s`, which the twin knows).

Remaining = duration - work done in earlier attempts - time in the current one;
jobs with no known duration come last, in submission order. A waiting job preempts
running jobs with strictly more remaining time. A running job's remaining time only
falls and a preempted one's stays put, so a victim never outranks its preemptor: no
cycles.
"""

from __future__ import annotations

import math
from typing import ClassVar

from aifactory.core.job import Job
from aifactory.core.policies.base import Plan, SchedulerView
from aifactory.core.policies.preemptive import preemptive_pass
from aifactory.core.states import JobState


def remaining(job: Job, now: float) -> float:
    if job.spec.duration_s is None:
        return math.inf
    done = job.done_s
    if job.state is JobState.RUNNING and job.started_at is not None:
        done += now - job.started_at
    return max(0.0, job.spec.duration_s - done)


class Srtf:
    name: ClassVar[str] = "srtf"
    options: ClassVar[tuple[str, ...]] = ("min_runtime_s", "preempt_grace_s")

    def schedule(self, view: SchedulerView) -> Plan:
        plan = Plan()
        now = view.now
        for key in view.queue_keys():
            ordered = sorted(view.queue(key), key=lambda j: (remaining(j, now), j.id))
            preemptive_pass(view, key, ordered, plan, lambda v, j: remaining(v, now) > remaining(j, now), "srtf")
        return plan
