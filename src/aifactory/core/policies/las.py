"""Tiresias-style discretised least attained service (LAS), preemptive.

Attained service = GPU-seconds a job has had (all attempts). The thresholds in
`FactorySettings.las_thresholds_gpu_s` cut it into priority queues: a job that has
had little service sits in queue 0 and goes first; one that crossed k thresholds sits
in queue k. Within a queue, first come first served. A waiting job may preempt jobs
in a lower queue (more service); thresholds are finite, so a pair can swap only as
often as one of them crosses a threshold: no endless ping-pong. A running job's next
demotion is a timer (`Factory.next_wakeup`).
"""

from __future__ import annotations

import bisect
import math
from typing import ClassVar

from aifactory.core.job import Job
from aifactory.core.policies.base import Plan, SchedulerView
from aifactory.core.policies.preemptive import preemptive_pass, wake
from aifactory.core.states import JobState


def attained(job: Job, now: float) -> float:
    """GPU-seconds of service so far (the running attempt included)."""
    seconds = job.done_s
    if job.state is JobState.RUNNING and job.started_at is not None:
        seconds += now - job.started_at
    return seconds * job.demand


class Las:
    name: ClassVar[str] = "las"
    options: ClassVar[tuple[str, ...]] = ("las_thresholds_gpu_s", "min_runtime_s", "preempt_grace_s")

    def schedule(self, view: SchedulerView) -> Plan:
        plan = Plan()
        limits = view.settings.las_thresholds_gpu_s
        now = view.now

        def queue(job: Job) -> int:
            return bisect.bisect_right(limits, attained(job, now))

        for key in view.queue_keys():
            ordered = sorted(view.queue(key), key=lambda j: (queue(j), -j.spec.priority, j.queued_at, j.id))
            preemptive_pass(view, key, ordered, plan, lambda v, j: queue(v) > queue(j), "las")
            for job in view.running_in(key):
                at = self._demotion(job, now, limits)
                if at < math.inf:
                    wake(plan, key, at)
        return plan

    @staticmethod
    def _demotion(job: Job, now: float, limits: tuple[float, ...]) -> float:
        """When a running job crosses its next threshold (inf: never, or not running)."""
        if job.state is not JobState.RUNNING or job.demand <= 0:
            return math.inf
        got = attained(job, now)
        nxt = bisect.bisect_right(limits, got)
        if nxt >= len(limits):
            return math.inf
        return now + (limits[nxt] - got) / job.demand
