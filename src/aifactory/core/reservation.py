"""When will a waiting job fit? From running jobs' time limits (EASY backfill's shadow time).

A running job is assumed to end at `started_at + time_limit_s` (its limit is enforced);
one without a limit never ends as far as this estimate knows. A job already stopping
(preempted or killed) ends within its grace period.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from aifactory.core.cluster import Node
from aifactory.core.job import MILLI, Job
from aifactory.core.placement import eligible
from aifactory.core.states import JobState


@dataclass(frozen=True, slots=True)
class Reservation:
    start: float  # earliest time the job fits (math.inf: unknown)
    node: str | None  # the node it will use (None: a multi-node gang, counted over the pool)
    extra: int  # whole GPUs free at `start` beyond what the job needs (multi-node) or on its node


def end_of(job: Job, now: float, grace_s: float) -> float:
    if job.state is JobState.PREEMPTED or job.stop_reason is not None:
        return now + grace_s
    if job.spec.time_limit_s is None or job.started_at is None:
        return math.inf
    return max(now, job.started_at + job.spec.time_limit_s)


def reserve(job: Job, nodes: Sequence[Node], running: Iterable[Job], now: float, grace_s: float) -> Reservation:
    """The earliest time `job` (whole GPUs) fits, counting only whole GPUs that free up."""
    need = max(job.spec.whole_gpus, 1)
    ok = {n.name: n for n in nodes if eligible(job.spec, n)}
    frees: dict[str, list[tuple[float, int]]] = {}  # node -> (end time, whole GPUs it frees)
    for other in running:
        if other.placement is None or other.placement.milli != MILLI:
            continue
        end = end_of(other, now, grace_s)
        for name, idx in other.placement.parts:
            if name in ok and end < math.inf:
                frees.setdefault(name, []).append((end, len(idx)))
    if job.spec.multi_node:
        events = sorted(e for evs in frees.values() for e in evs)
        free = sum(n.free_whole for n in ok.values())
        return _walk(free, need, events, now, None)
    best = Reservation(math.inf, None, 0)
    for name, node in ok.items():
        if node.gpu_count < need:
            continue
        found = _walk(node.free_whole, need, sorted(frees.get(name, [])), now, name)
        if found.start < best.start:
            best = found
    return best


def _walk(free: int, need: int, events: list[tuple[float, int]], now: float, node: str | None) -> Reservation:
    at = now
    for end, gpus in events:
        if free >= need:
            break
        free += gpus
        at = end
    if free < need:
        return Reservation(math.inf, node, 0)
    return Reservation(at, node, free - need)
