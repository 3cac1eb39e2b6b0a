"""The core's Driver on a tiny virtual clock for property tests: jobs run for their duration, stop 1 s after a signal."""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import count

from aifactory.core import Event, Factory, Finished, JobSpec, Kill, Launch, Preempt, Submit, Tick
from aifactory.core.actions import Action
from aifactory.core.driver import Driver
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


class SimExecutor:
    """Jobs end `durations[id]` (less work done before) after launch, or STOP_S after a signal."""

    def __init__(self, f: Factory, durations: dict[int, float], push: Callable[[float, str, int], None]) -> None:
        self.f, self.durations, self.push = f, durations, push

    def launch(self, a: Launch) -> None:
        job = self.f.jobs[a.job_id]
        self.push(max(0.5, self.durations[a.job_id] - job.done_s), "done", a.job_id)

    def kill(self, a: Kill) -> None:
        self.push(STOP_S, "stop", a.job_id)

    def preempt(self, a: Preempt) -> None:
        self.push(STOP_S, "stop", a.job_id)


def simulate(
    f: Factory,
    arrivals: list[tuple[float, int, JobSpec]],
    durations: dict[int, float],
    max_steps: int = 4000,
    check: bool = True,
    on_actions: Callable[[Factory, dict[str, float], list[Action], float], None] | None = None,
) -> Trace:
    """Run `f` through the core's Driver on a virtual clock; `on_actions` sees each event's actions
    (with the usage before it) before they are carried out."""
    trace = Trace()
    heap: list[tuple[float, int, str, int, int]] = []  # (time, seq, kind, job id, attempt)
    seq = count()
    now = 0.0

    def after(delay: float, kind: str, job_id: int) -> None:
        heapq.heappush(heap, (now + delay, next(seq), kind, job_id, f.jobs[job_id].attempts))

    def alarm(at: float) -> None:
        heapq.heappush(heap, (max(at, now), next(seq), "tick", -1, 0))

    driver = Driver(f, lambda: now, SimExecutor(f, durations, after), alarm)
    for t, job_id, _ in arrivals:
        heap.append((t, next(seq), "submit", job_id, 0))
    specs = {job_id: s for _, job_id, s in arrivals}
    heapq.heapify(heap)
    while heap and trace.steps < max_steps:
        now, _, kind, job_id, attempt = heapq.heappop(heap)
        if kind == "tick":
            driver.fired(now)
            event: Event = Tick()
        elif kind == "submit":
            event = Submit(job_id, specs[job_id])
        else:
            job = f.jobs[job_id]
            if job.attempts != attempt or job_id not in f.running:
                continue
            event = Finished(job_id, 0 if kind == "done" else -15)
        before = dict(f.usage)
        acts = driver.decide(event)
        trace.steps += 1
        if on_actions is not None:
            on_actions(f, before, acts, now)
        trace.actions += [(now, a) for a in acts]
        driver.commit(acts)
        if check:
            check_allocation(f)
    return trace
