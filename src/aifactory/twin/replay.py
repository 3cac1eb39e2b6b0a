"""Replay a scenario on the twin: the live Factory, a virtual clock, a simulated executor.

Nothing here decides anything: trace arrivals become `Submit` events, the Factory's
actions go to the SimExecutor (Launch/Kill/Preempt) and the Recorder (StateChanged),
exits come back as `Finished`, and a `Tick` is scheduled at `factory.next_wakeup()`.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from aifactory.core.cluster import Cluster
from aifactory.core.driver import Driver
from aifactory.core.errors import InvalidTransition, NotFound, SpecError
from aifactory.core.events import JobEvent, NodeEvent, NodeJoined, NodeState, Submit, Tick
from aifactory.core.factory import Factory, FactorySettings
from aifactory.core.job import JobSpec
from aifactory.twin.executor import ExecutorSettings, SimExecutor
from aifactory.twin.kernel import JOB, NODE, SAMPLE, SUBMIT, TICK, Kernel
from aifactory.twin.metrics import Recorder, Samples, sample, summarize
from aifactory.twin.power import PowerMeter, PowerSpec
from aifactory.twin.poweroff import PowerManager
from aifactory.twin.traces.format import CostModel, Scenario, TraceJob

Progress = Callable[[int, int], None]  # (jobs submitted so far, jobs in the trace)


@dataclass(frozen=True, slots=True)
class TwinSettings:
    factory: FactorySettings = field(default_factory=FactorySettings)
    executor: ExecutorSettings = field(default_factory=ExecutorSettings)
    # Virtual seconds between samples of the time series; None: the trace's span / 500.
    sample_every_s: float | None = None
    progress_every_s: float = 86400.0  # virtual seconds between progress callbacks
    power: PowerSpec | None = None  # the power model (None: no energy figures)
    poweroff_after_s: float | None = None  # what-if: idle nodes off after this long (None: always on)
    boot_s: float = 300.0  # ... and back after this long


@dataclass(slots=True)
class RunResult:
    name: str
    settings: TwinSettings
    summary: dict[str, Any]
    recorder: Recorder
    samples: Samples
    durations: list[float]
    rejected: dict[int, str]  # job index -> why the Factory refused it
    events: int  # kernel entries processed
    wall_s: float


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for a replay, then put it back as it was.

    A replay allocates millions of short-lived objects (specs, actions, heap entries) and
    makes no reference cycle per event, so reference counting frees them all; the cyclic
    collector would only re-scan the growing set of live jobs, about a quarter of a
    Philly replay's time. On the way out, the objects the replay kept are moved to the
    oldest generation unscanned (freeze, then unfreeze: both only splice lists), or the
    first allocation after the pause would scan them all at once; skipped when someone
    else has frozen objects, which must stay frozen.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if gc.get_freeze_count() == 0:
            gc.freeze()
            gc.unfreeze()
        if was_enabled:
            gc.enable()


def spec_of(job: TraceJob, duration: float) -> JobSpec:
    """The job's spec with the run time the replay gives it (the trace's own, usually)."""
    return job.spec if job.spec.duration_s == duration else replace(job.spec, duration_s=duration)


def durations_of(jobs: list[TraceJob], cost_model: CostModel | None) -> list[float]:
    """Run time (s) of each job: the trace's, or the cost model's where the trace gives work."""
    out = []
    for i, job in enumerate(jobs):
        if job.spec.duration_s is not None:
            out.append(job.spec.duration_s)
        elif cost_model is None:
            raise SpecError("duration_s", f"job {i} gives work but no duration, and no cost model was given")
        else:
            out.append(float(cost_model(job)))
    return out


def joining(events: list[tuple[float, NodeEvent]]) -> set[str]:
    """Nodes whose first event is a join: not on the floor before it."""
    first: dict[str, NodeEvent] = {}
    for _, event in events:
        first.setdefault(event.spec.name if isinstance(event, NodeJoined) else event.node, event)
    return {name for name, event in first.items() if isinstance(event, NodeJoined)}


def _replay_over(_: object) -> None:
    """The executor's and the driver's hooks once the replay has ended: nothing is listening any more."""


class Twin:
    """One replay: build with a scenario and settings, then `run()`."""

    def __init__(
        self, scenario: Scenario, settings: TwinSettings | None = None, cost_model: CostModel | None = None
    ) -> None:
        self.scenario = scenario
        self.settings = settings or TwinSettings()
        self.jobs = scenario.jobs
        self.durations = durations_of(self.jobs, cost_model)
        self.kernel = Kernel()
        # New, empty nodes of the scenario's specs; a node whose first event is a join comes later.
        self.cluster = Cluster(n for n in scenario.nodes if n.name not in joining(scenario.node_events))
        projects = [replace(p) for p in scenario.projects]
        departments = [replace(d) for d in scenario.departments]
        self.factory = Factory(self.cluster, projects, self.settings.factory, departments=departments)
        self.executor = SimExecutor(self.kernel, _replay_over, self.durations.__getitem__, self.settings.executor)
        self.recorder = Recorder(
            [j.spec.gpus for j in self.jobs], [j.spec.project for j in self.jobs], self.cluster.total_gpus()
        )
        self.driver = Driver(
            self.factory, self.kernel.clock, self.executor, self._alarm, on_change=self.recorder.record
        )
        self.executor.report = self.driver.handle
        # Job i is row i of the trace; arrivals go by submit time (a stable sort: ties keep row order).
        self._order = sorted(range(len(self.jobs)), key=lambda i: self.jobs[i].submit_time)
        every = self.settings.sample_every_s
        if every is None:
            order = self._order
            span = self.jobs[order[-1]].submit_time - self.jobs[order[0]].submit_time if order else 0.0
            every = max(1.0, span / 500)
        self.samples = Samples(every)
        self.rejected: dict[int, str] = {}
        self.skipped_job_events = 0
        self.submitted = 0
        first = self.jobs[self._order[0]].submit_time if self._order else 0.0
        power = self.settings.power
        self.meter = PowerMeter(power, self.cluster.total_gpus(), first) if power is not None else None
        self.executor.meter = self.meter
        self.manager: PowerManager | None = None
        if self.settings.poweroff_after_s is not None:
            self.manager = PowerManager(
                self.kernel,
                self.driver.handle,
                self.cluster,
                self.factory,
                self.meter,
                self.settings.poweroff_after_s,
                self.settings.boot_s,
            )
            self.executor.on_release = self.manager.released

    # -- event plumbing ------------------------------------------------------------------

    def _alarm(self, at: float) -> None:
        self.kernel.schedule(max(at, self.kernel.now), TICK, self._tick)

    def _arrive(self, k: int) -> None:
        """The k-th arrival. Arrivals are chained (each schedules the next), so the heap holds one
        arrival, not the whole trace; equal times still arrive in trace order (same priority)."""
        order = self._order
        if k + 1 < len(order):
            self.kernel.schedule(self.jobs[order[k + 1]].submit_time, SUBMIT, self._arrive, k + 1)
        self._submit(order[k])

    def _submit(self, i: int) -> None:
        self.submitted += 1
        try:
            self.driver.handle(Submit(i, spec_of(self.jobs[i], self.durations[i])))
        except SpecError as exc:
            self.rejected[i] = str(exc)  # the core refused it and changed nothing
            return
        if self.manager is not None:
            self.manager.demand()

    def _node_event(self, event: NodeEvent) -> None:
        """What happened to a node on the floor, at the time it happened: a node that dies takes
        its jobs with it (each comes back as `Finished(node_lost)`, as the floor's executors say)."""
        name = event.spec.name if isinstance(event, NodeJoined) else event.node
        node = self.cluster.nodes.get(name)
        was_alive = node is not None and node.alive
        self.driver.handle(event)
        if isinstance(event, NodeState) and not event.up:
            self.executor.lose_node(event.node)
        node = self.cluster.nodes.get(name)
        if self.meter is not None and node is not None and node.alive != was_alive:
            self.meter.powered(self.kernel.now, node.gpu_count if node.alive else -node.gpu_count)

    def _job_event(self, event: JobEvent) -> None:
        """A hold, update, requeue or idle report the floor's scheduler went by, when it did. One the
        replay cannot take (its job has ended here, or was refused) changes nothing."""
        try:
            self.driver.handle(event)
        except (SpecError, InvalidTransition, NotFound):
            self.skipped_job_events += 1

    def _tick(self, _: object) -> None:
        self.driver.fired(self.kernel.now)
        self.driver.handle(Tick())

    def _sample(self, _: object) -> None:
        f = self.factory
        sample(self.samples, self.kernel.now, self.cluster, f.usage, sum(len(q) for q in f.queues.values()))
        if self.meter is not None:
            self.samples.power_kw.append(self.meter.draw_w(self.kernel.now) * self.meter.spec.pue / 1000)
        if self.kernel.peek() is not None:
            self.kernel.schedule(self.kernel.now + self.samples.period_s, SAMPLE, self._sample)

    # -- the run -------------------------------------------------------------------------

    def run(self, progress: Progress | None = None) -> RunResult:
        t0 = time.perf_counter()
        kernel = self.kernel
        for at, event in self.scenario.node_events:
            kernel.schedule(at, NODE, self._node_event, event)
        for at, job_event in self.scenario.job_events:
            kernel.schedule(at, JOB, self._job_event, job_event)
        if self._order:
            first = self.jobs[self._order[0]].submit_time
            kernel.schedule(first, SUBMIT, self._arrive, 0)
            kernel.schedule(first, SAMPLE, self._sample)
            if self.manager is not None:
                kernel.schedule(first, NODE, lambda _: self.manager.start() if self.manager else None)
        n = len(self.jobs)
        with collector_paused():
            try:
                while kernel.peek() is not None:
                    if progress is None:
                        kernel.run()
                    else:
                        kernel.run(until=kernel.now + self.settings.progress_every_s)
                        progress(self.submitted, n)
            finally:
                # The twin's reference cycles run through its driver (executor -> driver.handle ->
                # executor; driver -> twin._alarm -> twin): cut them so reference counting frees
                # the twin when it is dropped.
                self.executor.report = _replay_over
                self.driver.alarm = _replay_over
        quotas = {p.name: p.quota for p in self.factory.projects.values()}
        summary = summarize(self.recorder, self.durations, quotas)
        summary["rejected"] = len(self.rejected)
        summary["skipped_job_events"] = self.skipped_job_events
        summary["preemptions"] = self.executor.preemptions
        summary["lost_gpu_hours"] = self.executor.lost_gpu_s / 3600
        held = summary.get("gpu_hours", 0.0)
        summary["goodput"] = 1 - summary["lost_gpu_hours"] / held if held > 0 else 1.0
        if self.meter is not None:
            start = self.jobs[self._order[0]].submit_time if self._order else 0.0
            summary.update(self.meter.figures(start))
            busy = self.meter.spec.held_w * self.meter.spec.pue / 3.6e6  # kWh per GPU-second held
            for name, project in summary["projects"].items():
                project["energy_kwh"] = self.recorder.gpu_s.get(name, 0.0) * busy
            per_job = sorted(s * busy for s in self.recorder.job_gpu_s)
            if per_job:
                summary["job_energy_kwh_mean"] = sum(per_job) / len(per_job)
                summary["job_energy_kwh_p95"] = per_job[min(len(per_job) - 1, int(0.95 * len(per_job)))]
                summary["job_energy_kwh_max"] = per_job[-1]
        if self.manager is not None:
            summary["power_offs"] = self.manager.power_offs
            summary["boots"] = self.manager.boots
        if self.samples.fragmentation:
            summary["fragmentation_mean"] = sum(self.samples.fragmentation) / len(self.samples.fragmentation)
        wall = time.perf_counter() - t0
        return RunResult(
            self.scenario.name,
            self.settings,
            summary,
            self.recorder,
            self.samples,
            self.durations,
            self.rejected,
            kernel.steps,
            wall,
        )


def replay(
    scenario: Scenario,
    settings: TwinSettings | None = None,
    cost_model: CostModel | None = None,
    progress: Progress | None = None,
) -> RunResult:
    """Replay `scenario` under `settings` and return its figures."""
    return Twin(scenario, settings, cost_model).run(progress)
