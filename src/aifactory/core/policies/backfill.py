"""EASY backfill: priority order, a reservation for the blocked head, short jobs fill the gaps.

Per pool, jobs go in priority then submission order. The first job that does not
fit gets a reservation: the earliest time enough GPUs free up, from running jobs'
time limits (`reservation.py`), on one node (or over the pool for a gang). Jobs
behind it may start now only if they declare a time limit and either end before
the reservation, or leave it whole: on another node than the reserved one, or
(gang) using no more than the GPUs spare at the reservation time. The head thus
starts no later than it would have without backfill. Only `backfill_depth` jobs
past the head are looked at per pass (Slurm's bf_max_job_test).
"""

from __future__ import annotations

import math
from typing import ClassVar

from aifactory.core.job import Job, Placement
from aifactory.core.policies.base import Plan, SchedulerView, Start
from aifactory.core.reservation import Reservation, reserve


class Backfill:
    name: ClassVar[str] = "backfill"
    options: ClassVar[tuple[str, ...]] = ("backfill_depth",)

    def schedule(self, view: SchedulerView) -> Plan:
        plan = Plan()
        for key in view.queue_keys():
            ordered = sorted(view.queue(key), key=lambda j: (-j.spec.priority, j.id))
            self._pool(view, key, ordered, plan)
        return plan

    def _pool(self, view: SchedulerView, key: str | None, ordered: list[Job], plan: Plan) -> None:
        shadow: Reservation | None = None
        head: Job | None = None
        looked = 0
        for job in ordered:
            limit = view.limit_reason(job)
            if limit is not None:
                plan.reasons[job.id] = limit
                continue
            if shadow is None:
                placement = view.try_place(job)
                if placement is not None:
                    plan.starts.append(Start(job.id, placement))
                    continue
                head = job
                shadow = reserve(job, view.cluster.pool_nodes(key), view.running_in(key), view.now, self._grace(view))
                plan.reasons[job.id] = view.why_not(job)
                if shadow.start < math.inf:
                    plan.estimates[job.id] = shadow.start
                continue
            looked += 1
            if looked > view.settings.backfill_depth:
                break
            shadow = self._backfill(view, job, shadow, head, plan)

    def _backfill(
        self, view: SchedulerView, job: Job, shadow: Reservation, head: Job | None, plan: Plan
    ) -> Reservation:
        limit = job.spec.time_limit_s
        if limit is None:
            plan.reasons[job.id] = f"waiting behind job {head.id if head else '?'} (no time limit: cannot backfill)"
            return shadow
        placement = view.try_place(job)
        if placement is None:
            plan.reasons[job.id] = view.why_not(job)
            return shadow
        if view.now + limit <= shadow.start:
            plan.starts.append(Start(job.id, placement))
            return shadow
        left = self._spares(placement, shadow)
        if left is not None:
            plan.starts.append(Start(job.id, placement))
            return left
        view.unreserve(job)
        plan.reasons[job.id] = f"would delay the reservation of job {head.id if head else '?'}"
        return shadow

    @staticmethod
    def _spares(placement: Placement, shadow: Reservation) -> Reservation | None:
        """The reservation left after this placement outlives it (None: it would break it)."""
        used = sum(len(idx) for name, idx in placement.parts if shadow.node is None or name == shadow.node)
        if used == 0:
            return shadow
        if used <= shadow.extra:
            return Reservation(shadow.start, shadow.node, shadow.extra - used)
        return None

    @staticmethod
    def _grace(view: SchedulerView) -> float:
        return max(view.settings.kill_grace_s, view.settings.preempt_grace_s)
