"""First in, first out, per node pool: the head of each queue blocks the rest."""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

from aifactory.core.job import Job
from aifactory.core.policies.base import Plan, SchedulerView, Start


def drain_in_order(view: SchedulerView, ordered: Iterable[Job], plan: Plan) -> None:
    """Start jobs in the given order until one does not fit; that one blocks the rest.

    A job held back by its project's hard limit is passed over (it would block
    everyone for something only its own project can change).
    """
    for job in ordered:
        limit = view.limit_reason(job)
        if limit is not None:
            plan.reasons[job.id] = limit
            continue
        placement = view.try_place(job)
        if placement is None:
            plan.reasons[job.id] = view.why_not(job)
            return
        plan.starts.append(Start(job.id, placement))


class Fifo:
    name: ClassVar[str] = "fifo"
    options: ClassVar[tuple[str, ...]] = ()

    def schedule(self, view: SchedulerView) -> Plan:
        plan = Plan()
        for key in view.queue_keys():
            drain_in_order(view, view.queue(key), plan)
        return plan
