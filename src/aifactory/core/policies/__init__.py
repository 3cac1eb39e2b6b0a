"""Scheduling policies, one module each, found by name."""

from __future__ import annotations

from collections.abc import Callable

from aifactory.core.errors import UnknownName
from aifactory.core.policies.backfill import Backfill
from aifactory.core.policies.base import Plan, Policy, SchedulerView, Start
from aifactory.core.policies.fairshare import FairShare
from aifactory.core.policies.fifo import Fifo
from aifactory.core.policies.las import Las
from aifactory.core.policies.priority import PriorityPolicy
from aifactory.core.policies.srtf import Srtf

POLICIES: dict[str, Callable[[], Policy]] = {
    Fifo.name: Fifo,
    FairShare.name: FairShare,
    Las.name: Las,
    Srtf.name: Srtf,
    Backfill.name: Backfill,
    PriorityPolicy.name: PriorityPolicy,
}


def register_policy(name: str, factory: Callable[[], Policy]) -> None:
    POLICIES[name] = factory


def get_policy(name: str) -> Policy:
    try:
        return POLICIES[name]()
    except KeyError:
        raise UnknownName("policy", name, POLICIES) from None


__all__ = ["POLICIES", "Plan", "Policy", "SchedulerView", "Start", "get_policy", "register_policy"]
