"""A tiny virtual-clock driver for property tests: jobs run for their duration, stop 1 s after a signal."""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from aifactory.core import Factory, Finished, JobSpec, Kill, Launch, Preempt, Submit, Tick
from aifactory.core.actions import Action
from aifactory.core.job import MILLI

STOP_S = 1.0  # a signalled process exits this long after the signal


@dataclass
class Trace:
    actions: list[tuple[float, Action]] = field(default_factory=list)
    steps: int = 0


def check_allocation(f: Factory) -> None:
    """Invariant 1: no GPU gives out more than it has, and the map agrees with the jobs and usage."""
    held: dict[int, int] = {}
    for node in f.cluster:
        for g, holders in enumerate(node.holders):
            assert sum(holders.values()) + node.free[g] == MILLI
            assert node.free[g] >= 0
            for job_id, milli in holders.items():
                held[job_id] = held.get(job_id, 0) + milli
        assert node.free_whole == sum(1 for x in node.free if x == MILLI)
    assert set(held) == set(f.running)
    for job_id, job in f.running.items():
        assert job.placement is not None and held[job_id] == job.placement.milli * job.placement.gpu_count
    for name in f.projects:
        expect = sum(j.placement.gpus for j in f.running.values() if j.spec.project == name and j.placement)
        assert abs(f.usage.get(name, 0.0) - expect) < 1e-9


def simulate(
    f: Factory,
    arrivals: list[tuple[float, int, JobSpec]],
    durations: dict[int, float],
    max_steps: int = 4000,
    check: bool = True,
    on_actions=None,  # type: ignore[no-untyped-def]
) -> Trace:
    trace = Trace()
    heap: list[tuple[float, int, str, int, int]] = []  # (time, seq, kind, job id, attempt)
    seq = 0
    for t, job_id, _ in arrivals:
        heap.append((t, seq, "submit", job_id, 0))
        seq += 1
    specs = {job_id: s for _, job_id, s in arrivals}
    heapq.heapify(heap)
    while trace.steps < max_steps:
        wake = f.next_wakeup()
        if not heap and wake is None:
            break
        if heap and (wake is None or heap[0][0] <= wake):
            now, _, kind, job_id, attempt = heapq.heappop(heap)
            if kind == "submit":
                event = Submit(job_id, specs[job_id])
            else:
                job = f.jobs[job_id]
                if job.attempts != attempt or job_id not in f.running:
                    continue
                event = Finished(job_id, 0 if kind == "done" else -15)
        else:
            now, event = wake, Tick()  # type: ignore[assignment]
        before = dict(f.usage)
        acts = f.handle(event, now)
        trace.steps += 1
        if on_actions is not None:
            on_actions(f, before, acts, now)
        for a in acts:
            trace.actions.append((now, a))
            if isinstance(a, Launch):
                job = f.jobs[a.job_id]
                left = max(0.5, durations[a.job_id] - job.done_s)
                heapq.heappush(heap, (now + left, seq, "done", a.job_id, job.attempts))
                seq += 1
            elif isinstance(a, Preempt | Kill):
                heapq.heappush(heap, (now + STOP_S, seq, "stop", a.job_id, f.jobs[a.job_id].attempts))
                seq += 1
        if check:
            check_allocation(f)
    return trace
