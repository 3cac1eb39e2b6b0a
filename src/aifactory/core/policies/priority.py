"""Strict priority: higher `priority` first, FIFO among equals, per node pool."""

from __future__ import annotations

from typing import ClassVar

from aifactory.core.policies.base import Plan, SchedulerView
from aifactory.core.policies.fifo import drain_in_order


class PriorityPolicy:
    name: ClassVar[str] = "priority"
    options: ClassVar[tuple[str, ...]] = ()

    def schedule(self, view: SchedulerView) -> Plan:
        plan = Plan()
        for key in view.queue_keys():
            ordered = sorted(view.queue(key), key=lambda j: (-j.spec.priority, j.id))
            drain_in_order(view, ordered, plan)
        return plan
