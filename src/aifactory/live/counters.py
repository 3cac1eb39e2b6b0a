"""What the floor has done since this server started, counted as it happens (for `/metrics`):
jobs submitted and finished, preemptions, and how long jobs waited for their first start.

Counters start again at zero when the server restarts; Prometheus reads a reset as such
(`rate()` and `increase()` handle it), as it does for every process's counters.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field

from aifactory.core.actions import StateChanged
from aifactory.core.job import Job
from aifactory.core.states import JobState

# Seconds: a second to a day, where a GPU cluster's waits lie (Kueue's admission wait is alike).
WAIT_BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 86400.0, math.inf)


@dataclass
class WaitHistogram:
    counts: list[int] = field(default_factory=lambda: [0] * len(WAIT_BUCKETS))  # per bucket, not cumulative
    total: float = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(WAIT_BUCKETS, seconds)] += 1
        self.total += seconds

    def cumulative(self) -> list[tuple[str, int]]:
        out, running = [], 0
        for bound, n in zip(WAIT_BUCKETS, self.counts, strict=True):
            running += n
            out.append(("+Inf" if bound == math.inf else f"{bound:g}", running))
        return out


@dataclass
class FloorCounters:
    submitted: dict[str, int] = field(default_factory=dict)  # project -> jobs
    finished: dict[tuple[str, str], int] = field(default_factory=dict)  # (project, final state) -> jobs
    preemptions: dict[str, int] = field(default_factory=dict)  # project -> jobs preempted
    requeues: dict[str, int] = field(default_factory=dict)  # project -> jobs back in the queue (node lost, ...)
    waits: dict[str, WaitHistogram] = field(default_factory=dict)  # project -> first-start waits

    def record(self, change: StateChanged, job: Job | None) -> None:
        """One transition of `job` (None: the core no longer knows it)."""
        if job is None:
            return
        project = job.spec.project
        if change.old is None:
            self.submitted[project] = self.submitted.get(project, 0) + 1
        elif change.new is JobState.RUNNING and job.attempts <= 1:
            self.waits.setdefault(project, WaitHistogram()).observe(max(0.0, change.at - job.submitted_at))
        elif change.new is JobState.PREEMPTED:
            self.preemptions[project] = self.preemptions.get(project, 0) + 1
        elif change.new is JobState.QUEUED and change.old is JobState.RUNNING:
            self.requeues[project] = self.requeues.get(project, 0) + 1
        if change.new.terminal:
            key = (project, str(change.new))
            self.finished[key] = self.finished.get(key, 0) + 1
